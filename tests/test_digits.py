"""The bundled digits diffusion model, classifier and sample-quality helpers."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")
pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from diffusers import DDIMScheduler, UNet2DModel  # noqa: E402
from parareal.adapters.diffusion import digits  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def heldout() -> torch.Tensor:
    return digits.load_digits_data("heldout")


@pytest.fixture(scope="module")
def train() -> torch.Tensor:
    return digits.load_digits_data("train")


@pytest.fixture(scope="module")
def classifier() -> digits.DigitsClassifier:
    return digits.load_classifier()


def noise_mse(unet, x0: torch.Tensor, t: int, alphas: torch.Tensor, seed: int) -> float:
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    ab = alphas[t]
    steps = torch.full((x0.shape[0],), t, dtype=torch.long)
    with torch.no_grad():
        pred = unet(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, steps).sample
    return float((pred - noise).pow(2).mean())


# ------------------------------------------------------------------------------------- data


def test_digits_data_split(train, heldout):
    assert train.shape == (1527, 1, 8, 8) and heldout.shape == (270, 1, 8, 8)
    assert train.dtype == heldout.dtype == torch.float32
    assert float(train.min()) == -1.0 and float(train.max()) == 1.0
    # values are v / 8 - 1 for integer v in 0..16
    levels = (train + 1) * 8
    assert torch.equal(levels, levels.round())
    # deterministic, disjoint (as index sets) and a fresh copy each time
    again = digits.load_digits_data("heldout")
    assert torch.equal(again, heldout) and again.data_ptr() != heldout.data_ptr()
    assert len(digits._split_index("train")) + len(digits._split_index("heldout")) == 1797
    assert not set(digits._split_index("train")) & set(digits._split_index("heldout"))
    labels = digits.load_digits_labels("heldout")
    assert labels.shape == (270,) and set(labels.tolist()) == set(range(10))


def test_digits_data_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        digits.load_digits_data("nope")
    with pytest.raises(ValueError, match="split must be one of"):
        digits.load_digits_labels("test")


# -------------------------------------------------------------------------------- the model


def test_bundled_model_loads_without_pickle_and_denoises(monkeypatch, heldout):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    unet, scheduler = digits.load_digits_model()
    monkeypatch.undo()

    assert isinstance(unet, UNet2DModel) and isinstance(scheduler, DDIMScheduler)
    assert not unet.training
    assert all(p.dtype == torch.float32 for p in unet.parameters())
    assert unet.config.sample_size == 8 and unet.config.in_channels == 1
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.prediction_type == "epsilon"

    torch.manual_seed(0)
    random_init = UNet2DModel.from_config(unet.config).eval()
    alphas = scheduler.alphas_cumprod
    x0 = heldout[:64]  # 128 measured the same ratios to 0.01, at twice the cost
    # measured: ratios 0.19, 0.08, 0.016, 0.0002 (the random model's MSE is 1.2 to 1.4)
    for seed, t in enumerate((100, 250, 500, 900)):
        trained = noise_mse(unet, x0, t, alphas, seed)
        untrained = noise_mse(random_init, x0, t, alphas, seed)
        assert trained < 0.5 * untrained, (t, trained, untrained)
        assert trained < 0.4, (t, trained)


def test_model_weights_are_safetensors():
    head = digits.UNET_WEIGHTS.read_bytes()[:9]
    assert head[8:9] == b"{"  # 8-byte header length, then the JSON header: no pickle
    assert digits.UNET_WEIGHTS.stat().st_size < 8 * 2**20
    assert (digits.ASSETS / "digits_unet.json").is_file()


def test_corrupt_weights_raise_value_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ValueError, match="cannot load digits model weights from .*bad"):
        digits.load_digits_model(bad)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(digits.UNET_WEIGHTS.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot load digits model weights"):
        digits.load_digits_model(truncated)
    with pytest.raises(ValueError, match="cannot load digits classifier weights"):
        digits.load_classifier(bad)


def test_mismatched_weights_raise_value_error(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(other))
    with pytest.raises(ValueError, match="cannot load digits model weights"):
        digits.load_digits_model(other)
    with pytest.raises(ValueError, match="cannot load digits classifier weights"):
        digits.load_classifier(other)


def test_missing_weights_raise_file_not_found(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        digits.load_digits_model(missing)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        digits.load_classifier(str(missing))


# -------------------------------------------------------------------------------- metrics


def test_classifier_heldout_accuracy(classifier, heldout):
    labels = digits.load_digits_labels("heldout")
    with torch.no_grad():
        logits = classifier(heldout)
        feats = classifier.features(heldout)
    assert logits.shape == (270, 10) and feats.shape[0] == 270 and feats.ndim == 2
    assert float((logits.argmax(1) == labels).float().mean()) > 0.9


def test_frechet_distance_exact_and_ordered(classifier, heldout, train):
    # 1-D Gaussians: (1 - 2)^2 + 2 + 8 - 2 * sqrt(2 * 8) = 3
    assert digits.frechet_distance(np.array([[0.0], [2.0]]), torch.tensor([[0.0], [4.0]])) == (
        pytest.approx(3.0, abs=1e-9)
    )
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(270, 1, 8, 8, generator=gen) * 2 - 1
    with torch.no_grad():
        f_held, f_train, f_noise = (classifier.features(x) for x in (heldout, train, noise))
    assert digits.frechet_distance(f_train, f_train) == pytest.approx(0.0, abs=1e-6)
    real = digits.frechet_distance(f_held, f_train)
    fake = digits.frechet_distance(f_noise, f_train)
    assert real < 0.1 * fake, (real, fake)
    with pytest.raises(ValueError, match="feature dimensions"):
        digits.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))


def test_sample_quality_keys(heldout, train):
    quality = digits.sample_quality(train[:300])
    assert set(quality) == {"frechet_distance", "confidence", "predicted_classes"}
    assert len(quality["predicted_classes"]) == 10 and sum(quality["predicted_classes"]) == 300
    assert quality["confidence"] > 0.9
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert digits.sample_quality(noise)["frechet_distance"] > 5 * quality["frechet_distance"]
    same = digits.sample_quality(heldout[:, 0], reference=heldout)  # (n, 8, 8) accepted
    assert same["frechet_distance"] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------- images


def test_to_uint8_exact_mapping():
    x = torch.tensor([-1.5, -1.0, -1 + 1 / 127.5, -0.5, 0.0, 0.5, 1.0, 2.0] * 8).reshape(1, 1, 8, 8)
    out = digits.to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 8, 8)
    assert out[0, 0].tolist() == [0, 0, 1, 64, 128, 191, 255, 255]
    y = torch.linspace(-1.1, 1.1, 64 * 5).reshape(5, 1, 8, 8)
    expected = ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    assert np.array_equal(digits.to_uint8(y), expected)
    assert np.array_equal(digits.to_uint8(y[:, 0]), expected)
    with pytest.raises(ValueError, match="NaN"):
        digits.to_uint8(torch.full((1, 8, 8), float("nan")))


def test_save_grid_writes_png(tmp_path, heldout):
    from PIL import Image

    path = tmp_path / "grid.png"
    digits.save_grid(heldout[:10], path, scale=3, nrow=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.mode == "L"
        assert image.size == (4 * 24 + 3, 3 * 24 + 2)
        pixels = np.asarray(image)
    levels = digits.to_uint8(heldout[:10])
    # tile 5 is row 1, column 1; each pixel is a 3x3 block
    assert np.array_equal(pixels[25:49:3, 25:49:3], levels[5])
    assert (pixels[24, :] == 128).all()


def test_save_grid_bad_folder(tmp_path, heldout):
    with pytest.raises(OSError, match="does not exist"):
        digits.save_grid(heldout[:4], tmp_path / "missing" / "grid.png")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OSError, match="not a folder"):
        digits.save_grid(heldout[:4], afile / "grid.png")


def test_assets_are_package_data():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["parareal.adapters.diffusion"]
    shipped = {p.name for pattern in patterns for p in digits.ASSETS.parent.glob(pattern)}
    assert {"digits_unet.safetensors", "digits_unet.json", "digits_classifier.safetensors",
            "digits_classifier.json", "digits_flow.safetensors", "digits_flow.json"} <= shipped


# ------------------------------------------------------------------ image formats (item 9)


@pytest.mark.parametrize("ext", sorted(digits.IMAGE_EXTENSIONS))
def test_save_grid_writes_the_format_its_extension_names(tmp_path, heldout, ext):
    from PIL import Image

    fmt = digits.image_format(f"grid{ext}")
    assert fmt == digits.IMAGE_EXTENSIONS[ext]
    for name in (f"grid{ext}", f"GRID{ext.upper()}"):
        path = tmp_path / name
        digits.save_grid(heldout[:6], path, scale=2)
        with Image.open(path) as image:
            assert image.format == fmt
            pixels = np.asarray(image.convert("L"))
        tile = pixels[:16:2, :16:2]
        expected = digits.to_uint8(heldout[:1])[0]
        if fmt == "JPEG":  # lossy, quality 95
            assert np.abs(tile.astype(int) - expected).max() <= 24
        else:
            assert np.array_equal(tile, expected)


@pytest.mark.parametrize("path,match", [
    ("grid.xyz", r"extension '\.xyz'; supported: \.png, \.jpg, \.jpeg, \.bmp"),
    ("grid", "no extension; supported: .png"),
    ("folder.d/grid", "no extension"),
    ("grid.png.txt", "extension '.txt'"),
    ("grid.pdf", "extension '.pdf'"),  # Pillow writes PDF, but not a format offered here
    ("", "non-empty file name"),
    ("   ", "non-empty file name"),
])
def test_image_format_refuses_unknown_or_missing_extensions(tmp_path, heldout, path, match):
    with pytest.raises(ValueError, match=match):
        digits.image_format(path)
    target = tmp_path / path if path.strip() else path
    with pytest.raises(ValueError, match=match):
        digits.save_grid(heldout[:2], target)
    assert list(tmp_path.iterdir()) == []


def test_image_format_type_error():
    with pytest.raises(TypeError, match="string or path"):
        digits.image_format(3)


# ----------------------------------------------------- examples/train_digits.py (item 19)


def load_train_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_digits",
                                                  ROOT / "examples" / "train_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_script_defaults_to_a_new_folder_not_the_bundled_assets(tmp_path, monkeypatch,
                                                                     capsys):
    script = load_train_script()
    args = script.parse_args([])
    assert args.out == pathlib.Path("digits_model") and not args.replace_bundled
    assert not script.inside(args.out, digits.ASSETS)
    assert script.parse_args(["--quick"]).out is None  # a new temporary folder, made by main
    assert script.parse_args(["--replace-bundled"]).out == digits.ASSETS
    assert script.parse_args(["--replace-bundled", "--out", str(digits.ASSETS)]).out == (
        digits.ASSETS)
    for argv, message in [
        (["--out", str(digits.ASSETS)], "--replace-bundled"),
        (["--out", str(digits.ASSETS / "sub")], "bundled assets"),
        (["--out", str(digits.ASSETS / ".." / "assets")], "bundled assets"),
        (["--replace-bundled", "--out", str(tmp_path)], "drop --out"),
        (["--replace-bundled", "--quick"], "cannot be combined with --quick"),
    ]:
        with pytest.raises(SystemExit) as info:
            script.parse_args(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err
    # a link to the assets folder is seen through
    link = tmp_path / "link"
    link.symlink_to(digits.ASSETS, target_is_directory=True)
    with pytest.raises(SystemExit):
        script.parse_args(["--out", str(link)])


def test_train_script_tiny_run_leaves_the_bundled_assets_alone(tmp_path, monkeypatch, capsys):
    """The script's ``main`` in this process (what it writes is the point, not the process:
    torch and diffusers are not imported again in a fresh interpreter)."""
    import hashlib

    from tests.inprocess import run_main

    def fingerprint():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(digits.ASSETS.iterdir())}

    before = fingerprint()
    grid = ROOT / "docs" / "digits_samples.png"
    grid_before = grid.read_bytes()
    out = tmp_path / "model"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    status = run_main(ROOT / "examples" / "train_digits.py", "--quick", "--steps", "1",
                      "--threads", "1", "--out", str(out))
    assert status == 0, capsys.readouterr().err
    assert fingerprint() == before and grid.read_bytes() == grid_before
    assert {p.name for p in out.iterdir()} == {
        "digits_unet.safetensors", "digits_unet.json", "digits_classifier.safetensors",
        "digits_classifier.json", "digits_samples.png"}
    unet, _ = digits.load_digits_model(out / "digits_unet.safetensors")
    bundled, _ = digits.load_digits_model()
    trained = dict(unet.named_parameters())
    assert any(not torch.equal(p, trained[name]) for name, p in bundled.named_parameters())
