"""``method="auto"``: the decision from given costs, the timing cache, and the real runs."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    GaussianMixture,
    NoiseSchedule,
    auto,  # noqa: E402
    sample,
)
from parareal.adapters.diffusion.auto import (  # noqa: E402
    CallPlan,
    decide,
    interpolate_cost,
    picard_iterations,
    predict,
)

from parareal.cli import main  # noqa: E402

# -- the decision, from given numbers (deterministic) --------------------------------------------


@pytest.mark.parametrize(
    "predicted,exact,expected",
    [
        ({"serial": 2.0, "srds": 1.3, "picard": 0.9}, True, "srds"),
        ({"serial": 0.6, "srds": 1.9, "picard": 1.2}, True, "serial"),
        ({"serial": 2.0, "srds": 1.3, "picard": 0.9}, False, "picard"),
        ({"serial": 0.6, "srds": 1.9, "picard": 1.2}, False, "serial"),
        ({"serial": 1.0, "srds": 1.0, "picard": 1.0}, False, "serial"),  # ties: the simplest
        ({"serial": 1.0}, True, "serial"),
    ],
)
def test_decide_picks_the_smallest_allowed_prediction(predicted, exact, expected):
    method, reason = decide(predicted, exact=exact)
    assert method == expected
    for name, seconds in predicted.items():  # every prediction is in the reason
        assert f"{name} {seconds:.3g} s" in reason
    assert ("picard not considered" in reason) == (exact and "picard" in predicted)


def test_decide_bad_arguments():
    with pytest.raises(TypeError, match="exact must be True or False"):
        decide({"serial": 1.0}, exact=1)
    with pytest.raises(ValueError, match="no method to choose from"):
        decide({"picard": 1.0}, exact=True)


def test_interpolate_cost():
    costs = {1: 1.0, 4: 2.5, 16: 8.5}
    assert interpolate_cost(costs, 4) == 2.5
    assert interpolate_cost(costs, 2) == pytest.approx(1.5)
    assert interpolate_cost(costs, 10) == pytest.approx(5.5)
    assert interpolate_cost(costs, 28) == pytest.approx(14.5)  # the last segment, extended
    assert interpolate_cost({8: 2.0}, 16) == 4.0 and interpolate_cost({8: 2.0}, 2) == 2.0
    assert interpolate_cost({2: 1.0, 4: 3.0}, 1) == 0.0  # never below zero
    with pytest.raises(ValueError, match="no timed batch sizes"):
        interpolate_cost({}, 1)


def test_predict_sums_the_calls_and_the_overhead():
    costs = {1: 0.01, 10: 0.03}
    plans = {"serial": CallPlan("serial", (1,) * 100, 0.05),
             "srds": CallPlan("srds", (1,) * 10 + (10,) * 30, 0.2)}
    got = predict(plans, costs)
    assert got["serial"] == pytest.approx(1.05)
    assert got["srds"] == pytest.approx(0.1 + 0.9 + 0.2)
    assert decide(got)[0] == "serial"


def test_srds_iterations_estimate():
    assert auto.srds_iterations(100, 20) == 3 and auto.srds_iterations(100, 10) == 4
    assert auto.srds_iterations(1000, 63) == 3 and auto.srds_iterations(4, 2) == 2  # <= B


@pytest.mark.parametrize(("per_call", "per_row", "blocks"), [(3e-3, 0.0, 20), (0.0, 3e-4, 10)])
def test_auto_picks_srds_blocks_by_the_cost_of_a_call(per_call, per_row, blocks, monkeypatch):
    """Flat call costs (a GPU with room to spare) favour 2 sqrt(N) blocks (fewer sequential
    calls); costs that grow with the rows (a CPU) favour sqrt(N) blocks (fewer evaluations).
    The costs are given (``auto._time_call`` returns ``per_call + per_row * rows`` and auto's
    clock stands still), so the choice cannot depend on the load of the machine."""
    monkeypatch.setattr(auto, "_time_call", lambda fn, x, t: per_call + per_row * x.shape[0])
    monkeypatch.setattr(auto, "time", SimpleNamespace(perf_counter=lambda: 0.0))
    auto.clear_cache()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    model = GaussianMixture.random(4, 3, seed=0).model(NoiseSchedule.from_scheduler(scheduler))
    x_T = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    result = sample(model, scheduler, x_T, num_inference_steps=100, method="auto",
                    exact=True)
    auto.clear_cache()
    other = 10 if blocks == 20 else 20
    # the faster block count stands for SRDS, the other is named with its prediction
    assert f"srds: B = {blocks} blocks" in result.reason, result.reason
    assert f"(B = {other}: predicted" in result.reason
    if result.method == "srds":  # row-proportional costs let serial win: nothing ran then
        assert result.blocks == blocks
    else:
        assert result.blocks == 0


def test_picard_estimate():
    assert picard_iterations(100, 20) == 14 and picard_iterations(25, 10) == 9
    assert picard_iterations(3, 1) == 3  # never more windows than steps


# -- real runs ----------------------------------------------------------------------------------


#: The methods whose sample is the serial one: auto's candidates by default.
EXACT = ("serial", "srds", "picard-exact")


class Counting:
    """A real epsilon model (an exact Gaussian mixture) that counts its calls."""

    def __init__(self, schedule: NoiseSchedule, dim: int = 4) -> None:
        self.model = GaussianMixture.random(dim, 3, seed=0).model(schedule)
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


@pytest.fixture
def setup():
    auto.clear_cache()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    model = Counting(NoiseSchedule.from_scheduler(scheduler))
    x_T = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    yield model, scheduler, x_T
    auto.clear_cache()


def test_auto_runs_the_chosen_method_and_caches_its_timings(setup):
    model, scheduler, x_T = setup

    def calls_of_the_method(result):  # model calls of a direct run of the method auto chose
        model.calls = 0
        blocks = {"blocks": result.blocks} if result.method == "srds" else {}
        direct = sample(model, scheduler, x_T, num_inference_steps=36, method=result.method,
                        **blocks)
        assert torch.equal(direct.sample, result.sample)  # the same sample as the method itself
        assert direct.reason == "requested" and direct.predicted_s == {}
        return model.calls

    first = sample(model, scheduler, x_T, num_inference_steps=36, method="auto")
    timed = model.calls
    assert first.method in EXACT
    assert set(first.predicted_s) == {"serial", "srds", "picard", "picard-exact"}
    assert first.method == min(EXACT, key=first.predicted_s.__getitem__)
    assert "predicted" in first.reason and f"{first.predicted_s['serial']:.3g} s" in first.reason
    assert timed > calls_of_the_method(first)  # the first auto call timed the model

    model.calls = 0
    again = sample(model, scheduler, x_T, num_inference_steps=36, method="auto")
    # (the method may change: an SRDS run's observed iterations replace the estimate)
    assert model.calls == calls_of_the_method(again)  # cache hit: no call besides the run
    assert again.method == min(EXACT, key=again.predicted_s.__getitem__)
    assert "predictions took" in again.reason

    auto.clear_cache()
    model.calls = 0
    last = sample(model, scheduler, x_T, num_inference_steps=36, method="auto")
    assert model.calls > calls_of_the_method(last)  # forgotten: timed again


def test_cache_key_includes_dtype_and_shape(setup):
    model, scheduler, x_T = setup
    sample(model, scheduler, x_T, num_inference_steps=16, method="auto")
    for other in (x_T.double(), torch.randn(2, 5)):
        other_model = Counting(NoiseSchedule.from_scheduler(scheduler), dim=other.shape[1])
        if other.shape[1] == x_T.shape[1]:
            other_model = model
        before = other_model.calls
        result = sample(other_model, scheduler, other, num_inference_steps=16, method="auto")
        assert other_model.calls - before > result.sequential_evals  # timed anew


def test_srds_iterations_seen_replace_the_estimate(setup):
    model, scheduler, x_T = setup
    first, second = (sample(model, scheduler, x_T, num_inference_steps=64, method="auto")
                     for _ in range(2))
    # both SRDS block counts are predicted: 2 sqrt(N) = 16 with K = 3, sqrt(N) = 8 with K = 4
    assert ("srds: B = 16 blocks, K = 3 iterations (estimate) (B = 8: predicted" in first.reason
            or "srds: B = 8 blocks, K = 4 iterations (estimate) (B = 16: predicted"
            in first.reason)
    # which method the first run chose depends on the timings (SRDS and serial are close here)
    if first.method == "srds":  # its iterations replace the estimate in the next plan
        assert (f"B = {first.blocks} blocks, K = {first.iterations} iterations (seen in the "
                "last auto run)") in second.reason
    else:  # no SRDS run was seen: the next plan still estimates its iterations
        assert re.search(r"srds: B = \d+ blocks, K = \d+ iterations \(estimate\)",
                         second.reason), second.reason


def test_not_exact_lets_picard_compete(setup):
    model, scheduler, x_T = setup
    result = sample(model, scheduler, x_T, num_inference_steps=36, method="auto", exact=False)
    assert result.method == min(result.predicted_s, key=result.predicted_s.__getitem__)
    assert "picard not considered" not in result.reason
    model.calls = 0
    # SRDS as auto chose it: with the blocks it chose (the default or sqrt(N): which one is
    # faster depends on the timings, and so on the machine's load)
    chosen = {"blocks": result.blocks} if result.method == "srds" else {}
    direct = sample(model, scheduler, x_T, num_inference_steps=36, method=result.method,
                    **chosen)
    assert torch.equal(direct.sample, result.sample)


def test_eta_without_generator_runs_serial(setup):
    model, scheduler, x_T = setup
    result = sample(model, scheduler, x_T, num_inference_steps=8, method="auto", eta=1.0)
    assert result.method == "serial" and "generator" in result.reason
    assert result.predicted_s == {} and model.calls == 8  # nothing timed
    with_gen = sample(model, scheduler, x_T, num_inference_steps=8, method="auto", eta=1.0,
                      generator=torch.Generator().manual_seed(1))
    assert set(with_gen.predicted_s) == {"serial", "srds", "picard", "picard-exact"}


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(method="auto", exact="yes"), TypeError, "exact must be True, False or None"),
        (dict(method="srds", exact=True), ValueError,
         "exact applies to method 'auto' only, not to method 'srds'"),
        (dict(method="serial", exact=False), ValueError, "exact applies to method 'auto' only"),
        (dict(method="auto", blocks=3), ValueError,
         "blocks applies to method 'srds' only, not to method 'auto'"),
        (dict(method="auto", tol=0.0), ValueError,
         "tol applies to methods 'srds', 'picard' and 'picard-exact'"),
        (dict(method="auto", window=2), ValueError,
         "window applies to methods 'picard' and 'picard-exact'"),
        (dict(method="auto", backend="batched"), ValueError, "backend applies to method 'srds'"),
        (dict(method="fastest"), ValueError, "method must be one of"),
    ],
)
def test_bad_arguments(setup, kwargs, error, message):
    model, scheduler, x_T = setup
    with pytest.raises(error, match=message):
        sample(model, scheduler, x_T, num_inference_steps=8, **kwargs)
    assert model.calls == 0


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_default_is_auto(tmp_path, capsys):
    assert main(["sample", "--steps", "9", "--n", "2", "--out", str(tmp_path / "a.png"),
                 "--json", "--threads", "1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["requested_method"] == "auto" and got["method"] in EXACT
    assert got["method"] == min(EXACT, key=got["predicted_s"].__getitem__)
    assert "predicted" in got["reason"]

    assert main(["sample", "--steps", "9", "--n", "2", "--out", str(tmp_path / "b.png"),
                 "--no-exact", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("auto ran ") and "predicted" in text.splitlines()[0]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--karras"], "--karras applies to --scheduler euler or heun"),
        (["--method", "srds", "--exact"], "--exact applies to --method auto, not srds"),
        (["--method", "serial", "--no-exact"], "--no-exact applies to --method auto, not serial"),
        (["--blocks", "3"], "--blocks applies to --method srds, not auto"),
        (["--backend", "batched"], "--backend applies to --method srds, not auto"),
    ],
)
def test_cli_bad_options(tmp_path, capsys, argv, message):
    assert main(["sample", "--steps", "4", "--out", str(tmp_path / "x.png"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_has_no_prompt_and_says_why(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--prompt", "a cat"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "There is no --prompt" in help_text and "no text model ships" in help_text
    assert "--scheduler {ddim,euler,heun,flow}" in help_text and "--karras" in help_text


def _sampler_takes(scheduler) -> bool:
    """Whether this version of ``sample`` accepts the scheduler (the Euler/Heun item)."""
    try:
        sample(lambda x, t: torch.zeros_like(x), scheduler, torch.zeros(1, 1),
               num_inference_steps=2, method="serial")
    except TypeError as exc:
        assert "unsupported scheduler" in str(exc)
        return False
    return True


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("karras", [False, True])
def test_cli_scheduler(tmp_path, capsys, name, karras):
    from parareal.adapters.diffusion.digits import load_digits_model

    from parareal.cli.sample_cmd import _scheduler

    built = _scheduler(name, karras, load_digits_model()[1])
    assert type(built).__name__ == {"euler": "EulerDiscreteScheduler",
                                    "heun": "HeunDiscreteScheduler"}[name]
    assert built.config.use_karras_sigmas is karras
    argv = ["sample", "--steps", "6", "--n", "2", "--method", "serial", "--scheduler", name,
            "--out", str(tmp_path / "s.png"), "--json", *(["--karras"] if karras else [])]
    if _sampler_takes(built):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["scheduler"] == name
    else:  # a clear error, not a traceback
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"--scheduler {name}: this version of the sampler does not support it" in err
