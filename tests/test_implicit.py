"""Implicit fixed-step propagators (BackwardEuler, CrankNicolson, SDIRK2, Rosenbrock2,
LinearlyImplicitEuler): the checklist, stability functions, order against exact and scipy
references, Jacobian sources, backend invariance, exactness, bad input and failures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import parareal
from parareal import Status
from parareal.propagators import from_spec
from parareal.testing import check_propagator

from .conftest import needs
from .inprocess import run_forked_here

IMPLICIT = [
    parareal.BackwardEuler,
    parareal.CrankNicolson,
    parareal.SDIRK2,
    parareal.Rosenbrock2,
    parareal.LinearlyImplicitEuler,
]
L_STABLE = [c for c in IMPLICIT if c is not parareal.CrankNicolson]
ORDER = {
    parareal.BackwardEuler: 1,
    parareal.LinearlyImplicitEuler: 1,
    parareal.CrankNicolson: 2,
    parareal.SDIRK2: 2,
    parareal.Rosenbrock2: 2,
}
_G_ROS2 = 1.0 + 1.0 / math.sqrt(2.0)
_G_SDIRK = 1.0 - 1.0 / math.sqrt(2.0)


def _ros2_r(z: complex) -> complex:
    w = 1.0 / (1.0 - _G_ROS2 * z)
    return 1.0 + 2.0 * z * w + 0.5 * z * z * w * w - z * w * w


#: Stability functions R(z) of one step on y' = lam y, z = h lam (derived by hand from the
#: methods' published tableaux; Newton is exact in one iteration for linear f).
STABILITY = {
    parareal.BackwardEuler: lambda z: 1.0 / (1.0 - z),
    parareal.LinearlyImplicitEuler: lambda z: 1.0 / (1.0 - z),
    parareal.CrankNicolson: lambda z: (1.0 + z / 2.0) / (1.0 - z / 2.0),
    parareal.SDIRK2: lambda z: (1.0 + (1.0 - 2.0 * _G_SDIRK) * z) / (1.0 - _G_SDIRK * z) ** 2,
    parareal.Rosenbrock2: _ros2_r,
}


def ids(classes):
    return [c.__name__ for c in classes]


# -- a coupled stiff linear system whose f is bitwise the same batched and alone -----------
_LAM = np.array([-1e3, -100.0, -1.0, -0.1])
_Q = np.linalg.qr(np.random.default_rng(7).standard_normal((4, 4)))[0]
STIFF_A = _Q @ np.diag(_LAM) @ _Q.T


def stiff_f(t, y):
    """``A y`` written column by column: one state or a batch ``(B, 4)``, same bits."""
    out = y[..., 0:1] * STIFF_A[:, 0]
    for j in range(1, 4):
        out = out + y[..., j:j + 1] * STIFF_A[:, j]
    return out


def stiff_jac(t, y):
    return STIFF_A


# -- a nonlinear 3-D f with its exact Jacobian ----------------------------------------------
_A3 = np.array([[-2.0, 1.0, 0.0], [0.5, -3.0, 0.2], [0.0, 1.0, -1.0]])
_PATTERN3 = (_A3 != 0) | np.eye(3, dtype=bool)
_Y3 = np.array([1.0, -0.5, 0.3])


def f3(t, y):
    return _A3 @ y - 0.5 * y**3 + np.array([np.sin(t), 0.0, 0.0])


def jac3(t, y):
    return _A3 - np.diag(1.5 * y**2)


def vdp(t, y):
    return np.array([y[1], (1.0 - y[0] ** 2) * y[1] - y[0]])


# == 1. the checklist ======================================================================
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_every_implicit_propagator_passes_check_propagator(cls):
    report = check_propagator(cls(steps=2))
    assert "grouped path equals propagate" in report.checked
    assert "order of accuracy" in report.checked
    assert report.measured_order == pytest.approx(ORDER[cls], abs=0.3)


@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_ticks_are_f_calls_plus_one_jacobian_per_step(cls):
    prop = cls(steps=3)
    assert prop.jac_evals == 3
    assert prop.ticks == prop.evals + prop.jac_evals
    calls = []
    prop.propagate(lambda t, y: calls.append(t) or -y, np.ones(2), 0.0, 1.0)
    assert len(calls) == prop.evals + 3 * (2 + 1)  # forward differences: f(y) and 2 columns
    calls.clear()
    cls(steps=3, jac=lambda t, y: -np.eye(2)).propagate(
        lambda t, y: calls.append(t) or -y, np.ones(2), 0.0, 1.0)
    assert len(calls) == prop.evals
    assert all(0.0 <= t <= 1.0 for t in calls)


# == 2. stability ==========================================================================
@pytest.mark.parametrize("z", [-0.3, -5.0, 2.0 + 3.0j, -40.0 + 7.0j, -1e6])
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_one_linear_step_is_the_stability_function(cls, z):
    y1 = cls(steps=1, jac=lambda t, y: np.array([[z]])).propagate(
        lambda t, y: z * y, np.array([1.0 + 0.0j]), 0.0, 1.0)
    expected = STABILITY[cls](z)
    assert abs(y1[0] - expected) <= 1e-9 * abs(expected)


@pytest.mark.parametrize("lam", [-1e6, -1e6 + 1e3j], ids=["real", "complex"])
@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("cls", L_STABLE, ids=ids(L_STABLE))
def test_l_stable_methods_damp_a_very_stiff_mode(cls, steps, lam):
    y0 = np.array([1.0 + 0.0j]) if isinstance(lam, complex) else np.array([1.0])
    y1 = cls(steps=steps).propagate(lambda t, y: lam * y, y0, 0.0, 1.0)  # Jacobian by FD
    assert y1.dtype == y0.dtype
    assert abs(y1[0]) <= 1e-5 * abs(y0[0])


@pytest.mark.parametrize("lam", [-1e6, -1e6 + 1e3j], ids=["real", "complex"])
@pytest.mark.parametrize("steps", [1, 4])
def test_crank_nicolson_is_bounded_but_does_not_damp_a_very_stiff_mode(steps, lam):
    y0 = np.array([1.0 + 0.0j]) if isinstance(lam, complex) else np.array([1.0])
    y1 = parareal.CrankNicolson(steps=steps).propagate(lambda t, y: lam * y, y0, 0.0, 1.0)
    assert abs(y1[0]) <= abs(y0[0])
    assert abs(y1[0]) > 0.5 * abs(y0[0])  # R(-inf) = -1: the stiff mode is not damped
    assert parareal.CrankNicolson.stability == "A"
    assert all(c.stability == "L" for c in L_STABLE)


# == 3. order ==============================================================================
def _forced_decay(t, y):
    return -y + np.sin(t)


def _forced_decay_exact(t):
    return np.array([1.5 * math.exp(-t) + 0.5 * (math.sin(t) - math.cos(t))])


def _vdp_reference(T):
    from scipy.integrate import solve_ivp

    return solve_ivp(vdp, (0.0, T), [2.0, 0.0], method="DOP853", rtol=1e-12,
                     atol=1e-14).y[:, -1]


PROBLEMS = {
    # name: (f, y0, T, reference(T), step counts)
    "forced-decay-exact": (_forced_decay, np.array([1.0]), 2.0, _forced_decay_exact,
                           (32, 64, 128)),
    "vanderpol-scipy": (vdp, np.array([2.0, 0.0]), 1.0, _vdp_reference, (64, 128, 256)),
}


@pytest.mark.parametrize("problem", [
    pytest.param(name, marks=needs("scipy")) if name.endswith("-scipy") else name
    for name in sorted(PROBLEMS)])
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_global_error_falls_like_the_declared_order(cls, problem):
    f, y0, T, reference, step_counts = PROBLEMS[problem]
    exact = reference(T)
    errors = [np.max(np.abs(cls(steps=s).propagate(f, y0, 0.0, T) - exact))
              for s in step_counts]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - ORDER[cls]) < 0.25), (errors, slopes)


@needs("scipy")
@pytest.mark.parametrize("wrong", ["zero", "minus-identity", "half-exact"])
def test_rosenbrock2_keeps_order_two_with_any_jacobian(wrong):
    """ROS2 is a W-method: second order whatever matrix it is given for J."""
    exact = _vdp_reference(1.0)

    def jac(t, y):
        true = np.array([[0.0, 1.0], [-2.0 * y[0] * y[1] - 1.0, 1.0 - y[0] ** 2]])
        return {"zero": np.zeros((2, 2)), "minus-identity": -np.eye(2),
                "half-exact": 0.5 * true}[wrong]

    errors = [np.max(np.abs(parareal.Rosenbrock2(steps=s, jac=jac).propagate(
        vdp, np.array([2.0, 0.0]), 0.0, 1.0) - exact)) for s in (64, 128, 256)]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - 2.0) < 0.3), (errors, slopes)


# == 4. Jacobian sources ===================================================================
def _csr(matrix):
    import scipy.sparse

    return scipy.sparse.csr_matrix(matrix)


#: The ways to give the Jacobian (made when a test runs: the sparse ones need scipy).
JAC_SOURCES = {
    "dense": lambda: dict(jac=jac3),
    "csr": lambda: dict(jac=lambda t, y: _csr(jac3(t, y))),
    "finite-differences": lambda: dict(),
    "finite-differences-sparsity": lambda: dict(jac_sparsity=_PATTERN3),
    "finite-differences-sparse-pattern": lambda: dict(jac_sparsity=_csr(_PATTERN3)),
}
SPARSE_SOURCES = {"csr", "finite-differences-sparsity", "finite-differences-sparse-pattern"}


@pytest.mark.parametrize("source", [
    pytest.param(name, marks=needs("scipy")) if name in SPARSE_SOURCES else name
    for name in sorted(JAC_SOURCES)])
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_jacobian_sources_agree(cls, source):
    expected = cls(steps=8, jac=jac3).propagate(f3, _Y3, 0.0, 1.0)
    got = cls(steps=8, **JAC_SOURCES[source]()).propagate(f3, _Y3, 0.0, 1.0)
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))


def test_jac_sparsity_without_scipy_names_the_extra(tmp_path):
    # a numpy-only install: the error comes when the propagator is made, not mid-run
    code = ("import numpy as np, parareal\n"
            "try:\n"
            "    parareal.BackwardEuler(2, jac_sparsity=np.eye(3))\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    # forked from this interpreter with parareal forgotten and scipy unimportable: the same
    # first import of parareal as in a fresh numpy-only interpreter, without starting one
    (proc,) = run_forked_here([code], fresh=["parareal"], absent=["scipy"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("jac_sparsity needs scipy (the Jacobians it gives are scipy "
                                   "sparse matrices): pip install 'parareal[scipy]'")


def test_sparse_jacobian_gives_the_dense_bits_up_to_rounding_of_the_lu():
    sp = pytest.importorskip("scipy.sparse")
    dense = parareal.BackwardEuler(steps=8, jac=jac3).propagate(f3, _Y3, 0.0, 1.0)
    sparse = parareal.BackwardEuler(steps=8, jac=lambda t, y: sp.csc_matrix(jac3(t, y))
                                    ).propagate(f3, _Y3, 0.0, 1.0)
    np.testing.assert_allclose(sparse, dense, rtol=1e-13, atol=1e-15)


def f3_torch(t, y):
    import torch

    forcing = torch.stack([torch.sin(t), torch.zeros_like(t), torch.zeros_like(t)])
    return torch.tensor(_A3) @ y - 0.5 * y**3 + forcing


def jac3_torch(t, y):
    import torch

    return torch.tensor(_A3) - torch.diag(1.5 * y**2)


@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_torch_autograd_jacobian_agrees_with_the_exact_one(cls):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    y0 = torch.tensor(_Y3, dtype=torch.float64)
    exact = cls(steps=8, jac=jac3_torch).propagate(f3_torch, y0, 0.0, 1.0)
    auto = cls(steps=8).propagate(f3_torch, y0, 0.0, 1.0)
    assert auto.dtype == torch.float64
    assert float((auto - exact).abs().max()) <= 1e-10
    # and the numpy twin with the exact Jacobian gives the same trajectory
    np.testing.assert_allclose(exact.numpy(), cls(steps=8, jac=jac3).propagate(
        f3, _Y3, 0.0, 1.0), rtol=1e-12, atol=1e-14)


_B6 = np.arange(36.0).reshape(6, 6) * 0.01 - 2.0 * np.eye(6)


def f23(t, y):
    return (_B6 @ y.ravel()).reshape(2, 3) - y**3


@pytest.mark.parametrize("layout", ["(2,3,2,3)", "(6,6)"])
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_matrix_state_takes_a_jacobian_of_either_layout(cls, layout):
    def jac(t, y):
        J = _B6 - np.diag(3.0 * y.ravel() ** 2)
        return J.reshape(2, 3, 2, 3) if layout == "(2,3,2,3)" else J

    y0 = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    with_jac = cls(steps=4, jac=jac).propagate(f23, y0, 0.0, 1.0)
    by_fd = cls(steps=4).propagate(f23, y0, 0.0, 1.0)
    assert with_jac.shape == (2, 3)
    np.testing.assert_allclose(with_jac, by_fd, rtol=1e-7, atol=1e-9)


# == 5. backend invariance and the critical path ===========================================
BACKENDS = ["serial", "batched", "threads"]
COARSE = [parareal.Rosenbrock2(4), parareal.BackwardEuler(4), parareal.SDIRK2(4)]


@pytest.mark.parametrize("coarse", COARSE, ids=repr)
def test_stiff_run_is_bitwise_the_same_on_every_backend(coarse):
    runs = {}
    for backend in BACKENDS:
        runs[backend] = parareal.solve(
            stiff_f, np.ones(4), (0.0, 1.0), coarse=coarse, fine="rk4:100", slices=8,
            tol=1e-10, backend=backend, vectorized=backend == "batched", jac=stiff_jac)
    ref = runs["serial"]
    assert ref.status is Status.CONVERGED
    assert ref.stats.jac_calls > 0
    for backend, sol in runs.items():
        assert sol.iterations == ref.iterations, backend
        assert sol.stats.critical_path == ref.stats.critical_path, backend
        assert sol.stats.jac_calls == ref.stats.jac_calls, backend
        assert sol.y.tobytes() == ref.y.tobytes(), backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("coarse", COARSE, ids=repr)
def test_coarse_sweep_alone_costs_slices_times_f_calls_plus_jacobians(coarse, backend):
    slices = 8
    sol = parareal.solve(stiff_f, np.ones(4), (0.0, 1.0), coarse=coarse, fine="rk4:100",
                         slices=slices, max_iters=0, backend=backend,
                         vectorized=backend == "batched", jac=stiff_jac)
    assert sol.stats.critical_path == slices * (coarse.evals + coarse.jac_evals)
    assert sol.stats.jac_calls == slices * coarse.jac_evals
    assert sol.stats.f_evals == slices * coarse.evals  # exact jac: no f calls for it


# == 6. exactness ==========================================================================
@pytest.mark.parametrize("backend", ["serial", "batched"])
@pytest.mark.parametrize("coarse", COARSE, ids=repr)
def test_tol_zero_reproduces_serial_fine_bitwise(coarse, backend):
    slices = 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        sol = parareal.solve(stiff_f, np.ones(4), (0.0, 1.0), coarse=coarse, fine="rk4:100",
                             slices=slices, tol=0.0, backend=backend,
                             vectorized=backend == "batched", jac=stiff_jac)
    serial = parareal.solve_serial(stiff_f, np.ones(4), (0.0, 1.0),
                                   propagator=parareal.RK4(100), slices=slices)
    assert sol.iterations == slices
    assert sol.y.tobytes() == serial.tobytes()


# == 7. bad input ==========================================================================
def _propagate(prop, y0=None):
    return prop.propagate(lambda t, y: -y, np.ones(3) if y0 is None else y0, 0.0, 1.0)


@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_bad_constructor_arguments_are_named(cls):
    with pytest.raises(TypeError, match="jac"):
        cls(steps=2, jac=3)
    with pytest.raises(ValueError, match="steps"):
        cls(steps=0)
    with pytest.raises(ValueError, match="jac_sparsity"):
        cls(steps=2, jac_sparsity=np.ones((3, 2)))


@pytest.mark.parametrize("cls", [parareal.BackwardEuler, parareal.CrankNicolson,
                                 parareal.SDIRK2], ids=lambda c: c.__name__)
def test_newton_must_be_at_least_one(cls):
    with pytest.raises(ValueError, match="newton"):
        cls(steps=2, newton=0)


@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_bad_jacobian_values_are_named(cls):
    with pytest.raises(ValueError, match="jac"):
        _propagate(cls(steps=2, jac=lambda t, y: np.ones((2, 2))))
    with pytest.raises(TypeError, match="jac"):
        _propagate(cls(steps=2, jac=lambda t, y: "abc"))


@needs("scipy")
@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_a_sparsity_pattern_of_the_wrong_size_is_named(cls):
    with pytest.raises(ValueError, match="jac_sparsity"):
        _propagate(cls(steps=2, jac_sparsity=np.ones((2, 2))))


@pytest.mark.parametrize("cls", IMPLICIT, ids=ids(IMPLICIT))
def test_a_torch_jacobian_for_a_numpy_state_is_named(cls):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="jac"):
        _propagate(cls(steps=2, jac=lambda t, y: torch.eye(3, dtype=torch.float64)))


def test_solve_checks_jac_and_jac_sparsity():
    kw = dict(coarse="be:2", fine="rk4:4", slices=2)
    with pytest.raises(TypeError, match="jac"):
        parareal.solve(lambda t, y: -y, np.ones(3), (0.0, 1.0), jac="x", **kw)
    with pytest.raises(ValueError, match="jac"):
        parareal.solve(lambda t, y: -y, np.ones(3), (0.0, 1.0),
                       jac=lambda t, y: np.ones((2, 2)), **kw)
    with pytest.raises(ValueError, match="jac_sparsity"):
        parareal.solve(lambda t, y: -y, np.ones(3), (0.0, 1.0),
                       jac_sparsity=np.ones((3, 2)), **kw)


@pytest.mark.parametrize("spec", ["be:0", "ros2:-1", "lie:0"])
def test_spec_with_no_steps_is_refused(spec):
    with pytest.raises(ValueError, match="steps must be >= 1"):
        from_spec(spec)


def test_unknown_spec_lists_the_implicit_names():
    with pytest.raises(ValueError, match="unknown propagator") as info:
        from_spec("nope:3")
    for name in ("be", "cn", "sdirk2", "ros2", "lie"):
        assert name in str(info.value)


@pytest.mark.parametrize("spec,cls,steps", [
    ("be:20", parareal.BackwardEuler, 20), ("cn:4", parareal.CrankNicolson, 4),
    ("sdirk2:4", parareal.SDIRK2, 4), ("ros2:8", parareal.Rosenbrock2, 8),
    ("lie:16", parareal.LinearlyImplicitEuler, 16)])
def test_specs_build_the_implicit_classes(spec, cls, steps):
    assert from_spec(spec) == cls(steps=steps)


# == 8. failures ===========================================================================
def _nan_jac(t, y):
    return np.full((1, 1), np.nan)


FAILURES = {
    # name: (f, y0, propagator, words expected in the reason)
    "jacobian-not-finite": (lambda t, y: -y, np.array([1.0]),
                            parareal.BackwardEuler(1, jac=_nan_jac), "not finite"),
    # y' = y with h = 1: I - h J = 0 exactly
    "singular-newton-matrix": (lambda t, y: y, np.array([1.0]),
                               parareal.BackwardEuler(1, jac=lambda t, y: np.eye(1)),
                               "singular"),
    # J(0) = 0, so simplified Newton is the fixed-point iteration z = h * 1e4 (1 - z^3): it
    # jumps to 1e4, then to about -1e16
    "newton-diverges": (lambda t, y: 1e4 * (1.0 - y**3), np.array([0.0]),
                        parareal.BackwardEuler(1), "Newton did not converge"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_direct_propagation_failure_is_nan_with_a_runtime_warning(case):
    f, y0, prop, words = FAILURES[case]
    with pytest.warns(RuntimeWarning, match=words):
        y1 = prop.propagate(f, y0, 0.0, 1.0)
    assert y1.shape == y0.shape and np.all(np.isnan(y1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_in_a_run_is_diverged_with_the_reason(case, backend):
    f, y0, prop, words = FAILURES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # reported in the reason, not warned
        sol = parareal.solve(f, y0, (0.0, 4.0), coarse=prop, fine="rk4:10", slices=4,
                             backend=backend)
    assert sol.status is Status.DIVERGED
    assert words in sol.reason
    assert type(prop).__name__ in sol.reason
    # the coarse sweep itself failed: iterate 0 is returned as it is, from y0 on
    assert sol.iterations == 0
    assert sol.y[0].tobytes() == y0.tobytes() and np.isnan(sol.y[1]).all()
    assert "boundary 1" in sol.reason


# == 9. ScipyIVP and the Jacobian ==========================================================
def mild_f(t, y):
    return np.array([-0.5 * y[0] + y[1], -y[0] - 0.3 * y[1]])


def mild_jac(t, y):
    return np.array([[-0.5, 1.0], [-1.0, -0.3]])


def _radau_run(fine, **kw):
    return parareal.solve(mild_f, np.array([1.0, 0.0]), (0.0, 2.0), coarse="rk4:2", fine=fine,
                          slices=4, **kw)


@needs("scipy")
def test_scipy_radau_fine_counts_jacobian_calls_only_with_a_jacobian():
    without = _radau_run(parareal.ScipyIVP("Radau"))
    assert without.stats.jac_calls == 0  # scipy's own finite differences are f calls
    for sol in (_radau_run(parareal.ScipyIVP("Radau", jac=mild_jac)),
                _radau_run(parareal.ScipyIVP("Radau"), jac=mild_jac)):
        assert sol.status is Status.CONVERGED
        assert sol.stats.jac_calls > 0
        assert sol.stats.jac_evals == sol.stats.jac_calls
        assert "jacobian" in sol.stats.wall_time


@needs("scipy")
def test_scipy_jac_in_options_is_the_same_as_jac_keyword():
    a = _radau_run(parareal.ScipyIVP("Radau", jac=mild_jac))
    b = _radau_run(parareal.ScipyIVP("Radau", options={"jac": mild_jac}))
    assert parareal.ScipyIVP("Radau", jac=mild_jac) == parareal.ScipyIVP(
        "Radau", options={"jac": mild_jac})
    assert a.y.tobytes() == b.y.tobytes()
    assert a.stats.jac_calls == b.stats.jac_calls
    assert a.stats.critical_path == b.stats.critical_path
    with pytest.raises(ValueError, match="jac"):
        parareal.ScipyIVP("Radau", jac=mild_jac, options={"jac": mild_jac})


@needs("scipy")
@pytest.mark.parametrize("method", ["RK45", "Radau", "LSODA"])
def test_scipy_on_nan_input_returns_nan(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = parareal.ScipyIVP(method).propagate(mild_f, np.array([np.nan, 1.0]), 0.0, 1.0)
    assert out.shape == (2,) and np.all(np.isnan(out))
