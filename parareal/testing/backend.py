""":func:`check_backend`: a backend gives the serial backend's run, bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, resolve_backend, using_backend
from ..engine import SCHEDULES
from ..problems import CORE, Problem, get
from ..result import IterationInfo, Solution
from ..solve import solve
from .report import describe, fail, max_abs_diff, same_bits
from .systems import blow_up, linear_system

__all__ = ["check_backend", "default_problems"]

CHECK = "check_backend"
#: Serial runs of the default problems, by (label, schedule, vectorized, tol, device): they are
#: the same for every backend checked in this process.
_REFERENCES: dict[tuple[Any, ...], tuple[Solution, list[Any], bool]] = {}


def default_problems() -> list[Problem]:
    """The problems :func:`check_backend` runs by default: every small bundled problem with
    its defaults (:data:`parareal.problems.CORE`: the classic test sets are left out, their
    references take long), a run that diverges in its coarse sweep
    (:func:`~parareal.testing.systems.blow_up`: no backend may start work on its NaN or inf)
    and a 5-dimensional linear system with real and complex eigenvalues
    (:func:`~parareal.testing.systems.linear_system`)."""
    bundled = [get(name) for name in CORE]
    linear = linear_system([-0.5, -0.2 + 1.5j, -1.0 + 0.5j], seed=1, t_span=(0.0, 3.0),
                           slices=6)
    return [*bundled, blow_up(), linear]


@dataclass(frozen=True)
class _Case:
    label: str
    f: Callable[[Any, Any], Any]
    y0: Any
    problem: Problem


def _torch_cases(problems: Sequence[Problem], device: Any, dtypes: Sequence[str]) -> list[_Case]:
    import torch

    out = []
    for p, dtype in zip(problems, dtypes, strict=True):
        y0 = torch.as_tensor(np.array(p.y0), device=device).to(getattr(torch, dtype))
        out.append(_Case(f"{p.name} ({describe(y0)})", p.f, y0, p))
    return out


def _cases(problems: Sequence[Problem] | None, device: Any) -> list[_Case]:
    if problems is not None:
        if isinstance(problems, Problem) or not all(isinstance(p, Problem) for p in problems):
            raise TypeError("problems must be a sequence of parareal.problems.Problem")
        if device is not None:
            return _torch_cases(problems, device, [str(p.y0.dtype) for p in problems])
        return [_Case(p.name, p.f, p.y0, p) for p in problems]
    linear = default_problems()[-1]
    # real states only: torch's CPU kernels multiply complex tensors of one element and of
    # several with different roundings, so a batched complex f does not give the bits of
    # single calls
    torch_problems = [linear, linear]
    torch_dtypes = ["float64", "float32"]
    if device is not None:
        return _torch_cases(torch_problems, device, torch_dtypes)
    cases = [_Case(p.name, p.f, p.y0, p) for p in default_problems()]
    try:
        import torch  # noqa: F401
    except ImportError:
        return cases
    return cases + _torch_cases(torch_problems, None, torch_dtypes)


def _solve(case: _Case, backend: Backend, schedule: str, vectorized: bool,
           tol: float) -> tuple[Solution, list[Any], bool]:
    iterates: list[Any] = []

    def keep(info: IterationInfo) -> None:
        iterates.append(info.y)

    p = case.problem
    sol = solve(case.f, case.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
                tol=tol, backend=backend, schedule=schedule, vectorized=vectorized,
                callback=keep)
    drove = backend.drives()
    return sol, iterates, drove


def _compare(got: tuple[Solution, list[Any], bool], ref: tuple[Solution, list[Any], bool],
             inputs: dict[str, Any]) -> None:
    sol, iterates, drove = got
    want, want_iterates, _ = ref
    if drove:  # the first iterate that differs says the most
        for k, (a, b) in enumerate(zip(iterates, want_iterates, strict=False)):
            if same_bits(a, b):
                continue
            rows = [n for n in range(len(b)) if not same_bits(a[n], b[n])]
            n = rows[0] if rows else 0
            fail(CHECK, "same iterates", f"boundary {n} of iterate {k} differs from the serial "
                 f"backend's by {max_abs_diff(a[n], b[n]):.3g} (max abs)", **inputs)
    if sol.iterations != want.iterations or sol.status is not want.status:
        fail(CHECK, "same iterations and status", f"{sol.status.value} after {sol.iterations} "
             f"iterations, on the serial backend {want.status.value} after {want.iterations} "
             f"(off by {sol.iterations - want.iterations:+d})", **inputs)
    if drove and len(iterates) != len(want_iterates):
        fail(CHECK, "same iterates", f"the callback saw {len(iterates)} iterates, on the "
             f"serial backend {len(want_iterates)}", **inputs)
    for k, (a, b) in enumerate(zip(sol.residuals, want.residuals, strict=True), start=1):
        if a != b and not (a != a and b != b):  # NaN equals NaN here
            fail(CHECK, "same residuals", f"residual of iteration {k} is {a!r}, on the serial "
                 f"backend {b!r} (off by {abs(a - b):.3g})", **inputs)
    if not same_bits(sol.y, want.y):
        fail(CHECK, "same y", f"the result ({describe(sol.y)}) differs from the serial "
             f"backend's ({describe(want.y)}) by {max_abs_diff(sol.y, want.y):.3g} (max abs)",
             **inputs)
    path, want_path = sol.stats.critical_path_per_iteration, want.stats.critical_path_per_iteration
    if path != want_path:
        fail(CHECK, "same critical path", f"critical path per iteration {list(path)}, on the "
             f"serial backend {list(want_path)}", **inputs)


def check_backend(
    backend: Backend | str,
    *,
    problems: Sequence[Problem] | None = None,
    schedules: Sequence[str] = SCHEDULES,
    vectorized: bool = True,
    device: Any = None,
    tol: float = 1e-8,
) -> tuple[str, ...]:
    """Check that ``backend`` gives the serial backend's runs, bit for bit.

    Every problem is solved with its own ``coarse``, ``fine`` and ``slices`` in each schedule,
    once on ``backend`` and once on the serial backend, and the two runs must agree in every
    iterate (seen by a callback), iterations, status, residuals, ``y`` (bit for bit) and
    critical path per iteration: what :func:`parareal.solve` promises for every backend when
    ``f`` computes each state of a batch independently.

    Parameters
    ----------
    backend : Backend or str
        An instance (yours or a built-in one; left open) or a registered name (made for the
        check, closed after it). An SPMD backend (``MPI``) is checked by calling this on
        every rank, like ``solve``.
    problems : sequence of Problem, optional
        Default: :func:`default_problems` (numpy states), plus, when torch is installed, the
        linear system as torch float64 and float32 tensors.
    schedules : sequence of str
        Default: both, ``"synchronous"`` and ``"pipelined"``.
    vectorized : bool
        Passed to ``solve`` (the bundled problems accept batches). With True a batching
        backend stacks states into one call of ``f``.
    device : str or torch.device, optional
        Run on torch states on this device instead (for ``cuda-streams``: ``"cuda"``). With
        the default problems: the torch cases above; with ``problems``: their ``y0`` moved
        there (their ``f`` must then accept torch tensors).
    tol : float
        The stopping tolerance of every run.

    Returns
    -------
    tuple of str
        The runs compared, ``"problem/schedule"``.

    Raises
    ------
    AssertionError
        ``check_backend: same iterates: boundary n of iterate k differs from the serial
        backend's by x (max abs); problem=..., schedule=..., backend=...``, or the same
        for iterations and status, residuals, y and critical path.

    Notes
    -----
    The default problems are every bundled problem and a 5-dimensional linear system, plus that
    system as torch float64 and float32 tensors: 20 pairs of runs, about 5 s on one core. The
    serial runs of the default problems are computed once per process and reused. Bit-for-bit
    agreement needs an ``f`` that computes each state of a batch as it computes it alone
    (elementwise numpy, a stencil); a batched matrix product, or torch's CPU kernels for
    complex multiplication, round differently with the batch size, which is why the default
    torch problems are real. Dask: ``check_backend(Executor(client.get_executor()))``.
    """
    if not isinstance(backend, (Backend, str)):
        raise TypeError(f"backend must be a Backend instance or a registered name, got "
                        f"{type(backend).__name__}")
    schedules = tuple(schedules)
    for schedule in schedules:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedules must hold {SCHEDULES}, got {schedule!r}")
    if not isinstance(vectorized, bool):
        raise TypeError(f"vectorized must be True or False, got {vectorized!r}")
    cases = _cases(problems, device)
    serial = resolve_backend("serial")
    done = []
    with using_backend(backend) as engine:  # a backend named here is closed after the check
        for case in cases:
            for schedule in schedules:
                key = (case.label, schedule, vectorized, tol, str(device))
                ref = _REFERENCES.get(key) if problems is None else None
                if ref is None:
                    ref = _solve(case, serial, schedule, vectorized, tol)
                    if problems is None:
                        _REFERENCES[key] = ref
                got = _solve(case, engine, schedule, vectorized, tol)
                inputs = dict(problem=case.label, schedule=schedule, vectorized=vectorized,
                              backend=backend if isinstance(backend, str) else repr(backend))
                _compare(got, ref, inputs)
                done.append(f"{case.label}/{schedule}")
    return tuple(done)
