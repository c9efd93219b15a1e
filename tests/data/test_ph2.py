"""``mediscope data import ph2``: a fake PH2 copy (8 cases of BMPs) to images, masks, manifest."""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mediscope.data.formats.masks import read_masks
from mediscope.data.prepare.ph2 import (
    IMAGES_FOLDER,
    check_split,
    import_ph2,
    read_lesion_mask,
    split_cases,
)
from mediscope.errors import ConfigError, DataError

CASES = [f"IMD{n:03d}" for n in (2, 3, 4, 6, 8, 9, 10, 13)]
H, W = 20, 24


def lesion_of(index: int) -> np.ndarray:
    """A 0 / 255 lesion mask: a block that moves with the case."""
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[4 + index % 4 : 14, 5 : 12 + index] = 255
    return mask


def image_of(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 255, (H, W, 3), dtype=np.uint8)


def fake_ph2(top: Path, *, skip_mask: str | None = None) -> Path:
    """A PH2 copy laid out as published: ``top/PH2 Dataset images/IMDxxx/...`` and the lists."""
    images = top / IMAGES_FOLDER
    for index, name in enumerate(CASES):
        case = images / name
        for sub in ("Dermoscopic_Image", "lesion", "roi"):
            (case / f"{name}_{sub}").mkdir(parents=True)
        Image.fromarray(image_of(index)).save(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp")
        if name != skip_mask:
            Image.fromarray(lesion_of(index)).save(case / f"{name}_lesion" / f"{name}_lesion.bmp")
        Image.fromarray(lesion_of(index)).save(case / f"{name}_roi" / f"{name}_R1_Label4.bmp")
    (top / "PH2_dataset.txt").write_text("|| Name || Histological Diagnosis || ... ||\n")
    return top


def manifest(dst: Path) -> list[dict[str, str]]:
    with (dst / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_import_writes_pngs_binary_masks_and_a_50_25_25_manifest(tmp_path: Path) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset")
    dst = tmp_path / "ph2"

    summary = import_ph2(src, dst, seed=0)

    rows = manifest(dst)
    assert list(rows[0]) == ["image", "mask", "split"]
    assert [r["image"] for r in rows] == [f"images/{n}.png" for n in CASES]
    assert [r["mask"] for r in rows] == [f"masks/{n}.png" for n in CASES]
    assert sorted(r["split"] for r in rows) == ["test"] * 2 + ["train"] * 4 + ["val"] * 2
    assert summary.counts == {"train": 4, "val": 2, "test": 2}
    assert (dst / "classes.txt").read_text() == "background\nlesion\n"
    assert sorted(p.name for p in dst.iterdir()) == [
        "classes.txt",
        "images",
        "manifest.csv",
        "masks",
    ]
    for index, name in enumerate(CASES):
        with Image.open(dst / "images" / f"{name}.png") as img:
            assert img.mode == "RGB"
            np.testing.assert_array_equal(np.array(img), image_of(index))
        with Image.open(dst / "masks" / f"{name}.png") as img:
            assert img.mode == "L"
            np.testing.assert_array_equal(np.array(img), lesion_of(index) // 255)
    lesion = sum(int((lesion_of(i) > 0).sum()) for i in range(len(CASES)))
    assert summary.lesion_share == pytest.approx(lesion / (len(CASES) * H * W))


def test_the_masks_format_reads_the_manifest(tmp_path: Path) -> None:
    import_ph2(fake_ph2(tmp_path / "PH2Dataset"), tmp_path / "ph2")

    samples = read_masks(tmp_path / "ph2" / "manifest.csv")

    assert samples.classes == ["background", "lesion"]
    assert len(samples) == 8
    assert sorted(s.split or "" for s in samples.samples).count("train") == 4


def test_the_split_depends_on_the_seed_only(tmp_path: Path) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset")
    import_ph2(src, tmp_path / "a", seed=7)
    import_ph2(src / IMAGES_FOLDER, tmp_path / "b", seed=7)  # the images folder itself
    import_ph2(src, tmp_path / "c", seed=8)

    assert manifest(tmp_path / "a") == manifest(tmp_path / "b")
    assert manifest(tmp_path / "a") != manifest(tmp_path / "c")
    assert split_cases(CASES, (50, 25, 25), seed=7) == split_cases(CASES[::-1], (2, 1, 1), seed=7)


def test_split_sizes_are_rounded_shares() -> None:
    names = [f"IMD{i:03d}" for i in range(200)]

    parts = list(split_cases(names, (50, 25, 25), seed=0).values())
    six_one_one = list(split_cases(CASES, check_split("6,1,1"), seed=0).values())

    assert (parts.count("train"), parts.count("val"), parts.count("test")) == (100, 50, 50)
    assert (six_one_one.count("train"), six_one_one.count("val")) == (6, 1)
    with pytest.raises(ConfigError, match="bad split"):
        check_split("50,25")
    with pytest.raises(ConfigError, match="cannot read the split"):
        check_split("50,a,25")


def test_zip_input_gives_the_same_dataset(tmp_path: Path) -> None:
    src = fake_ph2(tmp_path / "copy" / "PH2Dataset")
    archive = tmp_path / "PH2Dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent).as_posix())
    out = tmp_path / "out"
    out.mkdir()

    import_ph2(src, out / "from-folder", seed=3)
    import_ph2(archive, out / "from-zip", seed=3)

    assert manifest(out / "from-zip") == manifest(out / "from-folder")
    for name in ("images/IMD004.png", "masks/IMD004.png"):
        assert (out / "from-zip" / name).read_bytes() == (out / "from-folder" / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["from-folder", "from-zip"]  # no temp folder


def test_size_option_resizes_images_and_masks(tmp_path: Path, cli: Callable[..., Any]) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset")

    result = cli("data", "import", "ph2", src, tmp_path / "ph2", "--size", "16", "--split", "6,1,1")

    assert result.code == 0, result.err
    assert "train: 6 cases" in result.out and "test: 1 cases" in result.out
    with Image.open(tmp_path / "ph2" / "images" / "IMD002.png") as img:
        assert img.size == (16, 16)
    with Image.open(tmp_path / "ph2" / "masks" / "IMD002.png") as img:
        assert img.size == (16, 16) and set(np.unique(np.array(img))) == {0, 1}


def test_missing_lesion_mask_is_one_error_line_and_writes_nothing(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset", skip_mask="IMD008")
    dst = tmp_path / "out" / "ph2"

    result = cli("data", "import", "ph2", src, dst)

    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    case = src / IMAGES_FOLDER / "IMD008"
    assert f"{case}: case IMD008 has no lesion mask (IMD008_lesion/IMD008_lesion.bmp)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_non_empty_destination_needs_overwrite(tmp_path: Path, cli: Callable[..., Any]) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset")
    dst = tmp_path / "ph2"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")

    refused = cli("data", "import", "ph2", src, dst)
    replaced = cli("data", "import", "ph2", src, dst, "--overwrite")

    assert refused.code == 2 and "folder exists and is not empty" in refused.err
    assert replaced.code == 0, replaced.err
    assert not (dst / "notes.txt").exists() and len(manifest(dst)) == 8


def test_bad_sources_and_splits_are_user_errors(tmp_path: Path, cli: Callable[..., Any]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "PH2Dataset.rar").write_bytes(b"Rar!")

    empty = cli("data", "import", "ph2", tmp_path / "empty", tmp_path / "a")
    rar = cli("data", "import", "ph2", tmp_path / "PH2Dataset.rar", tmp_path / "b")
    split = cli("data", "import", "ph2", tmp_path / "empty", tmp_path / "c", "--split", "0,50,50")

    assert empty.code == rar.code == split.code == 2
    assert "no PH2 case folders (IMD002, IMD003, ...)" in empty.err
    assert "unpack a .rar first" in rar.err
    assert "--split: bad split" in split.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PH2Dataset.rar", "empty"]


def test_a_mask_that_is_not_binary_names_the_file(tmp_path: Path) -> None:
    src = fake_ph2(tmp_path / "PH2Dataset")
    mask_file = src / IMAGES_FOLDER / "IMD003" / "IMD003_lesion" / "IMD003_lesion.bmp"
    grey = lesion_of(1)
    grey[0, 0] = 128
    Image.fromarray(grey).save(mask_file)

    with pytest.raises(
        DataError, match=r"IMD003_lesion.bmp: the lesion mask is not binary: values \[0, 128, 255\]"
    ):
        import_ph2(src, tmp_path / "ph2")

    assert not (tmp_path / "ph2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PH2Dataset"]  # no staging left


def test_read_lesion_mask_accepts_0_1_and_mode_1(tmp_path: Path) -> None:
    ones = (lesion_of(0) // 255).astype(np.uint8)
    Image.fromarray(ones).save(tmp_path / "a.bmp")
    Image.fromarray(lesion_of(0)).convert("1").save(tmp_path / "b.bmp")

    np.testing.assert_array_equal(read_lesion_mask(tmp_path / "a.bmp"), ones)
    np.testing.assert_array_equal(read_lesion_mask(tmp_path / "b.bmp"), ones)
