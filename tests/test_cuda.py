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
