"""A PH2 dermoscopy copy as images, lesion masks and a manifest CSV (study S4).

PH2 (Mendonça et al., EMBC 2013; 200 dermoscopy images of melanocytic lesions with
lesion masks) is handed out after registration, so mediscope cannot download it; this
reads the copy the user obtained. Its layout::

    PH2Dataset/
        PH2 Dataset images/
            IMD002/
                IMD002_Dermoscopic_Image/IMD002.bmp
                IMD002_lesion/IMD002_lesion.bmp      binary, 0 / 255
                IMD002_roi/...                       colour regions, not used
            IMD003/ ...
        PH2_dataset.txt, PH2_dataset.xlsx           diagnoses, not used

The source may be the top folder, the ``PH2 Dataset images`` folder itself, or a .zip of
either. The result, read by the ``masks`` format with ``data.path: DST/manifest.csv``::

    DST/images/IMD002.png   RGB
    DST/masks/IMD002.png    class indices: 0 background, 1 lesion
    DST/classes.txt         background, lesion
    DST/manifest.csv        image,mask,split (paths relative to DST)

The split is random with a seed: 50 / 25 / 25 % of the cases as in study S4.

Example:
    >>> import_ph2("~/Downloads/PH2Dataset", "data/ph2")  # doctest: +SKIP
    Ph2Summary(root=PosixPath('data/ph2'), counts={'train': 100, 'val': 50, 'test': 50}, ...)
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.data.download import extract
from mediscope.data.images import IMAGE_SUFFIXES, read_image
from mediscope.data.prepare.resize import resize_image, resize_mask
from mediscope.errors import ConfigError, DataError, DownloadError
from mediscope.files import staged_dir, write_text_atomic

CLASSES: Final[tuple[str, ...]] = ("background", "lesion")
IMAGES_FOLDER: Final = "PH2 Dataset images"
DEFAULT_SPLIT: Final[tuple[float, float, float]] = (50.0, 25.0, 25.0)
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
MANIFEST: Final = "manifest.csv"
_CASE = re.compile(r"IMD\d+", re.IGNORECASE)
_SOURCE_HINT = f"give the folder that holds '{IMAGES_FOLDER}', that folder itself, or a .zip of it"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Ph2Case:
    """One case folder: its name (``IMD002``), the dermoscopic image and the lesion mask."""

    name: str
    folder: Path
    image: Path
    mask: Path


@dataclass(frozen=True)
class Ph2Summary:
    """What :func:`import_ph2` wrote.

    Attributes:
        root: The dataset folder (``manifest.csv``, ``images/``, ``masks/``).
        counts: Cases per split.
        lesion_share: Share of all mask pixels that are lesion (0 to 1).
    """

    root: Path
    counts: dict[str, int]
    lesion_share: float


def import_ph2(
    src: str | Path,
    dst: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    size: int | None = None,
    overwrite: bool = False,
    log: Log | None = None,
) -> Ph2Summary:
    """Converts a PH2 copy into PNG images, 0/1 masks and ``manifest.csv`` under ``dst``.

    Every case is checked before anything is written; the output is built in a temporary
    folder and renamed into place, so an error leaves ``dst`` as it was.

    Args:
        src: The PH2 folder (holding ``PH2 Dataset images``), that folder, or a .zip.
        dst: The dataset folder to write (must not exist or be empty unless ``overwrite``).
        split: Train, validation and test shares, e.g. ``(50, 25, 25)`` (any scale).
        seed: Seed of the random split; the same seed gives the same split.
        size: Resize images and masks to ``size x size``; None keeps 768 x 560.
        overwrite: Replace a non-empty ``dst``.
        log: Called with one-line progress messages.

    Returns:
        Cases per split and the lesion share of the pixels.

    Raises:
        DataError: no PH2 copy at ``src``, a case folder without its image or lesion mask
            (naming the folder), an unreadable or non-binary mask, or a non-empty ``dst``.
        ConfigError: a split that is not three non-negative shares with train > 0.
    """
    src, dst = Path(src).expanduser(), Path(dst)
    shares = check_split(split)
    if size is not None and size < 1:
        raise ConfigError(f"size must be positive, got {size}", where="--size")
    say = log or (lambda _message: None)
    with _source_folder(src, dst) as folder:
        cases = find_cases(_images_folder(folder, src))
        assignment = split_cases([c.name for c in cases], shares, seed=seed)
        with staged_dir(dst, overwrite=overwrite) as tmp:
            lesion, total = _write_cases(cases, tmp, size, say)
            _write_manifest(tmp, cases, assignment)
            write_text_atomic(tmp / "classes.txt", "\n".join(CLASSES) + "\n")
    counts = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
    return Ph2Summary(root=dst, counts=counts, lesion_share=lesion / total if total else 0.0)


def find_cases(folder: Path) -> list[Ph2Case]:
    """The cases of a ``PH2 Dataset images`` folder, sorted by name, each checked complete.

    Raises:
        DataError: naming the case folder that has no dermoscopic image or no lesion mask.
    """
    cases = []
    for case in _case_dirs(folder):
        name = case.name
        image = _part(case, f"{name}_Dermoscopic_Image", name, "dermoscopic image")
        mask = _part(case, f"{name}_lesion", f"{name}_lesion", "lesion mask")
        cases.append(Ph2Case(name, case, image, mask))
    return cases


def split_cases(names: Sequence[str], shares: Sequence[float], *, seed: int) -> dict[str, str]:
    """Assigns each name to train, val or test at random, in the given shares.

    The validation and test counts are rounded from the shares (8 cases at 50/25/25 give
    4 / 2 / 2); the order of ``names`` does not matter, only the set and the seed.

    Example:
        >>> parts = split_cases([f"IMD{i:03d}" for i in range(8)], (50, 25, 25), seed=0)
        >>> sorted(parts.values()).count("train")
        4
    """
    total = float(sum(shares))
    n = len(names)
    n_val = round(n * shares[1] / total)
    n_test = round(n * shares[2] / total)
    order = np.random.default_rng(seed).permutation(sorted(names))
    n_train = n - n_val - n_test
    return {
        str(name): "train" if i < n_train else "val" if i < n_train + n_val else "test"
        for i, name in enumerate(order)
    }


def check_split(split: Sequence[float] | str) -> tuple[float, float, float]:
    """Train, val and test shares from a sequence or text such as ``"50,25,25"``.

    Raises:
        ConfigError: not three non-negative numbers, or no training share.
    """
    hint = "three shares train,val,test, e.g. 50,25,25"
    try:
        values = [float(v) for v in (split.split(",") if isinstance(split, str) else split)]
    except ValueError:
        raise ConfigError(f"cannot read the split '{split}'", where="--split", hint=hint) from None
    if len(values) != 3 or min(values) < 0 or values[0] <= 0:
        raise ConfigError(f"bad split {split}", where="--split", hint=hint)
    return values[0], values[1], values[2]


@contextmanager
def _source_folder(src: Path, dst: Path) -> Iterator[Path]:
    """``src`` itself, or the zip ``src`` unpacked into a temporary folder."""
    if not src.exists():
        raise DataError("not found", where=src, hint=_SOURCE_HINT)
    if src.is_dir():
        yield src
        return
    if src.suffix.lower() != ".zip":
        raise DataError(
            "not a PH2 folder or .zip",
            where=src,
            hint=f"{_SOURCE_HINT} (unpack a .rar first, e.g. with 7z x)",
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".zip", dir=dst.parent))
    try:
        try:
            extract(src, tmp, kind="zip", strip_top=False)
        except DownloadError as exc:
            raise DataError(
                exc.message, where=src, hint="the zip is damaged; copy it again"
            ) from None
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _images_folder(root: Path, src: Path) -> Path:
    """The folder of the case folders: ``root``, its ``PH2 Dataset images``, or one level
    into a single top folder (a zip of the whole copy)."""
    folder = root
    for _depth in range(3):
        if (folder / IMAGES_FOLDER).is_dir():
            return folder / IMAGES_FOLDER
        if _case_dirs(folder):
            return folder
        subdirs = [d for d in folder.iterdir() if d.is_dir() and not _hidden(d)]
        if len(subdirs) != 1:
            break
        folder = subdirs[0]
    raise DataError("no PH2 case folders (IMD002, IMD003, ...)", where=src, hint=_SOURCE_HINT)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


def _case_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and _CASE.fullmatch(d.name))


def _part(case: Path, subfolder: str, stem: str, what: str) -> Path:
    """The image file ``case/subfolder/stem.<image suffix>``."""
    folder = case / subfolder
    found = sorted(
        p
        for p in (folder.iterdir() if folder.is_dir() else ())
        if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not found:
        raise DataError(
            f"case {case.name} has no {what} ({subfolder}/{stem}.bmp)",
            where=case,
            hint="the copy is incomplete: copy this case folder again, or remove it",
        )
    return found[0]


def _write_cases(
    cases: Sequence[Ph2Case], out: Path, size: int | None, log: Log
) -> tuple[int, int]:
    """Writes images/ and masks/; returns lesion and total mask pixels."""
    (out / "images").mkdir()
    (out / "masks").mkdir()
    lesion = total = 0
    for done, case in enumerate(cases, 1):
        image = read_image(case.image)
        mask = read_lesion_mask(case.mask)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"the lesion mask is {mask.shape[1]} x {mask.shape[0]} px but the image "
                f"{image.shape[1]} x {image.shape[0]} px",
                where=case.folder,
                hint="replace this case's lesion mask",
            )
        if size is not None:
            image, mask = resize_image(image, size), resize_mask(mask, size)
        Image.fromarray(image, mode="RGB").save(out / "images" / f"{case.name}.png")
        Image.fromarray(mask, mode="L").save(out / "masks" / f"{case.name}.png")
        lesion += int(mask.sum())
        total += mask.size
        if done % 50 == 0:
            log(f"ph2: {done} / {len(cases)} cases")
    return lesion, total


def read_lesion_mask(path: Path) -> np.ndarray:
    """Reads a PH2 lesion mask (0 / 255, or 0 / 1) as ``H x W`` uint8 0 / 1.

    Raises:
        DataError: naming the file when it is unreadable or holds other values.
    """
    try:
        with Image.open(path) as img:
            img.load()
            gray = np.array(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the lesion mask ({type(exc).__name__}: {exc})",
            where=path,
            hint="replace this case's lesion mask",
        ) from None
    present = set(np.flatnonzero(np.bincount(gray.ravel(), minlength=256)).tolist())
    if present <= {0, 255}:
        return (gray == 255).astype(np.uint8)
    if present <= {0, 1}:
        return gray
    shown = sorted(present)[:6]
    raise DataError(
        f"the lesion mask is not binary: values {shown}{' ...' if len(present) > 6 else ''}",
        where=path,
        hint="a lesion mask holds 0 (skin) and 255 (lesion)",
    )


def _write_manifest(out: Path, cases: Sequence[Ph2Case], assignment: dict[str, str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "mask", "split"])
    for case in cases:
        name = case.name
        writer.writerow([f"images/{name}.png", f"masks/{name}.png", assignment[name]])
    write_text_atomic(out / MANIFEST, buffer.getvalue())
