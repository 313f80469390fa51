"""Public entry points: :func:`solve`, :func:`odeint`, :func:`solve_serial`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backends import Rhs, Task, refuse_lost_gradients, using_backend
from .backends.concurrent import open_session
from .checkpoint import (
    Checkpointer,
    check_checkpoint_path,
    check_resume_path,
    read_checkpoint,
    run_fingerprint,
)
from .engine import DEFAULT_LOOKAHEAD, SCHEDULES, RunSpec, run_parareal
from .engine.auto import AutoCoarse
from .errors import NoSpeedupWarning
from .propagators import JacobianSource, Propagator, ScipyIVP, resolve
from .result import IterationInfo, Solution, Status
from .state import ArrayOps, is_torch
from .stopping import MaxUpdate, StopRule, check_stop
from .validation import (
    check_boundaries,
    check_int,
    check_max_iters,
    check_slices,
    check_span,
    check_y0,
)

__all__ = ["solve", "solve_serial"]


def check_callable(f: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``f`` is callable as ``f(t, y)``."""
    if not callable(f):
        raise TypeError(f"{name} must be callable as {name}(t, y), got {type(f).__name__}")


def _check_callback(callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(
            "callback must be callable as callback(info) -> bool | None (or None), where "
            "info is a parareal.IterationInfo (iteration, residual, t, y, critical_path, "
            f"f_evals); got {type(callback).__name__}"
        )


def resolve_coarse(coarse: Any) -> Propagator | AutoCoarse:
    """``coarse``: a Propagator, a spec string, or ``"auto"`` / an :class:`AutoCoarse`."""
    if isinstance(coarse, AutoCoarse):
        return coarse
    if isinstance(coarse, str) and coarse.strip().lower() == "auto":
        return AutoCoarse()
    return resolve(coarse, name="coarse")


def _balancer(y0: Any, jac: Any, jac_sparsity: Any) -> Propagator:
    """The loose solve that places ``boundaries="work"`` (LSODA; RK45 or BDF for large
    states without a Jacobian, see :meth:`AutoCoarse.for_state`).

    Raises
    ------
    ImportError
        Without scipy, whose solver it is.
    """
    size = int(np.prod(tuple(y0.shape)))
    balancer = AutoCoarse().with_jacobian(jac, jac_sparsity).for_state(size).initial
    if not isinstance(balancer, ScipyIVP):  # AutoCoarse's initial solve without scipy
        raise ImportError('boundaries="work" needs scipy (one loose LSODA solve places the '
                          "slices): pip install 'parareal[scipy]'")
    return balancer


def with_jacobian(prop: Propagator, jac: Any, jac_sparsity: Any) -> Propagator:
    """``prop`` using ``jac`` when it can use a Jacobian and has none of its own."""
    method = getattr(prop, "with_jacobian", None)
    return prop if method is None else method(jac, jac_sparsity)


def _check_lookahead(lookahead: Any) -> int | None:
    if lookahead is None:
        return None
    return check_int(lookahead, "lookahead", 0)


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_initial(initial: Any, y0: Any, ops: ArrayOps, slices: int) -> list[Any] | None:
    if initial is None:
        return None
    expected = (slices + 1, *tuple(y0.shape))
    if is_torch(y0) != is_torch(initial) or tuple(getattr(initial, "shape", ())) != expected:
        raise ValueError(
            f"initial must be an array of y0's kind with shape {expected} "
            "(one state per slice boundary)"
        )
    if is_torch(y0):
        complex_initial = initial.is_complex()
    else:
        initial = np.asarray(initial)
        complex_initial = initial.dtype.kind == "c"
        if initial.dtype.kind not in "biufc":
            raise TypeError(f"initial must hold numbers, got dtype {initial.dtype}")
    if complex_initial and not (y0.is_complex() if is_torch(y0) else y0.dtype.kind == "c"):
        raise TypeError(
            f"initial is complex but y0 is real ({y0.dtype}): the imaginary part would be "
            "dropped; pass a complex y0 to solve a complex ODE, or a real initial"
        )
    if not all(ops.all_finite(row) for row in initial):
        raise ValueError("initial contains NaN or inf; every boundary value must be finite")
    if is_torch(y0):
        initial = initial.to(dtype=y0.dtype, device=y0.device)
        return list(initial.unbind(0))
    return list(initial.astype(y0.dtype, copy=False))


def _prepare_checkpoint(
    checkpoint: Any, resume: Any, *, y0: Any, ops: ArrayOps, boundaries: np.ndarray,
    coarse: Propagator, fine: Propagator, rule: StopRule, initial: Any,
    max_iters: int,
) -> tuple[Checkpointer | None, Any]:
    """The checkpoint writer and the state to resume from (checked against this run)."""
    checkpoint_path, resume_path = check_checkpoint_path(checkpoint), check_resume_path(resume)
    writer, state = None, None
    if checkpoint_path is not None or resume_path is not None:
        tol, rtol, other = _rule_fields(rule)
        run = run_fingerprint(y0=y0, boundaries=boundaries, coarse=coarse, fine=fine,
                              tol=tol, rtol=rtol, initial=initial, stop=other)
        if checkpoint_path is not None:
            writer = Checkpointer(checkpoint_path, run)
        if resume_path is not None:
            state = read_checkpoint(resume_path, run, ops)
            if state.iteration > max_iters:
                raise ValueError(
                    f"max_iters = {max_iters} is below the iteration of the checkpoint "
                    f"{resume_path!r} ({state.iteration}); pass max_iters >= "
                    f"{state.iteration} to resume from it"
                )
    return writer, state


def _rule_fields(rule: StopRule) -> tuple[float, float, str | None]:
    """``(tol, rtol, other)`` identifying the rule: the default ``MaxUpdate`` by its
    tolerances (``other = None``), another rule by its fingerprint (``tol = rtol = 0``)."""
    if isinstance(rule, MaxUpdate):
        return float(rule.tol or 0.0), rule.rtol, None
    return 0.0, 0.0, rule.fingerprint()


def warn_no_speedup(solution: Solution, stacklevel: int = 2) -> None:
    """Issue :class:`~parareal.NoSpeedupWarning` when ``solution`` cannot have paid: its
    speed-up bound is below 1, or it converged only because every slice became exact."""
    stats = solution.stats
    bound = stats.speedup_bound
    slices = len(solution.t) - 1
    K = solution.iterations
    if solution.status is Status.DIVERGED:
        return
    exact_only = solution.status is Status.CONVERGED and K >= slices
    if not exact_only and not (math.isfinite(bound) and bound < 1.0):
        return
    figures = (f"speed-up bound {bound:.2f} (serial fine solve {stats.serial_fine_cost:.0f} "
               f"calls of f / critical path {stats.critical_path} calls), {K} iterations for "
               f"{slices} slices")
    if exact_only:
        what = ("it converged only because every slice became exact, which is the serial "
                "fine solve done the slow way")
    else:
        what = "it cannot be faster than the serial fine solve, even with a worker per slice"
    advice = []
    if K >= max(slices - 1, 1) and slices > 1:
        advice.append("the coarse propagator is too inaccurate or unstable here: try "
                      + ("" if solution.coarse_choice is not None else "coarse='auto', ")
                      + "more coarse steps, or for stiff problems an implicit coarse such "
                      "as 'ros2:8' or 'be:20' with jac=")
    if stats.serial_fine_cost == stats.serial_fine_cost and slices > 1:
        advice.append("boundaries='work' balances the fine work when some slices cost far "
                      "more than others (stiff transients)")
    else:
        advice.append("the coarse sweeps and iterations cost too much against the fine "
                      "propagations: try a cheaper coarse, more slices, or "
                      "schedule='pipelined' (critical path about K*m + N*g instead of "
                      "K*(m + N*g))")
    if solution.coarse_choice is not None:
        advice.append(f"coarse='auto' chose {solution.coarse_choice.propagator!r}")
    warnings.warn(
        NoSpeedupWarning(f"parareal: {what}: {figures}. Advice: " + "; ".join(advice),
                         speedup_bound=bound, iterations=K, slices=slices, solution=solution),
        stacklevel=stacklevel + 1)


def solve(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    *,
    coarse: Propagator | str = "auto",
    fine: Propagator | str,
    slices: int,
    tol: float | None = None,
    rtol: float = 0.0,
    max_iters: int | None = None,
    backend: Any = "serial",
    schedule: str = "synchronous",
    lookahead: int | None = DEFAULT_LOOKAHEAD,
    callback: Callable[[IterationInfo], Any] | None = None,
    progress: bool = False,
    vectorized: bool = False,
    initial: Any = None,
    boundaries: Sequence[float] | str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    stop: StopRule | None = None,
    jac: Callable[[Any, Any], Any] | None = None,
    jac_sparsity: Any = None,
) -> Solution:
    """Solve ``dy/dt = f(t, y)`` on ``t_span`` with Parareal.

    The span is split into ``slices`` equal slices. A coarse sweep gives a first guess; each
    iteration runs the fine propagator on every slice that is not yet exact (in parallel, as the
    backend allows) and corrects with a sequential coarse sweep. After ``k`` iterations the first
    ``k`` boundaries equal the serial fine solution, so ``slices`` iterations reproduce it.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt`` (torchdiffeq's convention). ``t`` is a float for numpy states and a
        0-d tensor of the state's real dtype for torch states. See ``vectorized``.
    y0 : numpy.ndarray or torch.Tensor
        Initial state, any shape, floating or complex dtype. Results keep its kind, dtype and
        device. Array-likes and Python or numpy scalars (a state of shape ``()``) are taken
        too; integer arrays are converted to float64. Must be finite.
    t_span : (float, float)
        ``(t0, t1)`` with ``t0 < t1``.
    coarse : Propagator, str or AutoCoarse
        The coarse propagator ``G``: an instance such as ``RK4(steps=4)`` or
        ``Rosenbrock2(steps=8)``, a spec string (``"rk4:4"``, ``"ros2:8"``, ``"be:20"``), or
        ``"auto"`` (the default; :class:`parareal.AutoCoarse` with other candidates): chosen
        for this ``f``, ``y0``, slicing and fine propagator by a probe on the first slice
        that predicts each candidate's critical path; ``Solution.coarse_choice`` says what
        it chose and why, and the probe's calls count in ``Stats``. See "Choosing the coarse
        method" in ``docs/guide.md``.
    fine : Propagator or str
        The fine propagator ``F``, e.g. ``RK4(steps=20)``, ``"rk4:20"``, ``"scipy:Radau"``.
    slices : int
        Number of time slices ``N >= 1``.
    tol, rtol : float
        Stop when ``max_n |U_n^k - U_n^{k-1}| <= tol + rtol * max_n |U_n^k|`` (max-norms).
        ``tol = rtol = 0`` runs exactly ``max_iters`` iterations. ``tol=None`` (default)
        follows ``y0``'s dtype: ``1e-8`` for float64, about ``32 eps`` times the states'
        magnitude for float32 and lower precisions (:func:`parareal.default_tolerance`,
        :func:`parareal.tolerance.resolve_tolerance`). A smaller tolerance than the dtype
        can resolve issues a :class:`parareal.ToleranceWarning`. They set the default
        stopping rule, :class:`parareal.MaxUpdate`; with ``stop=`` leave them unset.
    stop : StopRule, optional
        The stopping rule, asked after every iterate (:mod:`parareal.stopping`):
        ``MaxUpdate(tol, rtol)`` (the default, from ``tol`` and ``rtol``), ``FinalChange``
        (the final value alone, SRDS's rule), ``FineResidual`` (pymgrit's residual at the
        boundaries) or a subclass of :class:`parareal.StopRule` of your own. What it saw is
        in ``Solution.stop_state``.
    max_iters : int, optional
        Iteration cap; ``None`` means ``slices`` (exactness). Values above ``slices`` are
        capped at ``slices``.
    backend : {"serial", "batched", "threads", "processes", "cuda-streams"} or Backend
        Where the work runs. ``"batched"`` stacks all active slices into one call of ``f`` per
        sub-step when ``vectorized`` is True. ``"threads"``, ``"processes"`` and
        ``"cuda-streams"`` (or instances such as ``Threads(4)``, ``Processes(8)`` and
        ``Executor(executor)`` for any ``concurrent.futures`` executor, Dask's included) run
        the fine propagations concurrently on workers; see "Choosing a backend" in
        ``docs/guide.md``. Every backend gives the same iterations, residuals, status and
        critical path, and the same ``y`` bit for bit when ``f`` computes each state of a
        batch independently.
    schedule : {"synchronous", "pipelined"}
        ``"pipelined"`` starts a slice's next fine solve as soon as its start value exists. Both
        give the same iterates; only the critical path differs.
    lookahead : int or None
        Pipelined schedule only: fine work may run at most this many iterations ahead of the
        newest complete iterate (``F(n, k)`` waits for iterate ``k - lookahead``), so that
        speculative work stays within ``lookahead`` fine sweeps of the synchronous schedule's.
        ``None`` removes the bound (work can then grow like ``slices**2``). The default, 2,
        keeps the unbounded pipeline's latency on the benchmark problems
        (``docs/benchmarks.md``).
    callback : callable, optional
        Called with an :class:`IterationInfo` after each complete iterate (including 0). If it
        returns ``True`` (or ``numpy.True_``, or a one-element boolean array or tensor holding
        True) the run stops there with status ``CONVERGED``: a custom convergence test (other
        return values, ``None`` included, are ignored).
    progress : bool
        Print one line per iteration on standard error.
    vectorized : bool
        Declare that ``f`` accepts batches: it is then always called as ``f(t, Y)`` with ``t``
        of shape ``(B,)`` and ``Y`` of shape ``(B, *y0.shape)``, returning ``(B, *y0.shape)``
        (like ``scipy.integrate.solve_ivp(vectorized=True)``, with a leading batch axis).
        A non-vectorised ``f`` works with every backend.
    initial : array, optional
        Iterate 0 instead of the coarse sweep: the boundary values, shape
        ``(slices + 1, *y0.shape)`` (a warm start; ``initial[0]`` is replaced by ``y0``).
        Must be finite, of ``y0``'s kind; a complex ``initial`` for a real ``y0`` is refused
        (its imaginary part would be lost).
    boundaries : sequence of float or "work", optional
        Explicit slice boundaries instead of equal slices: ``slices + 1`` strictly increasing
        values from ``t0`` to ``t1`` (uneven slices, e.g. SRDS blocks of unequal length).
        ``"work"`` chooses them from the work: one loose LSODA solve over the span (scipy's:
        an ImportError without scipy; its calls count in ``Stats``) places them so that
        every slice holds an equal share of its steps, which balances the fine propagations
        of stiff problems whose transients make equal slices very unequal in cost;
        ``Solution.t`` gives the boundaries used. With ``coarse="auto"`` the same solve is
        iterate 0. Not with ``initial``, ``checkpoint`` or ``resume``.
    checkpoint : str or os.PathLike, optional
        Write the newest iterate to this file after every complete iterate (0 included) and
        when the run stops, atomically (a temporary file in the same folder, then a rename):
        an ``.npz`` archive for numpy states, a safetensors file for torch states (the format
        is in :mod:`parareal.checkpoint`). A run killed mid-write may leave a
        ``.NAME.*.part.EXT`` file behind, never a partial checkpoint. Checked before any call
        of ``f``: the path must name a regular file, a symbolic link to one (written through:
        the file it points to is replaced and the link stays a link) or nothing yet; its name
        must be valid (no NUL byte, no part longer than the file system allows) and its folder
        must exist and accept new files (a temporary file is really created and removed).
        See "Checkpoint and restart" in ``docs/guide.md``.
    resume : str or os.PathLike, optional
        Continue from a checkpoint written by a run with the same ``f``, ``y0``, span,
        slices/boundaries, propagators, ``tol``, ``rtol`` and ``initial`` (checked, except
        ``f``); the result is that run's, bit for bit. ``backend``, ``schedule``,
        ``lookahead``, ``vectorized``, ``callback`` and ``progress`` may differ, and
        ``max_iters`` may grow (a run stopped at ``max_iters`` then goes on). The callback
        sees only the new iterates. May be the same path as ``checkpoint``. A missing file
        raises ``FileNotFoundError``; a corrupt or mismatched one ``ValueError`` naming every
        field that differs. ``tol`` and ``rtol`` may not change (to continue with others,
        warm-start a new run with ``initial=load_checkpoint(path).y``); ``max_iters`` below
        the checkpoint's iteration is a ``ValueError``, equal to it stops there. The path must
        name a regular file or a link to one: a folder, a device, a FIFO or a dangling link is
        refused without being opened, and a file larger than any checkpoint of this run can
        be is refused from its size. A checkpoint of a run that had stopped returns at once
        (no call of ``f``); otherwise the propagations of the checkpointed iterate are
        recomputed (the same bits) and the run goes on. ``residuals``,
        ``critical_path_per_iteration`` and ``wall_time_per_iteration`` are complete (their
        first entries come from the file; time between the runs is not counted); the other
        counters of ``Stats`` count the resumed run's own work.
    jac : callable, optional
        The Jacobian ``jac(t, y) -> df/dy`` for one state (``t`` and ``y`` as ``f`` gets
        them), returning a ``(d, d)`` dense numpy array, scipy sparse matrix or torch tensor
        (``d = y0.size``). Handed to every propagator that can use one and has none of its
        own: the implicit ones (``BackwardEuler``, ``Rosenbrock2``...) and ``ScipyIVP``'s
        implicit methods. Without it implicit propagators use autograd (torch states) or
        finite differences (numpy states). Each Jacobian counts one tick on the critical
        path (``Stats.jac_calls``).
    jac_sparsity : array_like or scipy sparse matrix, optional
        The ``(d, d)`` nonzero pattern of the Jacobian, for finite differences (as in
        :func:`scipy.integrate.solve_ivp`).

    Returns
    -------
    Solution
        Boundary times and values, iterations, status, residuals and statistics.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments, naming the argument and what is allowed: ``TypeError`` for a
        value of the wrong kind, ``ValueError`` for a bad value of the right kind, before any
        work. Among the less obvious cases: a ``numpy.ma.MaskedArray`` (its mask would be
        dropped), a sparse or quantized tensor, or a ``y0`` on the ``meta`` device; ``slices``
        above 1 000 000 or a fixed-step propagator's ``steps`` above 100 000 000 (unbounded
        work); ``vectorized``, ``progress`` not a bool. While running: ``f`` returning the
        wrong shape (``ValueError``), ``None``, a non-numeric value, another kind of array,
        complex values for a real state or a tensor on another device (``TypeError``);
        ``f`` writing into its argument ``y``, checked on its first call (``ValueError``);
        ``vectorized=True`` with an ``f`` that fails on a batch (``ValueError`` saying what
        ``vectorized`` means); gradients wanted (``y0`` or ``f``'s parameters require grad)
        on a backend that runs ``f`` in other processes (``ValueError`` naming the backends
        where gradients flow); a backend of your own returning more or fewer results than
        requests (``TypeError``); ``jac`` returning complex values for a real state
        (``TypeError``). Also for a corrupt, truncated or mismatched ``resume`` checkpoint.
    RuntimeError
        If ``f`` raises ``StopIteration`` (it would look like the end of a propagation; the
        original is the ``__cause__``), or a worker process of a concurrent backend dies.
    ImportError
        An optional dependency is missing; the message names the extra to install.
    FileNotFoundError
        If ``resume`` names no file.

    Exceptions raised inside ``f`` propagate unchanged (on a batched call, Python 3.11 and
    later add a note saying how ``f`` was called). Numerical failure is not an exception: it
    is ``Status.DIVERGED``.
    """
    t0, t1 = check_span(t_span)
    slices = check_slices(slices)
    if isinstance(boundaries, str) and boundaries != "work":
        raise ValueError(f'boundaries must be "work", None or a sequence of slices + 1 '
                         f"increasing times, got {boundaries!r}")
    balance = boundaries == "work" if isinstance(boundaries, str) else False
    if balance:
        for name, value in (("initial", initial), ("checkpoint", checkpoint),
                            ("resume", resume)):
            if value is not None:
                raise ValueError(f'boundaries="work" places the slices during the run, so '
                                 f"{name} cannot be given with it; pass explicit "
                                 "boundaries (e.g. a previous run's Solution.t) instead")
        boundaries = None
    grid = check_boundaries(boundaries, t0, t1, slices)
    check_callable(f, "f")
    y0, ops = check_y0(y0)
    coarse_p = resolve_coarse(coarse)
    fine_p = resolve(fine, name="fine")
    if jac is not None or jac_sparsity is not None:
        JacobianSource(jac, jac_sparsity)  # checks both: TypeError/ValueError naming them
        coarse_p = with_jacobian(coarse_p, jac, jac_sparsity)
        fine_p = with_jacobian(fine_p, jac, jac_sparsity)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    _check_callback(callback)
    # the default rule's ToleranceWarning points at the caller (bind -> resolve_tolerance)
    rule = MaxUpdate(tol, rtol).bind(y0) if stop is None else _stop_rule(stop, tol, rtol, y0)
    max_iters = check_max_iters(max_iters, slices)
    initial = _check_initial(initial, y0, ops, slices)
    with using_backend(backend) as engine_backend:
        rule_tol, rule_rtol, _ = _rule_fields(rule)
        engine_backend.enter(  # SPMD: every rank is here, with these arguments
            f=f, y0=y0, boundaries=grid, coarse=coarse_p, fine=fine_p, tol=rule_tol,
            rtol=rule_rtol, stop=rule.fingerprint(), max_iters=max_iters, schedule=schedule,
            lookahead=lookahead, vectorized=vectorized, initial=initial,
            checkpointing=(checkpoint is not None, resume is not None))
        writer, state = None, None
        if checkpoint is not None or resume is not None:  # the same on every SPMD rank
            writer, state = engine_backend.agree(lambda: _prepare_checkpoint(
                checkpoint, resume, y0=y0, ops=ops, boundaries=grid, coarse=coarse_p,
                fine=fine_p, rule=rule, initial=initial, max_iters=max_iters),
                what="the checkpoint arguments") or (None, None)
        solution = run_parareal(RunSpec(
            rhs=Rhs(f, ops, _check_flag(vectorized, "vectorized"), check_first=True),
            y0=y0,
            boundaries=grid,
            coarse=coarse_p,
            fine=fine_p,
            backend=engine_backend,
            stop=rule,
            max_iters=max_iters,
            schedule=schedule,
            lookahead=_check_lookahead(lookahead),
            callback=callback,
            progress=_check_flag(progress, "progress"),
            initial=initial,
            checkpoint=writer,
            resume=state,
            balance=_balancer(y0, jac, jac_sparsity) if balance else None,
        ))
    warn_no_speedup(solution, stacklevel=2)
    return solution


def _stop_rule(stop: Any, tol: Any, rtol: Any, y0: Any) -> StopRule:
    """A rule of the caller's, checked and bound to ``y0`` (``tol``/``rtol`` must be unset)."""
    if tol is not None or rtol != 0.0:
        raise ValueError("tol and rtol set the default stopping rule; with stop= give the "
                         "tolerance to the rule instead (e.g. stop=MaxUpdate(tol, rtol))")
    return check_stop(stop).bind(y0)


def solve_serial(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    *,
    propagator: Propagator | str,
    slices: int = 1,
    backend: Any = "serial",
    boundaries: Sequence[float] | None = None,
) -> Any:
    """Apply ``propagator`` slice after slice: the serial solution Parareal converges to.

    Returns the ``slices + 1`` boundary values stacked, in ``y0``'s kind. With the same
    ``slices`` (or ``boundaries``, e.g. a run's ``Solution.t``) and the fine propagator, this
    is exactly what ``solve`` reproduces.

    ``backend`` says where the propagations run: here (``"serial"``, ``"batched"``: the same
    thing for one propagation at a time) or, one slice after the other, on a worker of a
    concurrent backend (``"threads"``, ``"processes"``, ``"cuda-streams"`` or an instance,
    e.g. ``Executor(client.get_executor())``), which gives the same values bit for bit.
    """
    check_callable(f, "f")
    y0, ops = check_y0(y0)
    t0, t1 = check_span(t_span)
    slices = check_slices(slices)
    prop = resolve(propagator, name="propagator")
    boundaries = check_boundaries(boundaries, t0, t1, slices)
    values = [y0]
    with using_backend(backend) as engine_backend:
        if engine_backend.serial_here:
            # serial work has nothing to spread; SPMD ranks each compute it
            for n in range(slices):
                values.append(prop.propagate(f, values[-1], boundaries[n], boundaries[n + 1]))
            return _warn_nonfinite(ops, values, boundaries)
        rhs = Rhs(f, ops, False)
        refuse_lost_gradients(engine_backend, rhs, y0, float(boundaries[0]))
        session = open_session(engine_backend, rhs, prop, y0,  # type: ignore[arg-type]
                               slices=slices)
        try:
            for n in range(slices):
                task = Task(prop, [values[-1]], [boundaries[n]], [boundaries[n + 1]])
                values.append(session.result(session.submit(task)).values[0])
        finally:
            session.close()
    return _warn_nonfinite(ops, values, boundaries)


def _warn_nonfinite(ops: ArrayOps, values: list[Any], boundaries: np.ndarray) -> Any:
    """``values`` stacked; a ``RuntimeWarning`` names the first boundary that is not finite
    (the bare array says nothing itself)."""
    for n, value in enumerate(values):
        if not ops.all_finite(value):
            warnings.warn(f"solve_serial: the propagation produced NaN or inf at boundary {n} "
                          f"(t = {boundaries[n]:g}); the values from there on are not finite",
                          RuntimeWarning, stacklevel=3)
            break
    return ops.stack(values)
