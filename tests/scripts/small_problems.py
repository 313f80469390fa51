"""Every bundled problem of :data:`parareal.problems.CORE`, made small, for the scripts that
check a backend that runs elsewhere (MPI ranks, Dask workers, an ``mpi4py.futures`` pool)
against the serial one with ``parareal.testing.check_backend``.

Each keeps its ``f``, its state's dtype and shape (heat: fewer points) and its coarse
propagator, on a shorter span or with fewer slices and fine steps, and still takes several
iterations (2 to 5) but fewer than its slices (so the run stops on ``tol``, not because every
slice became exact), with 6 slices: more than the 4 ranks of the largest MPI job, and not a
multiple of them. All twelve serial runs (two schedules) take about 0.4 s on one core, against
6 s with the problems' defaults: the backends' agreement with the serial backend, not the
problems, is what those scripts check.
"""

from parareal import problems

SMALL = {
    "brusselator": dict(t_end=2.0, slices=6),
    "dahlquist": dict(slices=6),
    "dahlquist-complex": dict(t_end=2.0, slices=6, fine="rk4:20"),
    "heat": dict(points=12, slices=6),
    "lorenz": dict(t_end=0.6, slices=6, fine="rk4:25"),
    "vanderpol": dict(t_end=3.0, slices=6, fine="rk4:20"),
}


def small(name: str) -> problems.Problem:
    """The bundled problem ``name``, small (with its defaults if it has no entry here)."""
    return problems.get(name, **SMALL.get(name, {}))


def small_core() -> list[problems.Problem]:
    """Every problem of ``problems.CORE``, small, by name."""
    return [small(name) for name in sorted(problems.CORE)]
