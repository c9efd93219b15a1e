"""Which scan reads a path: by the config's ``data.format``, or guessed from the files."""

from __future__ import annotations

from pathlib import Path

from mediscope.config.schema import DatasetConfig
from mediscope.data.doctor.scan import Scan, is_image_name, walk_files
from mediscope.data.doctor.scan_classification import scan_class_folders, scan_csv, scan_npz
from mediscope.data.doctor.scan_detection import scan_coco, scan_voc, scan_yolo
from mediscope.data.doctor.scan_masks import scan_masks
from mediscope.data.formats.masks import find_layout
from mediscope.data.images import is_dicom_file
from mediscope.errors import ConfigError, DataError
from mediscope.files import LIST_LIMIT, read_text_file
from mediscope.registry import FORMATS
from mediscope.yamlsafe import read_yaml_file

FORMAT_HINT = "give --format imagefolder, csv, npz, dicom, masks, coco, yolo or voc"


def scan_path(config: DatasetConfig, path: Path, classes: list[str] | None) -> Scan:
    """Scans ``path`` in the config's format.

    Raises:
        ConfigError: when the format does not hold the config's task.
        DataError: when ``path`` cannot be read as that format at all.
    """
    data = config.data
    tasks = FORMATS.entry(data.format).tags.get("tasks", ())
    if config.task not in tasks:
        raise ConfigError(
            f"format '{data.format}' does not hold {config.task} data", where="data.format"
        )
    name = data.format
    if name in ("imagefolder", "dicom"):
        return scan_class_folders(path, classes=classes, dicom=name == "dicom")
    if name == "csv":
        return scan_csv(path, classes=classes, root=data.root)
    if name == "npz":
        return scan_npz(path, classes=classes)
    if name == "masks":
        return scan_masks(
            path,
            classes=classes,
            root=data.root,
            img_suffix=data.img_suffix,
            mask_suffix=data.mask_suffix,
        )
    if name == "yolo":
        return scan_yolo(path, classes=classes)
    if name == "coco":
        return scan_coco(path, classes=classes, root=data.root)
    if name == "voc":
        return scan_voc(path, classes=classes)
    raise ConfigError(f"the doctor does not know the format '{name}'", where="data.format")


def detect_format(path: Path) -> str:
    """The format of a dataset path, from its files.

    Files: ``.npz``; ``.json`` (COCO); ``.yaml`` (YOLO ``data.yaml``); ``.csv`` with
    ``image`` and ``mask`` columns (masks) or else a classification manifest. Folders:
    ``data.yaml`` (YOLO), COCO JSON files, ``Annotations/`` or XML files (VOC),
    ``images/`` + ``labels/`` text files (YOLO), ``img/`` + ``labels/`` images (masks),
    class folders of DICOM files, else class folders of images.

    Raises:
        DataError: when ``path`` does not exist or looks like none of them.
    """
    if not path.exists():
        raise DataError("not found", where=path, hint="give a config YAML or a dataset path")
    if path.is_file():
        return _file_format(path)
    names = {p.name for p in path.iterdir()}
    if names & {"data.yaml", "data.yml"}:
        return "yolo"
    coco_files = list(path.glob("annotations_*.json")) + list(path.glob("*/_annotations.coco.json"))
    if coco_files or "annotations.json" in names or list(path.glob("annotations/instances_*.json")):
        return "coco"
    if (path / "Annotations").is_dir() or next(path.glob("**/*.xml"), None) is not None:
        return "voc"
    if _yolo_labels(path):
        return "yolo"
    if find_layout(path) is not None:
        return "masks"
    if any(is_dicom_file(f) for f in walk_files(path)):
        return "dicom"
    if any(is_image_name(f.name) for f in walk_files(path)):
        return "imagefolder"
    raise DataError("no dataset format recognised here", where=path, hint=FORMAT_HINT)


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".json":
        return "coco"
    if suffix in (".yaml", ".yml"):
        return "yolo"
    if suffix == ".csv":
        try:
            text = read_text_file(path, limit=LIST_LIMIT, what="CSV file")
            header = text.splitlines()[:1]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the file ({exc})", where=path) from None
        columns = {c.strip().lower() for c in (header[0] if header else "").split(",")}
        return "masks" if {"image", "mask"} <= columns else "csv"
    raise DataError("no dataset format for this file", where=path, hint=FORMAT_HINT)


def _yolo_labels(path: Path) -> bool:
    """``images/`` + ``labels/`` holding ``.txt`` files, or ``<split>/labels/``."""
    folders = [path / "labels", *(d / "labels" for d in path.iterdir() if d.is_dir())]
    return any(f.is_dir() and next(f.glob("**/*.txt"), None) is not None for f in folders)


def is_config(path: Path) -> bool:
    """True for a YAML file that is a mediscope config (``task`` or ``data`` keys)."""
    if not path.is_file() or path.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        raw, _ = read_yaml_file(path, error=ConfigError)
    except (OSError, UnicodeDecodeError, ConfigError):
        return True  # let the config loader name the problem
    return isinstance(raw, dict) and bool({"task", "data"} & set(raw))
