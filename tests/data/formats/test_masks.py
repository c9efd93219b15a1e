"""The masks format: MMSeg layout, manifest CSV, class names and exclude lists."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.formats.masks import read_masks
from mediscope.errors import DataError
from mediscope.registry import FORMATS

CLASSES = ["background", "lesion"]


def write_pair(root: Path, image: str, mask: str, size: tuple[int, int] = (6, 5)) -> None:
    """An RGB image and a 0/1 mask of ``size`` (width, height) at the two paths."""
    for name, array in (
        (image, np.full((size[1], size[0], 3), 120, dtype=np.uint8)),
        (mask, (np.arange(size[0] * size[1]).reshape(size[1], size[0]) % 2).astype(np.uint8)),
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)


def mmseg(root: Path, stems: dict[str, list[str]], img: str = ".jpg", mask: str = ".png") -> Path:
    for split, names in stems.items():
        for stem in names:
            write_pair(root, f"img/{split}/{stem}{img}", f"labels/{split}/{stem}{mask}")
    return root


def test_mmseg_layout_with_custom_suffixes(tmp_path: Path) -> None:
    root = mmseg(
        tmp_path / "ds",
        {"train": ["a", "b"], "val": ["c"], "test": ["d"]},
        img="_img.jpg",
        mask="_mask.png",
    )
    (root / "img" / "train" / "notes.txt").write_text("not an image")
    samples = read_masks(
        root,
        classes=CLASSES,
        task="segmentation",
        root=None,
        img_suffix="_img.jpg",
        mask_suffix="_mask.png",
    )
    assert samples.classes == CLASSES and samples.root == root
    got = [(Path(s.image).name, Path(s.mask or "").name, s.split) for s in samples.samples]
    assert got == [
        ("a_img.jpg", "a_mask.png", "train"),
        ("b_img.jpg", "b_mask.png", "train"),
        ("c_img.jpg", "c_mask.png", "val"),
        ("d_img.jpg", "d_mask.png", "test"),
    ]
    assert samples.ids()[0] == "img/train/a_img.jpg"


def test_other_folder_names_and_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_pair(root, "images/training/city/x.png", "annotations/training/city/x.png")
    write_pair(root, "images/validation/y.png", "annotations/validation/y.png")
    samples = read_masks(root, classes=CLASSES, task="segmentation", root=None)
    assert [(Path(s.image).name, s.split) for s in samples.samples] == [
        ("x.png", "train"),
        ("y.png", "val"),
    ]


def test_train_folder_is_required(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"val": ["a"]})
    with pytest.raises(DataError, match="no train folder"):
        read_masks(root, classes=CLASSES, task="segmentation", root=None)


def test_images_without_masks_name_the_first_and_count_the_others(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["a", "b", "c", "d"]}, mask="_mask.png")
    for stem in "bcd":
        (root / "labels" / "train" / f"{stem}_mask.png").unlink()
    with pytest.raises(DataError) as info:
        read_masks(root, classes=CLASSES, task="segmentation", root=None, mask_suffix="_mask.png")
    error = info.value
    assert error.where == str(root / "img" / "train" / "b.jpg")
    assert "image without a mask (2 more images without masks)" in error.message
    assert "b_mask.png" in error.message
    assert error.hint is not None and "data.img_suffix / data.mask_suffix" in error.hint


def test_masks_without_images(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["a"]})
    write_pair(root, "elsewhere/z.jpg", "labels/train/z.png")
    with pytest.raises(DataError, match="mask without an image") as info:
        read_masks(root, classes=CLASSES, task="segmentation", root=None)
    assert info.value.where == str(root / "labels" / "train" / "z.png")
    assert "more" not in info.value.message  # a single orphan


def test_wrong_mask_suffix_is_reported_as_orphans(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["a", "b"]}, mask="_mask.png")
    with pytest.raises(DataError, match="image without a mask .1 more"):
        read_masks(root, classes=CLASSES, task="segmentation", root=None)  # default .png


def test_classes_txt_and_missing_classes(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["a"]})
    with pytest.raises(DataError, match="class names are not given") as info:
        read_masks(root, task="segmentation", root=None)
    assert info.value.where == "data.classes"
    (root / "classes.txt").write_text("background\nnevus\n\nmelanoma\n")
    samples = read_masks(root, task="segmentation", root=None)
    assert samples.classes == ["background", "nevus", "melanoma"]
    given = read_masks(root, classes=CLASSES, task="segmentation", root=None)
    assert given.classes == CLASSES  # data.classes wins over classes.txt


def test_manifest_with_relative_paths(tmp_path: Path) -> None:
    data = tmp_path / "ph2"
    for case in ("IMD002", "IMD003"):
        write_pair(data, f"{case}/{case}_Dermoscopic_Image/{case}.bmp", f"{case}/{case}_lesion.bmp")
    manifest = data / "manifest.csv"
    manifest.write_text(
        "image,mask,split,patient_id\n"
        "IMD002/IMD002_Dermoscopic_Image/IMD002.bmp,IMD002/IMD002_lesion.bmp,train,p1\n"
        "\n"
        "IMD003/IMD003_Dermoscopic_Image/IMD003.bmp,IMD003/IMD003_lesion.bmp,validation,\n"
    )
    samples = read_masks(manifest, classes=CLASSES, task="segmentation", root=None)
    first, second = samples.samples
    assert first.image == str(data / "IMD002/IMD002_Dermoscopic_Image/IMD002.bmp")
    assert first.mask == str(data / "IMD002/IMD002_lesion.bmp")
    assert (first.split, first.group) == ("train", "p1")
    assert (second.split, second.group) == ("val", None)
    # a group column names the patient as patient_id does
    text = manifest.read_text().replace("patient_id", "group")
    manifest.write_text(text)
    grouped = read_masks(manifest, classes=CLASSES, task="segmentation", root=None)
    assert [s.group for s in grouped.samples] == ["p1", None]
    # Relative to data.root when it is given.
    elsewhere = tmp_path / "lists" / "m.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text(manifest.read_text())
    assert len(read_masks(elsewhere, classes=CLASSES, task="segmentation", root=data)) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.png,missing.png", "mask file not found"),
        ("a.png", "1 fields, the header has 2"),
        (",a_mask.png", "empty 'image'"),
        ("a.png,a_mask.png,extra", "3 fields"),
    ],
)
def test_manifest_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    write_pair(tmp_path, "a.png", "a_mask.png")
    write_pair(tmp_path, "b.png", "b_mask.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,mask\nb.png,b_mask.png\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_masks(manifest, classes=CLASSES, task="segmentation", root=None)
    assert info.value.where == f"{manifest}:3"


def test_manifest_unknown_split_and_missing_column(tmp_path: Path) -> None:
    write_pair(tmp_path, "a.png", "a_mask.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,mask,split\na.png,a_mask.png,trian\n")
    with pytest.raises(DataError, match="unknown split 'trian'") as info:
        read_masks(manifest, classes=CLASSES, task="segmentation", root=None)
    assert info.value.where == f"{manifest}:2" and "did you mean 'train'" in str(info.value)
    manifest.write_text("path,label\na.png,1\n")
    with pytest.raises(DataError, match="no image and mask columns"):
        read_masks(manifest, classes=CLASSES, task="segmentation", root=None)


def test_exclude_drops_samples_and_reports_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["a", "b", "c", "d"], "val": ["e", "f"]})
    exclude = tmp_path / "bad_masks.txt"
    # stem, file name, relative path with and without suffix; comments and blank lines
    exclude.write_text("# reviewed by hand\na\n\nb.jpg  # torn\nimg/val/e.jpg\nimg/train/d\n")
    with caplog.at_level(logging.WARNING):
        samples = read_masks(root, classes=CLASSES, task="segmentation", root=None, exclude=exclude)
    assert [Path(s.image).stem for s in samples.samples] == ["c", "f"]
    assert "4 of 6 samples excluded" in caplog.text


def test_exclude_typo_is_an_error(tmp_path: Path) -> None:
    root = mmseg(tmp_path / "ds", {"train": ["case_1", "case_2"]})
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("case_1\ncase_3\n")
    with pytest.raises(DataError, match="'case_3' matches no sample") as info:
        read_masks(root, classes=CLASSES, task="segmentation", root=None, exclude=exclude)
    assert info.value.where == f"{exclude}:2"
    with pytest.raises(DataError, match="exclude file not found"):
        read_masks(
            root, classes=CLASSES, task="segmentation", root=None, exclude=tmp_path / "none.txt"
        )


def test_registered_and_refuses_other_tasks(tmp_path: Path) -> None:
    entry = FORMATS.entry("masks")
    assert entry.obj is read_masks and entry.tags["tasks"] == ("segmentation",)
    root = mmseg(tmp_path / "ds", {"train": ["a"]})
    with pytest.raises(DataError, match="holds no classification targets"):
        read_masks(root, classes=CLASSES, task="classification", root=None)
    with pytest.raises(DataError, match="dataset not found"):
        read_masks(tmp_path / "nothing", classes=CLASSES, task="segmentation", root=None)
