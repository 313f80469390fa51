""":func:`check_propagator`: the implementer's checklist of :class:`~parareal.Propagator`,
verified on one instance."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..propagators import Propagator, drive
from ..propagators.base import answer_jacobian
from ..propagators.jacobian import JacobianRequest
from ..state import Lanes, is_torch, ops_for
from ..validation import check_int, check_positive
from .report import describe, fail, max_abs_diff, same_bits
from .systems import ForcedDecay

__all__ = ["DTYPES", "ORDER_SETTLED", "ORDER_SPANS", "ORDER_STEPS", "PropagatorReport",
           "check_propagator"]

CHECK = "check_propagator"
#: The dtypes :func:`check_propagator` tries by default (numpy, and torch when installed).
DTYPES = ("float64", "float32", "complex128")
#: Lengths ``h`` of the propagations the order is measured on: ``8, 4, ..., 2**-10``.
ORDER_SPANS = tuple(2.0**k for k in range(3, -11, -1))
#: Sub-step counts over ``[0.3, 1.3]`` the order of a steppable propagator is measured with.
ORDER_STEPS = tuple(2**k for k in range(11))
#: Errors below this (float64, states of size 1) are treated as round-off, not as a trend.
ORDER_FLOOR = 1e-13
#: Step halving stops once three slopes in a row lie this close to the declared order (or
#: ``order_tol``, when smaller): the order is established, and the larger ``n`` (which cost as
#: much as all the smaller ones together) would only confirm it.
ORDER_SETTLED = 0.05
#: The start time of every probe (not 0, so that a propagator that ignores ``t0`` is caught).
T0 = 0.3
#: Length of the propagations that check kinds and dtypes (short: a crude method is accurate
#: on it, so that a lost imaginary part or precision stands out).
PROBE = 0.05
_LINEAR = ForcedDecay(-1.0)
_NONLINEAR = ForcedDecay(-1.0, mu=-1.0)


@dataclass(frozen=True)
class PropagatorReport:
    """What :func:`check_propagator` verified.

    Attributes
    ----------
    propagator : str
        ``repr`` of the propagator.
    checked : tuple of str
        The properties that held, in the order they were checked.
    skipped : Mapping[str, str]
        Properties not checked, with the reason (e.g. ``"grouped path equals propagate"``:
        not groupable).
    declared_order : int or None
        The order the check compared with (``order=`` or the propagator's ``order``).
    measured_order : float or None
        The measured order of accuracy (``None`` when not measured).
    error : float or None
        Tolerance-based accuracy (propagators without an order): the max abs error over
        ``(0.3, 2.3)`` on the linear test equation.
    """

    propagator: str
    checked: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    declared_order: int | None = None
    measured_order: float | None = None
    error: float | None = None


class _Breach(Exception):
    """Raised by :class:`_Recorder` instead of calling ``f`` against its convention."""


class _Recorder:
    """Wraps ``f``: counts calls; raises :class:`_Breach` on a call against the convention."""

    def __init__(self, f: Callable[[Any, Any], Any], template: Any) -> None:
        self.f = f
        self.calls = 0
        self.breach: str | None = None
        self.torch = is_torch(template)
        self.shape = tuple(template.shape)
        if self.torch:
            self.device = template.device
            self.time_dtype = template.real.dtype if template.is_complex() else template.dtype

    def __call__(self, t: Any, y: Any) -> Any:
        self.calls += 1
        self.breach = self._breach(t, y)
        if self.breach is not None:
            raise _Breach(self.breach)
        return self.f(t, y)

    def _breach(self, t: Any, y: Any) -> str | None:
        if self.torch:
            if not (is_torch(t) and t.ndim == 0 and t.dtype == self.time_dtype
                    and t.device == self.device):
                return (f"f got t = {t!r}, expected a 0-d tensor of dtype {self.time_dtype} on "
                        f"{self.device}")
        elif is_torch(t) or not isinstance(t, float):
            return f"f got t = {t!r} of type {type(t).__name__}, expected a Python float"
        if is_torch(y) != self.torch or tuple(getattr(y, "shape", ())) != self.shape:
            kind = "torch" if self.torch else "numpy"
            return f"f got y = {describe(y)}, expected a {kind} state of shape {self.shape}"
        return None


def _torch_module(torch: bool | None) -> Any:
    if torch is False:
        return None
    try:
        import torch as module
    except ImportError:
        if torch:
            raise ImportError("check_propagator(torch=True) needs torch: pip install "
                              "'parareal[torch]'") from None
        return None
    return module


def _states(dtypes: Sequence[str], torch: Any, device: Any) -> list[Any]:
    """The probe states: numpy of every dtype (two shapes), torch of every dtype on ``device``."""
    if device is not None and torch is None:
        raise ValueError("device applies to torch states; install torch or leave device=None")
    out = []
    for name in dtypes:
        for shape in ((4,), (2, 3)):
            base = np.linspace(-1.0, 1.5, math.prod(shape)).reshape(shape)
            y = base.astype(name)
            if y.dtype.kind == "c":
                y = y + (0.5j * base[::-1]).astype(name)
            out.append(y)
        if torch is not None:
            out.append(torch.as_tensor(out[-1], device=device))
    return out


def _check_dtypes(dtypes: Any) -> tuple[str, ...]:
    if isinstance(dtypes, str) or not isinstance(dtypes, Sequence) or not dtypes:
        raise TypeError(f"dtypes must be a non-empty sequence of dtype names, got {dtypes!r}")
    names = []
    for name in dtypes:
        kind = np.dtype(name).kind
        if kind not in "fc":
            raise ValueError(f"dtypes must be floating or complex, got {name!r}")
        names.append(np.dtype(name).name)
    return tuple(names)


def _run(prop: Propagator, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float,
         what: str) -> Any:
    try:
        return prop.propagate(f, y, t0, t1)
    except _Breach as exc:
        fail(CHECK, "calling convention of f", str(exc), propagator=prop, y=describe(y))
    except Exception as exc:
        fail(CHECK, what, f"propagate raised {type(exc).__name__}: {exc}", propagator=prop,
             y=describe(y), t0=t0, t1=t1)


def _fresh(prop: Propagator) -> Callable[[], Propagator] | None:
    """A maker of copies of ``prop`` as it is now (``None`` when it cannot be copied)."""
    try:
        template = copy.deepcopy(prop)
        copy.deepcopy(template)
    except Exception:
        return None
    return lambda: copy.deepcopy(template)


def check_propagator(
    prop: Propagator,
    *,
    order: int | None = None,
    dtypes: Sequence[str] = DTYPES,
    torch: bool | None = None,
    device: Any = None,
    order_tol: float = 0.3,
    accuracy_factor: float = 100.0,
) -> PropagatorReport:
    """Check a propagator against the checklist of :class:`~parareal.Propagator`.

    Properties, in the order they are checked (the first that fails raises):

    1. ``readable repr``: ``repr(prop)`` is not the default ``<... object at 0x...>``.
    2. ``kind, shape, dtype and device kept``: on numpy states of each of ``dtypes`` (shapes
       ``(4,)`` and ``(2, 3)``) and on torch tensors of each (on ``device``), ``propagate``
       returns the same kind, shape, dtype and device, finite, and leaves its input as it was.
    3. ``calling convention of f``: ``f(t, y)`` gets ``t`` as a Python float for numpy states
       and as a 0-d tensor of the state's real dtype on its device for torch states, and ``y``
       of the state's kind and shape.
    4. ``same accuracy in every dtype``: on each state, the error against the exact solution is
       at most ``100`` times that of the float64 numpy state plus ``1000`` ulps of the dtype
       (catches a dropped imaginary part, or work done in the wrong precision).
    5. ``deterministic``: the same call twice gives the same bits.
    6. ``no state between calls``: a sequence of calls on ``prop`` (other states, times, shapes
       and another ``f`` in between) gives, call for call, the bits of a fresh copy of ``prop``
       (:func:`copy.deepcopy` made at the start) called once. Properties 2 to 5 are checked
       on such fresh copies, so that state kept between calls shows here, under its name
       (when ``prop`` cannot be deep-copied, everything runs on ``prop`` itself).
    7. ``evals``: when ``prop.evals`` is not None, one propagation calls ``f`` that often.
    8. ``steppable path equals propagate`` (``prop.steppable``): driving ``prop.stepper`` by
       hand, answering each request ``(t, y)`` with ``f(t, y)``, gives the bits of
       ``propagate``, with ``evals`` requests, all at times in ``[t0, t1]``.
    9. ``grouped path equals propagate`` (``prop.groupable``): one stepper over three states
       stacked, with :class:`~parareal.state.Lanes` times, gives each state's bits alone.
    10. ``order of accuracy``: see below.

    The order is measured on two scalar ODEs with exact solutions, both time-dependent so
    that wrong stage times show: the linear ``y' = -(y - sin t) + cos t`` and the nonlinear
    ``y' = -e - e**2 + cos t``, ``e = y - sin t`` (:class:`~parareal.testing.systems.ForcedDecay`);
    the lower of the two measured orders counts.

    - A **steppable** propagator is measured by step halving: ``n = 1, 2, 4, ..., 1024`` of
      its own sub-steps (``prop.step``, :data:`ORDER_STEPS`) over ``[0.3, 1.3]``; the error
      falls like ``n**-p``. The halving stops early, once three slopes in a row lie within
      :data:`ORDER_SETTLED` (``0.05``, or ``order_tol`` when smaller) of the declared order:
      the order is then established, and each further ``n`` would cost as much as all the
      smaller ones together. A wrong declaration never settles, so it is judged on every ``n``.
    - An **opaque** propagator with a declared order cannot be told to take other steps, so
      the propagation is shortened: over ``[0.3, 0.3 + h]``, ``h = 8, 4, ..., 2**-10``
      (:data:`ORDER_SPANS`), with its internal step count fixed, the error of one
      propagation falls like ``h**(p + 1)``. Check an instance with few internal steps: with
      many, the errors reach round-off before the trend is clear (the check then says so).

    The measured order is the median slope of the three smallest steps whose errors stand
    above round-off (:data:`ORDER_FLOOR`, ``1e-13``). It must be within ``order_tol`` of the
    declared order, in both directions (a method more accurate than it claims has a wrong
    declaration too): ``order``, else the propagator's ``order`` attribute (the built-in
    fixed-step methods have one; a fixed-grid torchdiffeq method takes one step per
    propagation: pass its order, ``check_propagator(TorchDiffEq("rk4"), order=4)``).

    A propagator without a declared order (the adaptive ``ScipyIVP`` and ``TorchDiffEq``)
    gets a tolerance-based check instead when it has ``rtol`` and ``atol`` attributes: over
    ``(0.3, 2.3)`` its error is at most ``accuracy_factor * (rtol * max|y| + atol)``. Every
    ``ScipyIVP`` method passes it, and so does ``TorchDiffEq("dopri5")``; torchdiffeq's
    ``bosh3``, ``fehlberg2`` and ``dopri8`` do not (errors of a few hundred times the
    tolerance on this ODE). With neither, the property is skipped (``report.skipped`` says
    why).

    Parameters
    ----------
    prop : Propagator
        The instance to check (it is called, never modified by the check itself).
    order : int, optional
        The declared order of accuracy, overriding ``prop.order``.
    dtypes : sequence of str
        numpy dtype names of the probe states (the same names for torch tensors). Restrict
        them for a propagator that supports fewer: ``ScipyIVP("Radau")`` refuses complex
        states, so ``dtypes=("float64", "float32")``.
    torch : bool, optional
        Also probe torch tensors: ``None`` (default) when torch is installed.
    device : str or torch.device, optional
        Where the torch probe states live (default: the CPU).
    order_tol : float
        Allowed difference between measured and declared order.
    accuracy_factor : float
        Slack of the tolerance-based accuracy check (adaptive propagators).

    Returns
    -------
    PropagatorReport
        The measured order and the properties checked and skipped.

    Raises
    ------
    AssertionError
        When a property fails; the message is one line: ``check_propagator: <property>:
        <what was seen and by how much>; <the input that shows it>``.
    TypeError, ValueError
        On invalid arguments.
    """
    if not isinstance(prop, Propagator):
        raise TypeError(f"prop must be a parareal.Propagator, got {type(prop).__name__}")
    declared = None if order is None else check_int(order, "order")
    if declared is None and isinstance(getattr(prop, "order", None), int):
        declared = prop.order
    names = _check_dtypes(dtypes)
    order_tol = check_positive(order_tol, "order_tol")
    accuracy_factor = check_positive(accuracy_factor, "accuracy_factor")
    module = _torch_module(torch)
    states = _states(names, module, device)
    checked: list[str] = []
    skipped: dict[str, str] = {}

    text = repr(prop)
    if " object at 0x" in text:
        fail(CHECK, "readable repr", f"repr is the default {text}; define __repr__",
             propagator=type(prop).__name__)
    checked.append("readable repr")

    fresh = _fresh(prop)
    results = _kinds_kept(prop, states, fresh)
    checked += ["kind, shape, dtype and device kept", "calling convention of f"]
    _same_accuracy(prop, states, results)
    checked.append("same accuracy in every dtype")
    _deterministic(prop, states)
    checked.append("deterministic")
    _no_state(prop, states)
    checked.append("no state between calls")
    if prop.evals is None:
        skipped["evals"] = "prop.evals is None (not fixed in advance)"
    else:
        _evals(prop, states[0])
        checked.append("evals")
    if getattr(prop, "steppable", False):
        _steppable(prop, states)
        checked.append("steppable path equals propagate")
    else:
        skipped["steppable path equals propagate"] = "not steppable"
    if getattr(prop, "steppable", False) and getattr(prop, "groupable", False):
        _grouped(prop, states)
        checked.append("grouped path equals propagate")
    else:
        skipped["grouped path equals propagate"] = "not groupable"

    measured = error = None
    if declared is not None:
        measured = _order(prop, declared, order_tol)
        checked.append("order of accuracy")
    elif _tolerances(prop) is not None:
        error = _accuracy(prop, accuracy_factor)
        checked.append("accuracy within tolerance")
    else:
        skipped["order of accuracy"] = (
            "no declared order (pass order= or give the class an `order` attribute) and no "
            "rtol/atol attributes")
    return PropagatorReport(text, tuple(checked), skipped, declared, measured, error)


def _kinds_kept(prop: Propagator, states: list[Any],
                fresh: Callable[[], Propagator] | None) -> list[Any]:
    what = "kind, shape, dtype and device kept"
    results = []
    for y in states:
        before = ops_for(y).to_numpy(y)
        f = _Recorder(_LINEAR, y)
        out = _run(fresh() if fresh else prop, f, y, T0, T0 + PROBE, what)
        if is_torch(out) != is_torch(y) or not (is_torch(out) or isinstance(out, np.ndarray)):
            fail(CHECK, what, f"returned {describe(out)} for {describe(y)}", propagator=prop)
        if tuple(out.shape) != tuple(y.shape) or out.dtype != y.dtype or (
                is_torch(y) and out.device != y.device):
            fail(CHECK, what, f"returned {describe(out)} for {describe(y)}", propagator=prop)
        if not ops_for(y).all_finite(out):
            fail(CHECK, what, "returned NaN or inf on a smooth decaying ODE", propagator=prop,
                 y=describe(y), t0=T0, t1=T0 + PROBE)
        after = ops_for(y).to_numpy(y)
        if not np.array_equal(after, before):
            moved = max_abs_diff(after, before)
            fail(CHECK, what, f"propagate changed its input y in place by {moved:.3g} (max abs)",
                 propagator=prop, y=describe(y))
        results.append(out)
    return results


def _same_accuracy(prop: Propagator, states: list[Any], results: list[Any]) -> None:
    errors = []
    for y, out in zip(states, results, strict=True):
        exact = _LINEAR.exact(ops_for(y).to_numpy(y), T0, T0 + PROBE)
        errors.append((max_abs_diff(out, exact), float(np.max(np.abs(exact)))))
    for y, (err, scale) in zip(states, errors, strict=True):
        shape = tuple(y.shape)
        peers = [e for s, (e, _) in zip(states, errors, strict=True) if tuple(s.shape) == shape
                 and not is_torch(s) and s.dtype == np.float64]
        base = min(peers) if peers else min(e for s, (e, _) in zip(states, errors, strict=True)
                                            if tuple(s.shape) == shape)
        eps = float(np.finfo(ops_for(y).to_numpy(y).real.dtype).eps)
        allowed = 100.0 * base + 1000.0 * eps * max(1.0, scale)
        if not err <= allowed:
            fail(CHECK, "same accuracy in every dtype",
                 f"error {err:.3g} against the exact solution, above {allowed:.3g} (float64: "
                 f"{base:.3g}) by a factor {err / allowed:.3g}", propagator=prop,
                 y=describe(y), t0=T0, t1=T0 + PROBE)


def _probe(states: list[Any]) -> list[Any]:
    """The states the per-call properties use: the first numpy one and the torch ones."""
    return [states[1]] + [y for y in states if is_torch(y)][:1]


def _deterministic(prop: Propagator, states: list[Any]) -> None:
    fresh = _fresh(prop)
    for y in _probe(states):
        first = _run(fresh() if fresh else prop, _LINEAR, y, T0, T0 + 0.7, "deterministic")
        second = _run(fresh() if fresh else prop, _LINEAR, y, T0, T0 + 0.7, "deterministic")
        if not same_bits(first, second):
            fail(CHECK, "deterministic",
                 f"two identical calls differ by {max_abs_diff(first, second):.3g} (max abs)",
                 propagator=prop, y=describe(y), t0=T0, t1=T0 + 0.7)


def _no_state(prop: Propagator, states: list[Any]) -> None:
    fresh = _fresh(prop)
    for y in _probe(states):
        other = y[::-1] * 0.5 if not is_torch(y) else y.flip(0) * 0.5
        single = y.reshape(-1)[:3] * 2.0
        calls = [  # same times, other state; other f, shape and times; then again
            (_LINEAR, y, T0, T0 + 0.7),
            (_LINEAR, other, T0, T0 + 0.7),
            (ForcedDecay(-2.0, mu=0.5), single, 1.0, 2.5),
            (_LINEAR, y, T0, T0 + 0.7),
            (_LINEAR, other, T0, T0 + 0.7),
        ]
        what = "no state between calls"
        alone = [_run(fresh() if fresh else prop, *call, what) for call in calls[:3]]
        alone += alone[:2]
        for i, call in enumerate(calls):
            got = _run(prop, *call, what)
            if not same_bits(got, alone[i]):
                fail(CHECK, "no state between calls",
                     f"call {i + 1} of a sequence of {len(calls)} differs from the same call on a "
                     f"fresh instance by {max_abs_diff(got, alone[i]):.3g} (max abs)",
                     propagator=prop, y=describe(call[1]), t0=call[2], t1=call[3])


def _linear_jacobian(t: Any, y: Any) -> Any:
    """The Jacobian of ``_LINEAR`` (``-I``) for one state of any kind."""
    d = int(np.prod(y.shape)) if y.shape else 1
    eye = -np.eye(d)
    return ops_for(y).from_numpy(eye) if is_torch(y) else eye.astype(y.dtype)


def _evals(prop: Propagator, y: Any) -> None:
    f = _Recorder(_LINEAR, y)
    with_jacobian = getattr(prop, "with_jacobian", None)
    if with_jacobian is not None:  # the exact Jacobian: f is then called only by requests
        prop = with_jacobian(_linear_jacobian)
    _run(prop, f, y, T0, T0 + 0.5, "evals")
    if f.calls != prop.evals:
        fail(CHECK, "evals", f"propagate called f {f.calls} times, prop.evals says "
             f"{prop.evals} (off by {f.calls - prop.evals})", propagator=prop, y=describe(y))


def _steppable(prop: Propagator, states: list[Any]) -> None:
    what = "steppable path equals propagate"
    if not callable(getattr(prop, "stepper", None)):
        fail(CHECK, what, "prop.steppable is True but prop has no stepper method",
             propagator=prop)
    t0, t1 = T0, T0 + 0.5
    for y in states:
        ops = ops_for(y)
        requests, times = 0, []
        try:
            gen = prop.stepper(y, t0, t1)  # type: ignore[attr-defined]
            t, state = next(gen)
            while True:
                if type(t) is JacobianRequest:
                    t, state = gen.send(answer_jacobian(t, state, _LINEAR, ops))
                    continue
                requests += 1
                times.append(float(t))
                t, state = gen.send(ops.coerce_derivative(_LINEAR(ops.time(t), state), state))
        except StopIteration as stop:
            out = stop.value
        except Exception as exc:
            fail(CHECK, what, f"the stepper raised {type(exc).__name__}: {exc}",
                 propagator=prop, y=describe(y), t0=t0, t1=t1)
        want = _run(prop, _LINEAR, y, t0, t1, what)
        if not same_bits(out, want):
            fail(CHECK, what, f"the stepper's result differs from propagate's by "
                 f"{max_abs_diff(out, want):.3g} (max abs)", propagator=prop, y=describe(y),
                 t0=t0, t1=t1)
        if prop.evals is not None and requests != prop.evals:
            fail(CHECK, what, f"the stepper made {requests} requests, prop.evals says "
                 f"{prop.evals}", propagator=prop, y=describe(y))
        outside = [t for t in times if not t0 - 1e-12 <= t <= t1 + 1e-12]
        if outside:
            fail(CHECK, what, f"the stepper asked for f at t = {outside[0]!r}, outside "
                 f"[{t0}, {t1}]", propagator=prop, y=describe(y))


def _grouped(prop: Propagator, states: list[Any]) -> None:
    what = "grouped path equals propagate"
    t0s, t1s = [T0, 1.1, -0.4], [T0 + 0.5, 1.3, 0.6]
    for y in states:
        ops = ops_for(y)
        ys = [y, y * 0.5, y - 1.0]
        try:
            gen = prop.stepper(ops.stack(ys), Lanes(t0s), Lanes(t1s))  # type: ignore[attr-defined]
            t, state = next(gen)
            while True:
                if type(t) is JacobianRequest:
                    t, state = gen.send(answer_jacobian(t, state, _LINEAR, ops))
                    continue
                if not isinstance(t, Lanes):
                    fail(CHECK, what, f"a grouped stepper asked for f at t = {t!r}, not at "
                         "Lanes (per-slice times)", propagator=prop, y=describe(y))
                rows = [ops.coerce_derivative(_LINEAR(ops.time(v), row), row)
                        for v, row in zip(t.values.tolist(), ops.unstack(state), strict=True)]
                t, state = gen.send(ops.stack(rows))
        except StopIteration as stop:
            out = stop.value
        except AssertionError:
            raise
        except Exception as exc:
            fail(CHECK, what, f"the grouped stepper raised {type(exc).__name__}: {exc} (set "
                 "groupable = False if step uses t or h other than through + - * /)",
                 propagator=prop, y=describe(y))
        for i, row in enumerate(ops.unstack(out)):
            want = _run(prop, _LINEAR, ys[i], t0s[i], t1s[i], what)
            if not same_bits(row, want):
                fail(CHECK, what, f"state {i} of a group of 3 differs from its propagation "
                     f"alone by {max_abs_diff(row, want):.3g} (max abs)", propagator=prop,
                     y=describe(y), t0=t0s[i], t1=t1s[i])


def _span_errors(prop: Propagator, ode: ForcedDecay, y0: np.ndarray) -> np.ndarray:
    """Errors of one propagation over ``[T0, T0 + h]`` for every ``h`` of :data:`ORDER_SPANS`."""
    errors = []
    for h in ORDER_SPANS:
        with np.errstate(all="ignore"):
            out = _run(prop, ode, y0, T0, T0 + h, "order of accuracy")
            err = max_abs_diff(out, ode.exact(y0, T0, T0 + h))
        errors.append(err if math.isfinite(err) else math.inf)
    return np.array(errors)


def _step_errors(prop: Propagator, ode: ForcedDecay, y0: np.ndarray, declared: int,
                 band: float) -> np.ndarray:
    """Errors of ``n`` sub-steps (``prop.step``) over ``[T0, T0 + 1]``, ``n`` in
    :data:`ORDER_STEPS`, up to the ``n`` at which the order is established: the last three
    slopes of :func:`_slopes` within ``band`` of ``declared``."""
    errors: list[float] = []
    t1 = T0 + 1.0
    exact = ode.exact(y0, T0, t1)
    for n in ORDER_STEPS:
        h = (t1 - T0) / n
        y = y0
        with np.errstate(all="ignore"):
            try:
                for i in range(n):
                    y = drive(prop.step(y, T0 + i * h, h), ode, y)  # type: ignore[attr-defined]
            except Exception as exc:
                fail(CHECK, "order of accuracy", f"step raised {type(exc).__name__}: {exc}",
                     propagator=prop, steps=n, t0=T0, t1=t1)
            err = max_abs_diff(y, exact)
        errors.append(err if math.isfinite(err) else math.inf)
        last = _slopes(np.array(errors))[-3:]
        if len(last) == 3 and all(abs(s - declared) <= band for s in last):
            break
    return np.array(errors)


def _slopes(errors: np.ndarray) -> list[float]:
    """Slopes ``log2(e_j / e_{j+1})`` of the pairs of errors both above round-off."""
    usable = np.isfinite(errors) & (errors > ORDER_FLOOR)
    return [math.log2(errors[j] / errors[j + 1]) for j in range(len(errors) - 1)
            if usable[j] and usable[j + 1]]


def _slope(errors: np.ndarray) -> float | None:
    """Median slope ``log2(e_j / e_{j+1})`` of the last three pairs above round-off."""
    slopes = _slopes(errors)
    return float(np.median(slopes[-3:])) if slopes else None


def _order(prop: Propagator, declared: int, order_tol: float) -> float:
    odes = {"linear y' = -(y - sin t) + cos t": (_LINEAR, np.array([1.5, -0.5])),
            "nonlinear y' = -e - e**2 + cos t, e = y - sin t":
                (_NONLINEAR, np.full(2, math.sin(T0)))}
    stepwise = getattr(prop, "steppable", False) and callable(getattr(prop, "step", None))
    if stepwise:  # the global error of n sub-steps falls like n**-p
        how, shift = f"n = 1 .. {ORDER_STEPS[-1]} sub-steps over [{T0}, {T0 + 1}]", 0.0
    else:  # the error of one propagation over [T0, T0 + h] falls like h**(p + 1)
        how, shift = f"one propagation over [{T0}, {T0} + h], h = 8 .. 2**-10", 1.0
    worst, where, smallest = None, "", math.inf
    for name, (ode, y0) in odes.items():
        errors = (_step_errors(prop, ode, y0, declared, min(ORDER_SETTLED, order_tol))
                  if stepwise else _span_errors(prop, ode, y0))
        smallest = min(smallest, float(np.min(errors)))
        slope = _slope(errors)
        if slope is not None and (worst is None or slope < worst):
            worst, where = slope, name
    if worst is None:
        fail(CHECK, "order of accuracy", f"cannot be measured: every error is at round-off "
             f"level (smallest {smallest:.3g}) or not finite; check an instance with fewer "
             "steps", propagator=prop, declared=declared, by=how)
    measured = worst - shift
    if abs(measured - declared) > order_tol:
        fail(CHECK, "order of accuracy", f"measured {measured:.2f}, declared {declared} (off by "
             f"{measured - declared:+.2f}, allowed {order_tol:g})", propagator=prop, ode=where,
             by=how)
    return measured


def _tolerances(prop: Propagator) -> tuple[float, float] | None:
    rtol, atol = getattr(prop, "rtol", None), getattr(prop, "atol", None)
    if isinstance(rtol, (int, float)) and isinstance(atol, (int, float)):
        return float(rtol), float(atol)
    return None


def _accuracy(prop: Propagator, factor: float) -> float:
    rtol, atol = _tolerances(prop)  # type: ignore[misc]
    y0 = np.array([1.5, -0.5])
    t1 = T0 + 2.0
    exact = _LINEAR.exact(y0, T0, t1)
    err = max_abs_diff(_run(prop, _LINEAR, y0, T0, t1, "accuracy within tolerance"), exact)
    allowed = factor * (rtol * float(np.max(np.abs(exact))) + atol)
    if not err <= allowed:
        fail(CHECK, "accuracy within tolerance", f"error {err:.3g} against the exact solution, "
             f"above {factor:g} * (rtol * max|y| + atol) = {allowed:.3g} by a factor "
             f"{err / allowed:.3g}", propagator=prop, ode="y' = -(y - sin t) + cos t",
             t0=T0, t1=t1)
    return err
