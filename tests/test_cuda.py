"""CUDA paths: tensors stay on the device, results match the CPU. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import parareal  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("backend", ["serial", "batched"])
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_solve_on_cuda_keeps_device_and_matches_cpu(backend, schedule):
    lam = torch.linspace(-2.0, -0.1, 16, dtype=torch.float64)
    y0 = torch.ones(16, dtype=torch.float64)

    def make(device):
        lam_d = lam.to(device)

        def f(t, y):  # single states (t 0-d) and batches (t of shape (B,))
            return lam_d * y + 0.1 * torch.cos(t).reshape(t.shape + (1,) * (y.ndim - t.ndim))

        return f

    kwargs = dict(coarse=parareal.Euler(1), fine=parareal.RK4(8), slices=6, tol=0,
                  backend=backend, schedule=schedule, vectorized=backend == "batched")
    gpu = parareal.solve(make("cuda"), y0.cuda(), (0, 2), **kwargs)
    cpu = parareal.solve(make("cpu"), y0, (0, 2), **kwargs)
    assert gpu.y.device.type == "cuda"
    np.testing.assert_allclose(gpu.y.cpu().numpy(), cpu.y.numpy(), rtol=1e-12, atol=1e-12)


def test_srds_on_cuda_matches_serial_on_cuda():
    from diffusers import DDIMScheduler
    from parareal.adapters.diffusion import GaussianMixture, NoiseSchedule, sample

    sch = DDIMScheduler(clip_sample=False)
    model = GaussianMixture.random(4, 3, seed=0).model(NoiseSchedule.from_scheduler(sch))
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).cuda()
    ser = sample(model, sch, x, num_inference_steps=25, method="serial")
    out = sample(model, sch, x, num_inference_steps=25, method="srds", tol=0)
    assert out.sample.device.type == "cuda"
    assert float((out.sample - ser.sample).abs().max()) < 1e-10


# -- issue 7: status, scalars, odeint, lookahead, chunks on the device ------------------------

def test_scalar_state_on_cuda():
    y0 = torch.tensor(1.0, dtype=torch.float64, device="cuda")
    for backend, vectorized in (("serial", False), ("batched", True)):
        sol = parareal.solve(lambda t, y: -y, y0, (0.0, 1.0), coarse="rk4:1", fine="rk4:10",
                             slices=4, tol=0, backend=backend, vectorized=vectorized)
        assert sol.y.device.type == "cuda" and tuple(sol.y_final.shape) == ()
        assert abs(float(sol.y_final) - np.exp(-1.0)) < 1e-8


def test_odeint_on_cuda_reversed_gradients_and_divergence():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    w = torch.tensor(1.3, dtype=torch.float64, device="cuda", requires_grad=True)

    def f(t, y):
        return torch.stack([y[1], -w * w * y[0]])

    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, device="cuda")
    t = torch.linspace(2.0, 0.0, 9, dtype=torch.float64, device="cuda")
    ours = parareal.odeint(f, y0, t, method="rk4", tol=0, coarse_method="rk4")
    theirs = torchdiffeq.odeint(f, y0, t, method="rk4")
    assert ours.device.type == "cuda"
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    (g1,) = torch.autograd.grad(ours.square().sum(), w)
    (g2,) = torch.autograd.grad(theirs.square().sum(), w)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=0)

    def spring(s, y):
        return torch.stack([y[1], -25.0 * y[0]])

    far = torch.linspace(0.0, 2000.0, 201, dtype=torch.float64, device="cuda")
    with pytest.raises(parareal.DivergenceError), pytest.warns(parareal.CoarseStabilityWarning):
        parareal.odeint(spring, y0, far, method="rk4", slices=200, max_iters=1)


def test_lookahead_on_cuda_same_iterates():
    lam = torch.linspace(-2.0, -0.1, 8, dtype=torch.float64, device="cuda")
    y0 = torch.ones(8, dtype=torch.float64, device="cuda")
    kw = dict(coarse="rk4:1", fine="rk4:4", slices=200, tol=1e-10, backend="batched",
              vectorized=True)
    sync = parareal.solve(lambda t, y: lam * y, y0, (0, 10), schedule="synchronous", **kw)
    for lookahead in (0, 1, 2, None):
        piped = parareal.solve(lambda t, y: lam * y, y0, (0, 10), schedule="pipelined",
                               lookahead=lookahead, **kw)
        assert torch.equal(piped.y, sync.y) and piped.residuals == sync.residuals


def _mixture():
    from diffusers import DDIMScheduler
    from parareal.adapters.diffusion import GaussianMixture, NoiseSchedule

    sch = DDIMScheduler(clip_sample=False)
    return GaussianMixture.random(4, 3, seed=0).model(NoiseSchedule.from_scheduler(sch)), sch


def test_diffusion_status_and_chunks_on_cuda():
    from parareal.adapters.diffusion import sample

    model, sch = _mixture()
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).cuda()
    whole = sample(model, sch, x, num_inference_steps=25, method="serial")
    split = sample(model, sch, x, num_inference_steps=25, method="serial", max_batch=3)
    assert whole.status is parareal.Status.CONVERGED and len(split.chunks) == 4
    assert split.sample.device.type == "cuda"
    torch.testing.assert_close(split.sample, whole.sample, rtol=0, atol=1e-12)
    srds = sample(model, sch, x, num_inference_steps=25, method="srds", tol=0, max_batch=4)
    torch.testing.assert_close(srds.sample, whole.sample, rtol=0, atol=1e-10)

    def nan_model(xs, t):
        return torch.full_like(xs, float("nan"))

    for method in ("serial", "srds", "picard"):
        res = sample(nan_model, sch, x, num_inference_steps=9, method=method)
        assert res.status is parareal.Status.DIVERGED and not res.converged, method


@pytest.mark.parametrize("with_generator", [True, False])
def test_stochastic_chunks_on_cuda_replay_the_same_noise(with_generator):
    from parareal.adapters.diffusion import sample

    model, sch = _mixture()
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).cuda()

    def run(max_batch):
        if with_generator:
            gen = torch.Generator(device="cuda").manual_seed(7)
        else:
            torch.cuda.manual_seed(7)
            gen = None
        return sample(model, sch, x, num_inference_steps=12, method="serial", eta=1.0,
                      generator=gen, max_batch=max_batch)

    whole, split = run(None), run(4)
    assert len(split.chunks) == 2
    torch.testing.assert_close(split.sample, whole.sample, rtol=0, atol=1e-12)


# -- issue 8: the cuda-streams backend -----------------------------------------------------------

def _cuda_rhs(device):
    lam = torch.linspace(-2.0, -0.1, 32, dtype=torch.float64, device=device)

    def f(t, y):
        return lam * y + 0.1 * torch.cos(t).reshape(t.shape + (1,) * (y.ndim - t.ndim))

    return f


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
@pytest.mark.parametrize("streams", [1, 4])
def test_cuda_streams_equal_serial_bitwise(schedule, streams):
    from parareal.backends import CudaStreams

    y0 = torch.ones(32, dtype=torch.float64, device="cuda")
    kw = dict(coarse=parareal.Euler(1), fine=parareal.RK4(16), slices=8, tol=0,
              schedule=schedule, vectorized=True)
    ref = parareal.solve(_cuda_rhs("cuda"), y0, (0, 2), **kw)
    sol = parareal.solve(_cuda_rhs("cuda"), y0, (0, 2), backend=CudaStreams(
        streams_per_device=streams), **kw)
    assert sol.y.device == y0.device
    assert torch.equal(sol.y, ref.y)
    assert sol.residuals == ref.residuals
    assert sol.stats.critical_path == ref.stats.critical_path


def test_cuda_streams_with_adaptive_torchdiffeq_and_cpu_states():
    pytest.importorskip("torchdiffeq")
    fine = parareal.TorchDiffEq("dopri5", rtol=1e-9, atol=1e-11)
    y_gpu = torch.ones(32, dtype=torch.float64, device="cuda")
    kw = dict(coarse=parareal.RK4(1), fine=fine, slices=6, tol=1e-9)
    ref = parareal.solve(_cuda_rhs("cuda"), y_gpu, (0, 2), **kw)
    sol = parareal.solve(_cuda_rhs("cuda"), y_gpu, (0, 2), backend="cuda-streams", **kw)
    assert torch.equal(sol.y, ref.y) and sol.iterations == ref.iterations
    # CPU states: the coarse sweep runs here, the fine solves on the device, results come back
    cpu_f = _cuda_rhs("cpu")

    def f_any(t, y):
        return (cpu_f if y.device.type == "cpu" else _cuda_rhs(y.device))(t.to(y.device), y)

    out = parareal.solve(f_any, y_gpu.cpu(), (0, 2), backend="cuda-streams", **kw)
    assert out.y.device.type == "cpu"
    np.testing.assert_allclose(out.y.numpy(), ref.y.cpu().numpy(), rtol=1e-8, atol=1e-10)


def test_cuda_streams_fault_reaches_the_caller():
    def f(t, y):
        if torch.cuda.current_stream() != torch.cuda.default_stream():
            raise FloatingPointError("raised on a worker stream")
        return -y

    with pytest.raises(FloatingPointError, match="worker stream"):
        parareal.solve(f, torch.ones(4, device="cuda"), (0, 1), coarse=parareal.Euler(1),
                       fine=parareal.RK4(4), slices=4, backend="cuda-streams")


def test_cuda_streams_rejects_numpy_states_and_bad_devices():
    from parareal.backends import CudaStreams

    with pytest.raises(TypeError, match="torch tensor"):
        parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), coarse=parareal.Euler(1),
                       fine=parareal.RK4(2), slices=2, backend="cuda-streams")
    with pytest.raises(ValueError, match="CUDA"):
        CudaStreams(devices=["cpu"])
    with pytest.raises(ValueError, match="streams_per_device"):
        CudaStreams(streams_per_device=0)
