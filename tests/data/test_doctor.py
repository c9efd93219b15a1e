"""The dataset doctor finds every planted problem, and nothing in clean synthetic data."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from mediscope.config.schema import Config
from mediscope.data.convert import convert
from mediscope.data.doctor import check_dataset, detect_format
from mediscope.data.doctor.duplicates import near_duplicates
from mediscope.data.doctor.findings import Finding, split_where
from mediscope.data.doctor.pixels import inspect_image, phash
from mediscope.data.doctor.run import CheckReport, write_exclude
from mediscope.data.doctor.scan import Item
from mediscope.data.formats.masks import read_exclude
from mediscope.data.samples import Sample
from mediscope.errors import DataError
from mediscope.tasks.validate import config_from_dict

MODELS = {"classification": "simple_cnn", "segmentation": "unet", "detection": "retinanet"}

Key = tuple[str, str, int | None]


def config(task: str, fmt: str, path: Path, **data: Any) -> Config:
    raw = {
        "task": task,
        "data": {"format": fmt, "path": str(path), **data},
        "model": {"name": MODELS[task]},
    }
    return config_from_dict(raw)


def keys(report: CheckReport, severity: str) -> set[Key]:
    """``(kind, file name, line)`` of the findings of one severity."""
    return {
        (f.kind, Path(f.file).name if f.file else "", f.line)
        for f in report.findings
        if f.severity == severity
    }


def assert_clean(report: CheckReport) -> None:
    loud = [f"{f.severity} {f.kind} {f.place()}: {f.message}" for f in report.findings]
    assert report.counts["error"] == 0 and report.counts["warning"] == 0, loud


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def resized_copy(src: Path, dst: Path, scale: float) -> None:
    with Image.open(src) as img:
        size = (round(img.width * scale), round(img.height * scale))
        img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(dst)


def brighter_jpeg(src: Path, dst: Path, factor: float = 1.05, quality: int = 90) -> None:
    with Image.open(src) as img:
        ImageEnhance.Brightness(img.convert("RGB")).enhance(factor).save(dst, quality=quality)


# -- clean synthetic data: no error, no warning ---------------------------------------------


def test_clean_gram_crops_classification(tiny_crops: Path) -> None:
    report = check_dataset(
        config(
            "classification",
            "imagefolder",
            tiny_crops / "train",
            test_path=str(tiny_crops / "test"),
        )
    )
    assert_clean(report)
    assert report.stats.summary["images"]["per_split"] == {"trainval": 64, "test": 24}
    assert report.stats.summary["classes"]["images"]["total"]["G-cocci"] == 22
    assert {f.kind for f in report.findings} == {"random_split"}


def test_clean_lesions_segmentation(tiny_lesions: Path) -> None:
    report = check_dataset(config("segmentation", "masks", tiny_lesions))
    assert_clean(report)
    classes = report.stats.summary["classes"]
    assert report.stats.summary["images"]["per_split"] == {"train": 12, "val": 4, "test": 4}
    assert classes["pixels"]["total"]["lesion"] > 0
    assert sum(classes["pixels"]["total"].values()) == 20 * 32 * 32
    assert classes["images"]["total"]["lesion"] == 20


def test_clean_gram_stain_yolo_and_its_coco_and_voc(tiny_smears: Path, tmp_path: Path) -> None:
    report = check_dataset(config("detection", "yolo", tiny_smears))
    assert_clean(report)
    boxes = report.stats.summary["boxes"]
    assert boxes["count"] > 0 and boxes["zero_size"] == 0 and boxes["outside_image"] == 0
    objects = report.stats.summary["classes"]["objects"]["total"]
    assert sum(objects.values()) == boxes["count"]
    for target in ("coco", "voc"):
        convert("yolo", target, tiny_smears, tmp_path / target)
        converted = check_dataset(config("detection", target, tmp_path / target))
        assert_clean(converted)
        assert converted.stats.summary["classes"]["objects"]["total"] == objects


def test_clean_csv_with_patients(tiny_crops: Path, tmp_path: Path) -> None:
    rows = ["path,label,patient_id,split"]
    for split in ("train", "test"):  # three images per patient, each patient in one split
        for n, image in enumerate(sorted((tiny_crops / split).rglob("*.png"))):
            rows.append(f"{image},{image.parent.name},{split}-p{n // 3},{split}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = check_dataset(config("classification", "csv", manifest))
    assert_clean(report)
    assert report.stats.summary["images"]["per_split"] == {"trainval": 64, "test": 24}


# -- imagefolder ---------------------------------------------------------------------------


@pytest.fixture
def broken_crops(tiny_crops: Path, tmp_path: Path) -> tuple[Path, set[Key], set[Key]]:
    """Gram crops with problems planted: the errors and warnings the doctor must find."""
    root = tmp_path / "crops"
    shutil.copytree(tiny_crops, root)
    train, test = root / "train", root / "test"
    cocci = sorted((train / "G-cocci").iterdir())
    with Image.open(cocci[0]) as img:
        img.resize((128, 128)).save(train / "G-cocci" / "cut.jpg", quality=95)
    truncate(train / "G-cocci" / "cut.jpg")
    (train / "G+cocci" / "empty.png").write_bytes(b"")
    (train / "G-bacilli" / "notes.png").write_text("not an image", encoding="utf-8")
    shutil.copy(cocci[1], train / "loose.png")
    shutil.copy(cocci[1], test / "G-cocci" / "copy.png")
    shutil.copy(cocci[2], train / "G-cocci" / "zz_again.png")
    resized_copy(
        sorted((train / "G+bacilli").iterdir())[3], test / "G+bacilli" / "resized.png", 1.5
    )
    brighter_jpeg(sorted((train / "G-bacilli").iterdir())[4], test / "G-bacilli" / "bright.jpg")
    errors = {
        ("truncated_image", "cut.jpg", None),
        ("empty_file", "empty.png", None),
        ("unreadable_image", "notes.png", None),
        ("exact_duplicate", "copy.png", None),
        ("near_duplicate", "resized.png", None),
        ("near_duplicate", "bright.jpg", None),
    }
    warnings = {
        ("image_without_label", "loose.png", None),
        ("exact_duplicate", "zz_again.png", None),
    }
    return root, errors, warnings


def test_imagefolder_problems_are_all_found(broken_crops: tuple[Path, set[Key], set[Key]]) -> None:
    root, errors, warnings = broken_crops
    report = check_dataset(
        config("classification", "imagefolder", root / "train", test_path=str(root / "test"))
    )
    assert keys(report, "error") == errors
    assert keys(report, "warning") == warnings
    copy = next(f for f in report.findings if f.file and f.file.endswith("copy.png"))
    assert copy.split == "test" and copy.other_split == "trainval"
    assert Path(copy.other_file or "").parent.name == "G-cocci"
    near = next(f for f in report.findings if f.file and f.file.endswith("resized.png"))
    assert near.details["distance"] <= 10 and near.details["correlation"] >= 0.9


def test_split_folders_of_one_path_are_read(broken_crops: tuple[Path, set[Key], set[Key]]) -> None:
    root, errors, warnings = broken_crops
    report = check_dataset(config("classification", "imagefolder", root))
    assert keys(report, "error") == errors
    assert keys(report, "warning") == warnings


def test_exclude_list_holds_errors_and_later_copies(
    broken_crops: tuple[Path, set[Key], set[Key]], tmp_path: Path
) -> None:
    root, _, _ = broken_crops
    report = check_dataset(
        config("classification", "imagefolder", root / "train", test_path=str(root / "test"))
    )
    file = tmp_path / "exclude.txt"
    assert write_exclude(report, file) == 7
    names = sorted(Path(entry).name for _, entry in read_exclude(file))
    expected = ["bright.jpg", "copy.png", "cut.jpg", "empty.png", "notes.png", "resized.png"]
    assert names == sorted([*expected, "zz_again.png"])
    # checked again with the list, nothing of it is left (the loose image stays a warning)
    again = check_dataset(
        config(
            "classification",
            "imagefolder",
            root / "train",
            test_path=str(root / "test"),
            exclude=str(file),
        )
    )
    assert again.counts["error"] == 0
    assert keys(again, "warning") == {("image_without_label", "loose.png", None)}
    assert again.excluded == 7


# -- csv with patients ---------------------------------------------------------------------


def test_csv_problems_with_lines_and_patients(tiny_crops: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    sources = sorted((tiny_crops / "train").rglob("*.png"))
    for i in range(10):
        shutil.copy(sources[i * 6], images / f"x{i}.png")
    lines = [
        "path,label,patient_id,split",
        "images/x0.png,a,p1,train",
        "images/x1.png,b,p2,train",
        "images/x2.png,a,p3,val",
        "images/x3.png,b,p1,test",
        "images/missing.png,a,p4,train",
        "images/x4.png,zebra,p5,train",
        "images/x5.png,a,p6",
        "images/x6.png,b,p7,holiday",
        "images/x7.png,a,p8,train",
        "images/x7.png,a,p8,train",
        "images/x8.png,b,p9,val",
    ]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_dataset(config("classification", "csv", manifest, classes=["a", "b"]))
    assert keys(report, "error") == {
        ("patient_in_two_splits", "x3.png", None),
        ("label_without_image", "labels.csv", 6),
        ("bad_label", "labels.csv", 7),
        ("bad_label", "labels.csv", 8),
        ("bad_label", "labels.csv", 9),
        ("bad_label", "labels.csv", 11),
    }
    assert keys(report, "warning") == {("image_without_label", "x9.png", None)}
    patient = next(f for f in report.findings if f.kind == "patient_in_two_splits")
    assert patient.details["patient"] == "p1" and patient.other_split == "train"
    assert [Path(p).name for p in patient.exclude] == ["x3.png"]


# -- masks ---------------------------------------------------------------------------------


def test_masks_problems_are_all_found(tiny_lesions: Path, tmp_path: Path) -> None:
    root = tmp_path / "lesions"
    shutil.copytree(tiny_lesions, root)
    img, labels = root / "img", root / "labels"
    mask = np.array(Image.open(labels / "train" / "train_0001.png"))
    mask[:3, :3] = 7
    Image.fromarray(mask).save(labels / "train" / "train_0001.png")
    Image.open(labels / "train" / "train_0002.png").resize((16, 16)).save(
        labels / "train" / "train_0002.png"
    )
    (labels / "train" / "train_0003.png").unlink()
    (img / "val" / "val_0000.jpg").unlink()
    shutil.copy(img / "train" / "train_0004.jpg", img / "test" / "test_copy.jpg")
    shutil.copy(labels / "train" / "train_0004.png", labels / "test" / "test_copy.png")
    truncate(img / "train" / "train_0005.jpg")
    report = check_dataset(config("segmentation", "masks", root))
    assert keys(report, "error") == {
        ("mask_values", "train_0001.png", None),
        ("mask_size", "train_0002.png", None),
        ("image_without_label", "train_0003.jpg", None),
        ("label_without_image", "val_0000.png", None),
        ("exact_duplicate", "test_copy.jpg", None),
        ("truncated_image", "train_0005.jpg", None),
    }
    assert keys(report, "warning") == set()
    values = next(f for f in report.findings if f.kind == "mask_values")
    assert "7" in values.message and Path(values.other_file or "").name == "train_0001.jpg"


# -- YOLO ----------------------------------------------------------------------------------


BAD_LINES = [
    "0 0.5 0.5 0.1",  # 4 fields
    "1 abc 0.5 0.1 0.1",  # not a number
    "2 nan 0.5 0.1 0.1",  # NaN
    "9 0.5 0.5 0.1 0.1",  # class id beyond the class table
    "0 1.2 0.5 0.1 0.1",  # outside [0, 1]
    "0 0.5 0.5 0 0.1",  # zero width
    "1 0.5 0.5 0.1 0.1 0.9",  # a score column
]
BAD_KINDS = [
    "bad_label",
    "bad_label",
    "bad_label",
    "bad_label",
    "box_outside_image",
    "box_zero_size",
    "bad_label",
]


def test_yolo_problems_are_all_found(tiny_smears: Path, tmp_path: Path) -> None:
    root = tmp_path / "smears"
    shutil.copytree(tiny_smears, root)
    images, labels = root / "images", root / "labels"
    label = labels / "train" / "train_00001.txt"
    good = label.read_text(encoding="utf-8").splitlines()
    label.write_text("\n".join([*good, *BAD_LINES]) + "\n", encoding="utf-8")
    (labels / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    (labels / "train" / "train_00002.txt").unlink()
    truncate(images / "train" / "train_00003.png", 0.4)
    resized_copy(images / "train" / "train_00004.png", images / "test" / "test_copy.png", 0.75)
    shutil.copy(labels / "train" / "train_00004.txt", labels / "test" / "test_copy.txt")
    shutil.copy(images / "train" / "train_00005.png", images / "test" / "test_same.png")
    shutil.copy(labels / "train" / "train_00005.txt", labels / "test" / "test_same.txt")
    report = check_dataset(config("detection", "yolo", root))
    lines = {(kind, "train_00001.txt", len(good) + i + 1) for i, kind in enumerate(BAD_KINDS)}
    assert keys(report, "error") == lines | {
        ("label_without_image", "ghost.txt", None),
        ("truncated_image", "train_00003.png", None),
        ("near_duplicate", "test_copy.png", None),
        ("exact_duplicate", "test_same.png", None),
    }
    assert keys(report, "warning") == set()
    assert ("image_without_label", "train_00002.png", None) in keys(report, "info")
    boxes = report.stats.summary["boxes"]
    assert boxes["zero_size"] == 1 and boxes["outside_image"] == 1
    # a bad line flags its image for the exclude list
    bad = next(f for f in report.findings if f.line == len(good) + 4)
    assert "9" in bad.message and [Path(p).name for p in bad.exclude] == ["train_00001.png"]


# -- COCO ----------------------------------------------------------------------------------


def test_coco_problems_are_all_found(tiny_smears: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    convert("yolo", "coco", tiny_smears, root)
    file = root / "annotations_train.json"
    document = json.loads(file.read_text(encoding="utf-8"))
    annotations = document["annotations"]
    annotations[0]["bbox"] = [1, 2, 3]
    annotations[1]["category_id"] = 99
    annotations[2]["image_id"] = 999
    annotations[3]["bbox"] = [120, 120, 30, 30]
    annotations[4]["bbox"] = [10, 10, 0, 5]
    annotations[5]["bbox"] = [10, "x", 5, 5]
    document["images"].append(
        {"id": 1000, "file_name": "images/train/nothere.png", "width": 128, "height": 128}
    )
    file.write_text(json.dumps(document), encoding="utf-8")
    first = root / document["images"][0]["file_name"]
    shutil.copy(first, first.parent / "stray.png")
    report = check_dataset(config("detection", "coco", root))
    found = {
        (f.kind, f.entry) for f in report.findings if f.severity == "error" and f.entry is not None
    }
    assert found == {
        ("bad_label", "annotations[0]"),
        ("bad_label", "annotations[1]"),
        ("bad_label", "annotations[2]"),
        ("box_outside_image", "annotations[3]"),
        ("box_zero_size", "annotations[4]"),
        ("bad_label", "annotations[5]"),
        ("label_without_image", f"images[{len(document['images']) - 1}]"),
    }
    assert report.counts["error"] == len(found)
    assert keys(report, "warning") == {("image_without_label", "stray.png", None)}
    outside = next(f for f in report.findings if f.entry == "annotations[3]")
    assert outside.file == str(file) and len(outside.exclude) == 1


# -- VOC -----------------------------------------------------------------------------------


def _nth_line(lines: list[str], tag: str, n: int) -> int:
    """The 1-based line of the ``n``-th (0-based) line holding ``tag``."""
    return [i for i, line in enumerate(lines, start=1) if tag in line][n]


def test_voc_problems_are_all_found(tiny_smears: Path, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    convert("yolo", "voc", tiny_smears, root)
    annotations = sorted((root / "Annotations").glob("*.xml"))
    xml = next(x for x in annotations if len(ET.parse(x).findall("object")) >= 3)
    tree = ET.parse(xml)
    objects = tree.findall("object")
    objects[0].find("name").text = "zebra"  # type: ignore[union-attr]
    objects[1].find("bndbox/xmin").text = "abc"  # type: ignore[union-attr]
    objects[2].find("bndbox/xmax").text = "1000"  # type: ignore[union-attr]
    tree.write(xml, encoding="utf-8")
    lines = xml.read_text(encoding="utf-8").splitlines()
    broken = next(x for x in annotations[::-1] if x != xml)
    broken.write_text("<annotation>\n<object>\n<name>x</name>\n", encoding="utf-8")
    orphan = next(x for x in annotations if x not in (xml, broken))
    next((root / "JPEGImages").glob(f"{orphan.stem}.*")).unlink()
    shutil.copy(next((root / "JPEGImages").glob("*.png")), root / "JPEGImages" / "stray.png")
    report = check_dataset(config("detection", "voc", root))
    assert keys(report, "error") == {
        ("bad_label", xml.name, _nth_line(lines, "<object>", 0)),
        ("bad_label", xml.name, _nth_line(lines, "<bndbox>", 1)),
        ("box_outside_image", xml.name, _nth_line(lines, "<bndbox>", 2)),
        ("bad_label", broken.name, 4),
        ("label_without_image", orphan.name, None),
    }
    assert keys(report, "warning") == set()
    info = keys(report, "info")
    assert ("image_without_label", "stray.png", None) in info  # ImageSets lists exist
    assert ("image_without_label", f"{broken.stem}.png", None) in info  # its XML is broken


# -- npz and DICOM ---------------------------------------------------------------------------


def test_npz_duplicate_across_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = (rng.random((12, 28, 28)) * 255).astype(np.uint8)
    images[10] = images[2]
    file = tmp_path / "set.npz"
    labels = rng.integers(0, 3, (12, 1))
    np.savez(
        file,
        train_images=images[:9],
        train_labels=labels[:9],
        test_images=images[9:],
        test_labels=labels[9:],
    )
    report = check_dataset(config("classification", "npz", file))
    assert [(f.kind, f.severity, f.file, f.other_file) for f in report.findings[:1]] == [
        (
            "exact_duplicate",
            "error",
            f"{file}::test_images::1",
            f"{file}::train_images::2",
        )
    ]
    assert report.counts["error"] == 1
    assert report.stats.summary["images"]["modes"] == {"L": 12}


def test_dicom_unreadable_file_and_bit_depth(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    rng = np.random.default_rng(0)
    for name in ("a/1.dcm", "a/2.dcm", "b/1.dcm"):
        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.dataset.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (rng.random((16, 16)) * 4095).astype(np.uint16).tobytes()
        (tmp_path / name).parent.mkdir(exist_ok=True)
        ds.save_as(tmp_path / name, enforce_file_format=True)
    (tmp_path / "b" / "2.dcm").write_bytes(b"not a DICOM file")
    report = check_dataset(config("classification", "dicom", tmp_path))
    assert keys(report, "error") == {("unreadable_image", "2.dcm", None)}
    assert report.stats.summary["images"]["bit_depths"] == {"12": 3}
    assert report.stats.summary["images"]["modes"] == {"DICOM MONOCHROME2": 3}


# -- pieces --------------------------------------------------------------------------------


def test_split_file_of_a_run_gives_train_and_val(tiny_crops: Path, tmp_path: Path) -> None:
    root = tmp_path / "crops"
    shutil.copytree(tiny_crops / "train", root)
    first = sorted((root / "G-cocci").iterdir())
    shutil.copy(first[0], root / "G-cocci" / "copy.png")
    ids = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    val = [i for i in ids if i.endswith("copy.png")] + ids[:10]
    train = [i for i in ids if i not in val]
    split = tmp_path / "run" / "split.json"
    split.parent.mkdir()
    split.write_text(json.dumps({"train": train, "val": val}), encoding="utf-8")
    cfg = config("classification", "imagefolder", root)
    before = check_dataset(cfg)
    assert keys(before, "warning") == {("exact_duplicate", "copy.png", None)}
    after = check_dataset(cfg, split_file=split.parent)
    assert keys(after, "error") == {("exact_duplicate", "copy.png", None)}
    assert after.stats.summary["images"]["per_split"] == {"train": len(train), "val": len(val)}


def test_near_duplicate_threshold_on_thumbnails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(base).save(tmp_path / "a.png")
    Image.fromarray(np.clip(base.astype(int) + 12, 0, 255).astype(np.uint8)).save(
        tmp_path / "b.png"
    )
    other = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(other).save(tmp_path / "c.png")
    items = [Item(Sample(image=str(tmp_path / f"{n}.png")), split="train") for n in "abc"]
    infos = [inspect_image(item.image) for item in items]
    assert all(not isinstance(info, Finding) for info in infos)
    found = near_duplicates(items, infos)  # type: ignore[arg-type]
    assert [(Path(f.file or "").name, Path(f.other_file or "").name) for f in found] == [
        ("b.png", "a.png")
    ]
    assert found[0].severity == "warning"  # same split


def test_phash_is_stable_under_resizing() -> None:
    rng = np.random.default_rng(1)
    image = np.kron((rng.random((8, 8, 3)) * 255).astype(np.uint8), np.ones((8, 8, 1), np.uint8))
    small = np.asarray(Image.fromarray(image).resize((48, 48), Image.Resampling.BILINEAR))
    assert bin(phash(image) ^ phash(small)).count("1") <= 4


def test_where_strings_split_into_file_line_and_entry() -> None:
    assert split_where("a/b.txt:12") == ("a/b.txt", 12, None)
    assert split_where("a.json: annotations[3]") == ("a.json", None, "annotations[3]")
    assert split_where("C:/x/y.png") == ("C:/x/y.png", None, None)


def test_formats_are_recognised(tiny_crops: Path, tiny_lesions: Path, tiny_smears: Path) -> None:
    assert detect_format(tiny_crops) == "imagefolder"
    assert detect_format(tiny_lesions) == "masks"
    assert detect_format(tiny_smears) == "yolo"
    assert detect_format(tiny_smears / "data.yaml") == "yolo"
    with pytest.raises(DataError, match="not found"):
        detect_format(tiny_crops / "nothing")


def test_a_config_format_of_another_task_is_refused(tiny_crops: Path) -> None:
    from mediscope.errors import ConfigError

    with pytest.raises(ConfigError, match="does not hold segmentation data"):
        check_dataset(config("segmentation", "imagefolder", tiny_crops))
