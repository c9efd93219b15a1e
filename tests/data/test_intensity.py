"""Images beyond 8 bits keep their values (``data.intensity``), and images beyond the
pixel limit are read through tifffile or refused in one line (``data.max_pixels``)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import tiny_config
from mediscope.config.schema import DEFAULT_MAX_PIXELS, Config
from mediscope.data import images
from mediscope.data.images import read_image, set_max_pixels, to_uint8
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.runtime.inputs import to_image
from mediscope.runtime.pipeline import prepare
from mediscope.tasks import data_module
from mediscope.tasks.validate import config_from_dict

LOW, HIGH = 1000.0, 3000.0


@pytest.fixture(autouse=True)
def _default_limit() -> Iterator[None]:
    """Each test starts and ends with the default pixel limit (it is process-wide)."""
    pil = Image.MAX_IMAGE_PIXELS
    yield
    set_max_pixels(DEFAULT_MAX_PIXELS)
    Image.MAX_IMAGE_PIXELS = pil


def write16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit grayscale PNG of ``values``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


def sixteen_bit_folder(root: Path, seed: int = 0) -> Path:
    """An imagefolder of 16-bit PNGs whose classes differ in absolute brightness only,
    each image stretched over nearly the same range so that per-image scaling hides it."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", 12), ("test", 4)):
        for name, level in (("dim", 1200), ("bright", 2800)):
            for i in range(count):
                values = rng.normal(level, 150, size=(24, 24)).clip(0, 65535)
                write16(root / split / name / f"{i}.png", values)
    return root


def test_the_default_pixel_limit_is_pillows_own() -> None:
    assert images.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


# -- data.intensity -------------------------------------------------------------------


def test_a_16_bit_value_maps_through_a_fixed_window(tmp_path: Path) -> None:
    values = np.array([[500, 1000, 2000, 2500], [3000, 40000, 1500, 2999]], dtype=np.uint16)
    path = write16(tmp_path / "a.png", values)
    expected = np.clip((values - LOW) / (HIGH - LOW), 0, 1) * 255
    image = read_image(path, channels=1, intensity=(LOW, HIGH))
    assert image[:, :, 0].tolist() == expected.round().astype(np.uint8).tolist()
    assert int(image[0, 2, 0]) == 128  # 2000 is the window's centre: 127.5 rounds to 128
    # per_image (no window): the image's own range, as before
    own = read_image(path, channels=1)
    assert int(own[1, 1, 0]) == 255 and int(own[0, 0, 0]) == 0


def test_the_window_is_the_same_in_training_and_the_runtime_pipeline(
    tmp_path: Path,
) -> None:
    root = sixteen_bit_folder(tmp_path / "data")
    probe = write16(tmp_path / "probe.png", np.full((24, 24), 2000))
    raw = tiny_config(root, tmp_path / "runs")
    raw["data"]["intensity"] = {"mode": "fixed", "min": LOW, "max": HIGH}
    raw["data"]["image_size"] = 24
    config = config_from_dict(raw)
    module = data_module(config)
    mean, std = module.normalization_stats()
    probe_set = SampleSet(module.classes, [Sample(image=str(probe), label=0)], tmp_path)
    dataset = module.dataset(probe_set, train=False)
    trained = dataset[0][0].numpy()
    image, _ = to_image(probe, channels=3, intensity=config.data.intensity.window())
    runtime = prepare(image, size=(24, 24), mean=mean, std=std)
    np.testing.assert_array_equal(trained, runtime)
    before = runtime * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    np.testing.assert_allclose(before, 128 / 255, atol=1e-6)


def test_a_runtime_array_goes_through_the_window_whatever_its_type() -> None:
    window = (0.0, 2.0)
    floats, _ = to_image(np.full((4, 4), 0.5, dtype=np.float32), channels=1, intensity=window)
    assert int(floats[0, 0, 0]) == 64  # 0.5 of a 0..2 window, not 0.5 of 0..1
    ints, _ = to_image(np.full((4, 4), 1, dtype=np.uint16), channels=3, intensity=window)
    assert ints.shape == (4, 4, 3) and int(ints[0, 0, 0]) == 128


def test_a_16_bit_colour_png_and_tiff_keep_their_values(tmp_path: Path) -> None:
    import cv2
    import tifffile

    rgb = np.zeros((8, 8, 3), dtype=np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1000, 2000, 3000
    png = tmp_path / "rgb16.png"
    cv2.imwrite(str(png), rgb[..., ::-1])
    tiff = tmp_path / "rgb16.tif"
    tifffile.imwrite(tiff, rgb)
    for path in (png, tiff):
        image = read_image(path, channels=3, intensity=(LOW, HIGH))
        assert image[0, 0].tolist() == [0, 128, 255], path.name


@pytest.mark.parametrize(
    ("intensity", "words"),
    [
        ({"mode": "fixed"}, "needs min and max"),
        ({"mode": "fixed", "min": 5, "max": 5}, "min must be less than max"),
        ({"mode": "per_image", "min": 0, "max": 9}, "min and max are for mode fixed"),
        ({"mode": "percentile", "low": 99, "high": 1}, "low must be less than high"),
        ({"mode": "gamma"}, "data.intensity.mode"),
        ({"mode": "fixed", "min": 0, "max": 9, "centre": 3}, "data.intensity.centre"),
    ],
)
def test_bad_intensity_keys_are_one_line_config_errors(
    intensity: dict[str, Any],
    words: str,
    tmp_path: Path,
    write_config: Callable[..., Path],
    cli: Callable[..., Any],
) -> None:
    raw = tiny_config(tmp_path / "absent", tmp_path / "runs")
    raw["data"]["intensity"] = intensity
    done = cli("fit", write_config(raw))
    assert done.code == 2
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert len(lines) <= 2 and words in done.err and "data.intensity" in done.err
    assert "Traceback" not in done.err


def test_a_mode_alone_may_be_given_as_a_word(tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, tmp_path / "runs")
    raw["data"]["intensity"] = "percentile"
    config = config_from_dict(raw)
    assert config.data.intensity.mode == "percentile"
    assert config.data.intensity.window() is None


# -- percentile: computed once, stored in the run, used by predict and export ----------


@pytest.fixture(scope="module")
def percentile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny classifier trained on 16-bit images with ``intensity: percentile``."""
    from mediscope.api import fit

    base = tmp_path_factory.mktemp("sixteen")
    root = sixteen_bit_folder(base / "data")
    raw = tiny_config(root, base / "runs", trainer={"max_epochs": 1})
    raw["data"]["intensity"] = {"mode": "percentile", "low": 1, "high": 99}
    return fit(config_from_dict(raw)).run_dir, root


def test_percentile_is_computed_on_the_training_split_and_stored_in_the_run(
    percentile_run: tuple[Path, Path],
) -> None:
    run_dir, _ = percentile_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    stored = saved["data"]["intensity"]
    assert stored["mode"] == "percentile" and stored["min"] < stored["max"]
    module = data_module(
        config_from_dict(saved), split_file=run_dir / "split.json", reuse_split=True
    )
    module.prepare_samples()
    assert module.train_set is not None and module.val_set is not None
    train = [np.asarray(Image.open(s.image)).ravel() for s in module.train_set.samples]
    lo, hi = np.percentile(np.concatenate(train).astype(np.float64), [1, 99])
    assert stored["min"] == pytest.approx(lo) and stored["max"] == pytest.approx(hi)
    everything = [np.asarray(Image.open(s.image)).ravel() for s in module.val_set.samples]
    lo_all, _ = np.percentile(np.concatenate([*train, *everything]).astype(float), [1, 99])
    assert lo_all != pytest.approx(lo)  # the validation images are not in it


def test_predict_with_the_run_uses_its_stored_window_without_computing_again(
    percentile_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mediscope
    from mediscope.data import datamodule

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the percentile window was computed again")

    monkeypatch.setattr(datamodule, "percentile_window", refuse)
    run_dir, root = percentile_run
    stored = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    window = (stored["data"]["intensity"]["min"], stored["data"]["intensity"]["max"])
    predictor = mediscope.load(run_dir)
    assert predictor.info.intensity == pytest.approx(window)
    path = sorted((root / "test" / "bright").glob("*.png"))[0]
    image, _ = predictor.load_image(path)
    expected = to_uint8(np.asarray(Image.open(path)), window)
    np.testing.assert_array_equal(image[:, :, 0], expected)
    assert predictor.predict(path).label in ("dim", "bright")


def test_an_exported_model_carries_the_window(
    percentile_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import mediscope
    from mediscope.export import export_run

    run_dir, root = percentile_run
    stored = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    window = (stored["data"]["intensity"]["min"], stored["data"]["intensity"]["max"])
    result = export_run(run_dir, format="torchscript", output=tmp_path / "model.pt")
    exported = mediscope.load(result.paths[0])
    assert exported.info.intensity == pytest.approx(window)
    assert exported.info.format_version == 2  # older readers refuse it, not ignore the window
    path = sorted((root / "test" / "dim").glob("*.png"))[0]
    image, _ = exported.load_image(path)
    np.testing.assert_array_equal(image[:, :, 0], to_uint8(np.asarray(Image.open(path)), window))


def test_a_resume_keeps_the_runs_window(percentile_run: tuple[Path, Path]) -> None:
    from mediscope.engine.training import check_resume_config

    run_dir, _ = percentile_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    saved["data"]["intensity"] = {"mode": "percentile", "low": 1, "high": 99}
    config: Config = config_from_dict(saved)
    check_resume_config(config, run_dir)  # a config without the computed window resumes
    window = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["intensity"]
    assert config.data.intensity.window() == (window["min"], window["max"])


# -- data.max_pixels ----------------------------------------------------------------


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG claiming ``width x height`` pixels, with a token of image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_an_image_beyond_pillows_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    path = header_only_png(tmp_path / "huge.png", 20000, 10000)
    with pytest.raises(DataError) as caught:
        read_image(path)
    text = str(caught.value)
    assert "20000 x 10000" in text or "200,000,000" in text
    assert "--set data.max_pixels=200000000" in text and "huge.png" in text
    assert "\n" not in text
    from mediscope.data.formats.boxes import image_size

    with pytest.raises(DataError, match="20000 x 10000.*data.max_pixels"):
        image_size(path)  # detection formats read the header only: the same line


def test_max_pixels_refuses_or_reads_through_tifffile(tmp_path: Path) -> None:
    import tifffile

    values = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 7) % 4096
    png = write16(tmp_path / "big.png", values)
    tiff = tmp_path / "big.tif"
    tifffile.imwrite(tiff, values)
    set_max_pixels(1000)
    with pytest.raises(DataError, match=r"64 = 5,120 pixels.*data.max_pixels \(1,000\)"):
        read_image(png)
    image = read_image(tiff, channels=1, intensity=(0.0, 4095.0))
    np.testing.assert_array_equal(image[:, :, 0], to_uint8(values, (0.0, 4095.0)))
    set_max_pixels(10_000)
    np.testing.assert_array_equal(read_image(png, channels=1, intensity=(0.0, 4095.0)), image)


def test_a_tiff_beyond_pillows_own_limit_is_memory_mapped(tmp_path: Path) -> None:
    import tifffile

    values = np.random.default_rng(0).integers(0, 255, size=(50, 60, 3), dtype=np.uint8)
    tiff = tmp_path / "mapped.tif"
    tifffile.imwrite(tiff, values)  # uncompressed and contiguous
    Image.MAX_IMAGE_PIXELS = 100  # Pillow refuses beyond 200 pixels
    set_max_pixels(150)
    Image.MAX_IMAGE_PIXELS = 100
    np.testing.assert_array_equal(read_image(tiff), values)
    from mediscope.data.images import image_header

    assert image_header(tiff) == (60, 50, 3)


def test_predict_and_the_api_refuse_a_huge_image_in_one_line(
    trained_runs: dict[str, Path], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    import mediscope

    path = header_only_png(tmp_path / "huge.png", 20000, 10000)
    predictor = mediscope.load(trained_runs["classification"])
    with pytest.raises(DataError, match="data.max_pixels"):
        predictor.predict(path)
    done = cli(
        "predict", trained_runs["classification"], "--input", path, "--output", tmp_path / "o"
    )
    assert done.code == 2, done.err
    assert "huge.png" in done.err and "data.max_pixels" in done.err
    assert "internal error" not in done.err.lower()


@pytest.mark.slow
def test_fit_and_check_refuse_a_huge_image_in_one_line(
    tmp_path: Path, write_config: Callable[..., Path], cli: Callable[..., Any]
) -> None:
    root = sixteen_bit_folder(tmp_path / "data")
    header_only_png(root / "train" / "dim" / "huge.png", 20000, 10000)
    raw = tiny_config(root, tmp_path / "runs", trainer={"max_epochs": 1})
    raw["data"]["batch_size"] = 1  # every image is read in the first epoch
    config = write_config(raw)
    done = cli("fit", config)
    assert done.code == 2, done.err
    assert "huge.png" in done.err and "data.max_pixels" in done.err
    assert "internal error" not in done.err.lower()
    checked = cli("check", config, "--output", tmp_path / "check")
    assert "internal error" not in (checked.out + checked.err).lower()
    assert checked.code in (0, 1, 2)


def test_check_reports_a_huge_image_and_reads_a_large_tiff(tmp_path: Path) -> None:
    import tifffile

    from mediscope.data.doctor.findings import Finding
    from mediscope.data.doctor.pixels import inspect_image

    huge = header_only_png(tmp_path / "huge.png", 20000, 10000)
    found = inspect_image(str(huge), split="train")
    assert isinstance(found, Finding)
    assert "20000 x 10000" in found.message and "--set data.max_pixels=" in found.message
    values = np.random.default_rng(1).integers(0, 4096, size=(40, 50), dtype=np.uint16)
    tiff = tmp_path / "large.tif"
    tifffile.imwrite(tiff, values)
    Image.MAX_IMAGE_PIXELS = 500  # Pillow refuses beyond 1,000 pixels
    info = inspect_image(str(tiff), split="train")
    assert not isinstance(info, Finding), info
