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
    ours = parareal.odeint(f, y0, t, tol=0, coarse_method="rk4")
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
        parareal.odeint(spring, y0, far, max_iters=1)


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
