"""parareal.testing checked against deliberately broken propagators and backends: every check
can fail, and says which property, which input and by how much, on one line."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import find, given, settings

import parareal
from parareal import RK4, Euler, Heun, Propagator, SteppablePropagator
from parareal.backends import Backend
from parareal.testing import (
    check_backend,
    check_convergence_bound,
    check_exactness,
    check_fixed_point,
    check_propagator,
    dahlquist_problems,
    linear_system,
    linear_systems,
    problems,
    propagators,
    slicings,
)

from .conftest import needs


def _one_line(info: pytest.ExceptionInfo, check: str, prop: str, *fragments: str) -> str:
    """The message is one line naming the check, the property and the fragments."""
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{check}: {prop}: "), message
    for fragment in fragments:
        assert re.search(fragment, message), (fragment, message)
    return message


# -- broken propagators -----------------------------------------------------------------------
class CachedFirstStage(Propagator):
    """Euler that caches ``f(t0, y)`` keyed on ``t0``: state between calls."""

    order = 1

    def __init__(self):
        self.cache = {}

    def __repr__(self):
        return "CachedFirstStage()"

    def propagate(self, f, y, t0, t1):
        k = self.cache.setdefault(t0, f(t0, y))
        return y + (t1 - t0) * k


class Counting(Euler):
    """Euler that adds a trace of its call count."""

    def __init__(self, steps=1):
        super().__init__(steps)
        self.calls = 0

    def propagate(self, f, y, t0, t1):
        self.calls += 1
        return super().propagate(f, y, t0, t1) * (1 + 1e-15 * self.calls)


class Noisy(Euler):
    """Euler plus unseeded noise."""

    def propagate(self, f, y, t0, t1):
        return super().propagate(f, y, t0, t1) + 1e-12 * np.random.default_rng().random()


class HeunCalledRK4(Heun):
    """Heun declaring the order of RK4."""

    order = 4


class OpaqueHeun(Propagator):
    """Heun with fixed steps inside ``propagate`` (not steppable)."""

    def __init__(self, steps, order=2):
        self.steps, self.order = steps, order

    def __repr__(self):
        return f"OpaqueHeun({self.steps}, order={self.order})"

    def propagate(self, f, y, t0, t1):
        return Heun(self.steps).propagate(f, y, t0, t1)


class ToFloat64(Euler):
    """Returns float64 whatever the state's dtype."""

    def propagate(self, f, y, t0, t1):
        out = super().propagate(f, y, t0, t1)
        return np.asarray(out, dtype=np.float64) if isinstance(out, np.ndarray) else out.double()


class Flattens(Euler):
    def propagate(self, f, y, t0, t1):
        return super().propagate(f, y, t0, t1).reshape(-1)


class InPlace(Euler):
    def propagate(self, f, y, t0, t1):
        y += (t1 - t0) * f(t0, y)
        return y.copy()


class DropsImaginary(Euler):
    def propagate(self, f, y, t0, t1):
        out = super().propagate(f, y, t0, t1)
        return out.real.astype(out.dtype) if isinstance(out, np.ndarray) else out


class ArrayTime(Propagator):
    """Calls ``f`` with ``t`` as a 1-element array."""

    order = 1

    def __repr__(self):
        return "ArrayTime()"

    def propagate(self, f, y, t0, t1):
        return y + (t1 - t0) * f(np.array([t0]), y)


class DefaultRepr(Propagator):
    def propagate(self, f, y, t0, t1):
        return y + (t1 - t0) * f(t0, y)


class WrongEvals(Euler):
    @property
    def evals(self):
        return self.steps + 1


class PropagateDisagrees(Heun):
    """``propagate`` is Heun written out again, with another rounding than the stepper."""

    def propagate(self, f, y, t0, t1):
        h = (t1 - t0) / self.steps
        for i in range(self.steps):
            t = t0 + i * h
            k1 = f(t, y)
            k2 = f(t + h, y + h * k1)
            y = y + 0.5 * h * k1 + 0.5 * h * k2
        return y


class ExpOfH(SteppablePropagator):
    """Exponential Euler for ``y' = -y + g``, calling ``math.exp(h)``, yet groupable."""

    order = 1
    groupable = True

    def step(self, y, t, h):
        k = yield t, y
        return y + (1 - math.exp(-h)) * (k + y) - h * y


class BatchNorm(SteppablePropagator):
    """Euler scaled by the largest entry of its state: grouped states interact."""

    order = 1
    groupable = True

    def step(self, y, t, h):
        k = yield t, y
        scale = float(abs(y).max()) if isinstance(y, np.ndarray) else float(y.abs().max())
        return y + h * k * (1 + 1e-9 * scale)


class SloppyAdaptive(Propagator):
    """Claims tolerances it does not meet (it is Euler with 10 steps)."""

    rtol, atol = 1e-8, 1e-10

    def __repr__(self):
        return "SloppyAdaptive()"

    def propagate(self, f, y, t0, t1):
        return Euler(10).propagate(f, y, t0, t1)


class Unannotated(Propagator):
    """No order and no tolerances: the order check is skipped, and says so."""

    def __repr__(self):
        return "Unannotated()"

    def propagate(self, f, y, t0, t1):
        return RK4(4).propagate(f, y, t0, t1)


@pytest.mark.parametrize("prop,property_,fragments", [
    (CachedFirstStage(), "no state between calls", [r"call 2 of a sequence", r"by \d"]),
    (Counting(), "no state between calls", [r"fresh instance by \d", "Counting"]),
    (Noisy(2), "deterministic", [r"two identical calls differ by \d"]),
    (HeunCalledRK4(2), "order of accuracy", [r"measured 2\.\d\d, declared 4", r"off by -",
                                            "sub-steps"]),
    (OpaqueHeun(2, order=3), "order of accuracy", [r"measured 2\.\d\d, declared 3",
                                                  "one propagation over"]),
    (ToFloat64(), "kind, shape, dtype and device kept", [r"returned numpy float64 .* for numpy "
                                                        r"float32"]),
    (Flattens(), "kind, shape, dtype and device kept", [r"\(6,\) for numpy float64 \(2, 3\)"]),
    (InPlace(), "kind, shape, dtype and device kept", [r"changed its input y in place by \d"]),
    (DropsImaginary(), "same accuracy in every dtype", ["complex128", r"by a factor \d"]),
    (ArrayTime(), "calling convention of f", ["expected a Python float"]),
    (DefaultRepr(), "readable repr", ["object at 0x"]),
    (WrongEvals(3), "evals", [r"called f 3 times, prop.evals says 4"]),
    (PropagateDisagrees(2), "steppable path equals propagate", [r"differs from propagate's by"]),
    (ExpOfH(1), "grouped path equals propagate", ["TypeError", "groupable = False"]),
    (BatchNorm(1), "grouped path equals propagate", [r"state \d of a group of 3 differs .* by"]),
    (SloppyAdaptive(), "accuracy within tolerance", [r"by a factor \d"]),
], ids=lambda v: type(v).__name__ if isinstance(v, Propagator) else None)
def test_check_propagator_catches_a_broken_propagator(prop, property_, fragments):
    with pytest.raises(AssertionError) as info:
        check_propagator(prop, torch=False)
    _one_line(info, "check_propagator", property_, *fragments)


def test_check_propagator_reports_what_it_checked_and_skipped():
    report = check_propagator(Unannotated(), torch=False)
    assert "order of accuracy" in report.skipped and "no declared order" in \
        report.skipped["order of accuracy"]
    assert report.measured_order is None and report.error is None
    report = check_propagator(OpaqueHeun(3), torch=False)
    assert report.declared_order == 2 and abs(report.measured_order - 2) < 0.3
    assert report.skipped.keys() == {"evals", "steppable path equals propagate",
                                     "grouped path equals propagate"}
    report = check_propagator(Unannotated(), order=4, torch=False)
    assert abs(report.measured_order - 4) < 0.3


def test_torch_states_are_checked_too():
    torch = pytest.importorskip("torch")

    class LosesDevice(Euler):  # returns numpy for a torch state
        def propagate(self, f, y, t0, t1):
            out = super().propagate(f, y, t0, t1)
            return out.numpy() if isinstance(out, torch.Tensor) else out

    with pytest.raises(AssertionError) as info:
        check_propagator(LosesDevice())
    _one_line(info, "check_propagator", "kind, shape, dtype and device kept",
              "returned numpy float64 .* for torch float64")
    report = check_propagator(RK4(2), dtypes=("float32",), torch=True)
    assert "kind, shape, dtype and device kept" in report.checked


def test_check_propagator_bad_arguments():
    with pytest.raises(TypeError, match="Propagator"):
        check_propagator(lambda f, y, t0, t1: y)
    with pytest.raises(TypeError, match="dtypes"):
        check_propagator(RK4(1), dtypes="float64")
    with pytest.raises(ValueError, match="floating or complex"):
        check_propagator(RK4(1), dtypes=("int32",))
    with pytest.raises(ValueError, match="order"):
        check_propagator(RK4(1), order=0)


# -- broken backends --------------------------------------------------------------------------
class Reorders(Backend):
    """Returns the answers of a tick in reverse order."""

    name = "reorders"
    interleaves = True

    def evaluate(self, rhs, requests):
        return rhs.each(requests)[::-1]


class OneUlp(Backend):
    """Moves the first answer of every tick by one ulp."""

    name = "one-ulp"
    interleaves = True

    def evaluate(self, rhs, requests):
        out = rhs.each(requests)
        ops = rhs.ops
        out[0] = ops.from_numpy(np.nextafter(ops.to_numpy(out[0]), np.inf))
        return out


class Noise(Backend):
    """Adds relative noise of 1e-7 to every answer."""

    name = "noise"
    interleaves = True

    def evaluate(self, rhs, requests):
        return [dy * (1 + 1e-7) for dy in rhs.each(requests)]


def test_check_backend_catches_reordered_results():
    with pytest.raises(AssertionError) as info:
        check_backend(Reorders(), problems=[parareal.problems.get("dahlquist")])
    _one_line(info, "check_backend", "same iterates",
              r"boundary \d+ of iterate 1 differs from the serial backend's by \d",
              "problem=dahlquist", "schedule=synchronous", "backend=Reorders()")
    with pytest.raises(AssertionError) as info, np.errstate(invalid="ignore", over="ignore"):
        check_backend(Reorders(), problems=[parareal.problems.get("brusselator")])
    _one_line(info, "check_backend", "same iterations and status",
              "on the serial backend converged after 7")


def test_check_backend_catches_one_ulp():
    with pytest.raises(AssertionError) as info:
        check_backend(OneUlp(), problems=[parareal.problems.get("dahlquist")],
                      schedules=("pipelined",), vectorized=False)
    message = _one_line(info, "check_backend", "same iterates", "schedule=pipelined",
                        "vectorized=False")
    diff = float(re.search(r"by ([0-9.e+-]+) \(max abs\)", message).group(1))
    assert 0 < diff < 1e-14


def test_check_backend_accepts_a_users_backend_and_names():
    class Backwards(Backend):  # evaluates in reverse order, answers in order
        name = "backwards"

        def evaluate(self, rhs, requests):
            return rhs.each(requests[::-1])[::-1]

    linear = linear_system([-1.0, -0.5 + 2j], slices=5)
    done = check_backend(Backwards(), problems=[linear])
    assert done == ("linear-system/synchronous", "linear-system/pipelined")
    assert len(check_backend("serial", problems=[linear], schedules=("synchronous",))) == 1
    with pytest.raises(TypeError, match="Backend"):
        check_backend(3)
    with pytest.raises(ValueError, match="schedules"):
        check_backend("serial", schedules=("eager",))
    with pytest.raises(TypeError, match="problems"):
        check_backend("serial", problems=linear)
    with pytest.raises(ValueError, match="unknown backend"):
        check_backend("gpu")


# -- broken runs for exactness, fixed point and the bounds ------------------------------------
def test_check_exactness_catches_one_ulp_and_a_noisy_fine():
    p = linear_system([-1.0, -0.3 + 1j], slices=4)
    with pytest.raises(AssertionError) as info:
        check_exactness(p.f, p.y0, p.t_span, Euler(1), RK4(4), 4, backend=OneUlp())
    _one_line(info, "check_exactness", "exactness",
              r"boundary \d after iteration \d differs from the serial fine solution by \d",
              "slices=4 equal", "backend=OneUlp")
    with pytest.raises(AssertionError) as info:
        check_exactness(p.f, p.y0, p.t_span, Euler(1), Noisy(4), [0.0, 0.3, 1.0, 2.0])
    _one_line(info, "check_exactness", "exactness", r"boundaries \[0, 0\.3, 1, 2\]")


def test_check_fixed_point_catches_one_ulp():
    p = linear_system([-1.0, -0.3 + 1j], slices=4)
    with pytest.raises(AssertionError) as info:
        check_fixed_point(p.f, p.y0, p.t_span, Euler(1), RK4(4), 4, backend=OneUlp())
    _one_line(info, "check_fixed_point", "fixed point", r"residual of iteration 1 is \d")


def test_check_convergence_bound_catches_a_noisy_backend():
    with pytest.raises(AssertionError) as info:
        check_convergence_bound(-1.0, (0.0, 2.0), Euler(1), RK4(10), 4, backend=Noise())
    _one_line(info, "check_convergence_bound", "Gander-Vandewalle bound",
              r"error after iteration \d is \d.*above the \w+ bound", "lam=-1.0")


def test_checks_return_their_runs():
    p = linear_system([-1.0, -0.3 + 1j], slices=4)
    sol = check_exactness(p.f, p.y0, p.t_span, Euler(1), RK4(4), 4)
    assert sol.iterations == 4 and sol.converged
    sol = check_fixed_point(p.f, p.y0, p.t_span, Euler(1), RK4(4), 4, iterations=2)
    assert sol.residuals == (0.0, 0.0)
    report = check_convergence_bound(-0.5 + 1j, (0.0, 3.0), Heun(1), RK4(10), 6)
    assert report.errors.shape == (7,) and report.errors[-1] == 0.0
    assert 0 < report.margin <= 1
    assert np.array_equal(report.bounds.superlinear,
                          parareal.theory.dahlquist_bounds(
                              -0.5 + 1j, t_span=(0, 3), slices=6, coarse=Heun(1),
                              fine=RK4(10), iterations=6).superlinear)


def test_iteration_checks_call_f_in_its_convention():
    def batches_only(t, y):
        assert y.ndim == 2 and np.shape(t) == (y.shape[0],)
        return -y

    for backend in ("serial", "batched"):
        check_exactness(batches_only, np.ones(2), (0, 1), Euler(1), RK4(3), 3, backend=backend,
                        vectorized=True)
        check_fixed_point(batches_only, np.ones(2), (0, 1), Euler(1), RK4(3), 3,
                          backend=backend, vectorized=True)


def test_iteration_checks_bad_arguments():
    f = parareal.problems.get("dahlquist").f
    with pytest.raises(ValueError, match="increasing"):
        check_exactness(f, np.ones(1), (0, 1), Euler(1), RK4(2), [0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="end at"):
        check_exactness(f, np.ones(1), (0, 1), Euler(1), RK4(2), [0.0, 0.5, 0.9])
    with pytest.raises(TypeError, match="slices"):
        check_fixed_point(f, np.ones(1), (0, 1), Euler(1), RK4(2), 2.5)
    with pytest.raises(TypeError, match="lam"):
        check_convergence_bound("x", (0, 1), Euler(1), RK4(2), 2)


# -- strategies -------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(linear_systems(max_dim=4))
def test_linear_systems_are_stable_with_their_exact_solution(p):
    t = np.linspace(*p.t_span, 5)
    exact = p.reference(t)
    assert exact.shape == (5, *p.y0.shape)
    norms = np.linalg.norm(exact, axis=1)
    assert np.all(np.diff(norms) <= 1e-12 * (1 + norms[0]))  # A is normal with Re(eig) <= 0
    numeric = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=RK4(50), slices=4)
    np.testing.assert_allclose(numeric, exact, atol=1e-7)
    batch = p.f(0.0, np.stack([p.y0, 2 * p.y0]))
    assert np.array_equal(batch[1], p.f(0.0, 2 * p.y0))  # batch rows: the bits alone


@settings(max_examples=20, deadline=None)
@given(slicings((0.5, 2.0), min_slices=2, max_slices=6))
def test_slicings_are_increasing_with_exact_ends(grid):
    assert grid[0] == 0.5 and grid[-1] == 2.0
    assert 3 <= len(grid) <= 7 and np.all(np.diff(grid) > 0)


def test_slicings_give_even_and_uneven_boundaries():
    uneven = find(slicings(min_slices=3), lambda b: not np.allclose(np.diff(b), np.diff(b)[0]))
    assert len(uneven) >= 4
    even = find(slicings(min_slices=3, even=True), lambda b: True)
    assert np.array_equal(even, np.linspace(0, 1, len(even)))


@settings(max_examples=10, deadline=None)
@given(dahlquist_problems(kind="complex"), dahlquist_problems(kind="real"))
def test_dahlquist_problems_of_both_kinds(complex_p, real_p):
    assert complex_p.y0.dtype == np.complex128 and real_p.y0.dtype == np.float64
    assert real_p.lam.imag == 0 and real_p.lam.real <= 0 and complex_p.lam.real <= 0


@settings(max_examples=10, deadline=None)
@given(problems(["dahlquist", "BRUSSELATOR"]), propagators(max_steps=3, adaptive=True))
def test_problem_and_propagator_strategies(problem, prop):
    assert problem.name in ("dahlquist", "brusselator")  # names in any case
    assert isinstance(prop, Propagator)
    assert prop.steps <= 3 if prop.steppable else prop.evals is None


def test_strategies_bad_arguments():
    with pytest.raises(ValueError, match="names"):
        problems(["nope"])
    with pytest.raises(ValueError, match="names"):
        problems(["dahlquist", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="names"):
        problems([])
    with pytest.raises(ValueError, match="min_slices"):
        slicings(min_slices=4, max_slices=2)
    with pytest.raises(ValueError, match="kind"):
        dahlquist_problems(kind="imaginary")
    with pytest.raises(ValueError, match="min_dim"):
        linear_systems(min_dim=3, max_dim=2)


# -- optional dependency ----------------------------------------------------------------------
def test_import_parareal_never_imports_hypothesis_and_checks_work_without_it():
    code = textwrap.dedent("""
        import sys
        import parareal
        assert "hypothesis" not in sys.modules and "parareal.testing" not in sys.modules
        sys.modules["hypothesis"] = None  # as if not installed
        import numpy as np
        import parareal.testing as pt
        p = pt.linear_system([-1.0])
        pt.check_exactness(p.f, p.y0, p.t_span, "euler", "rk4:2", 3)
        try:
            pt.linear_systems()
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert "pip install 'parareal[test]'" in out and "check_*" in out


# -- built-in backends that run elsewhere: Dask workers and MPI ranks -------------------------
# check_backend on MPI: tests/test_mpi.py's test_mpi_backend_passes_check_backend_on_every_rank
# (in the mpiexec job that runs its other checks: torch is imported once per rank). Both run
# every bundled problem small (``tests/scripts/small_problems.py``): what they test is the
# backend's agreement, on every kind of case, not the problems' defaults.


@needs("distributed")  # found, not imported here: the child process imports it
def test_dask_executor_passes_check_backend(tmp_path_factory):
    # check_backend(Executor(client.get_executor())) on a LocalCluster of two worker
    # processes, four problems (small), both schedules, vectorized=True: run by
    # tests/scripts/dask_check.py on the cluster that tests/test_concurrency_process.py's Dask
    # test uses (once per session: one cluster, one interpreter importing distributed)
    from .test_concurrency_process import dask_check_output

    assert dask_check_output(tmp_path_factory)["testing"] == 8


def test_cuda_streams_passes_check_backend():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    assert len(check_backend("cuda-streams", device="cuda")) == 4
