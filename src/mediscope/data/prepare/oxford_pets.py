"""Oxford-IIIT Pet trimaps as background / cat / dog masks in the MMSeg layout (study S5).

The published archives hold ``images/<name>.jpg`` and ``annotations/``: ``list.txt``
(``<name> <class id> <species> <breed id>``; species 1 = cat, 2 = dog), ``trainval.txt``
and ``test.txt`` (the same columns) and ``trimaps/<name>.png``, whose pixels are 1 (pet),
2 (background) or 3 (the undecided border around the pet).

Each trimap becomes a mask of class indices: 0 background, 1 cat or 2 dog (the species of
the image), and 255 for the border, which losses and metrics ignore
(``data.ignore_index: 255``); ``border="pet"`` gives the border to the pet instead.
``test.txt`` is the test split; every 5th line of ``trainval.txt`` goes to the validation
split (the list is sorted by breed, so each breed gives a fifth), the rest to train.
Images (bilinear or area) and masks (nearest) are resized to 256 x 256 unless
``size=None``. The result::

    img/{train,val,test}/<name>.jpg     RGB JPEG
    labels/{train,val,test}/<name>.png  single-channel class indices
    classes.txt                         background, cat, dog
    README.txt                          source, licence, the ignore value, counts

A listed sample whose image or trimap is missing or unreadable is skipped and counted
(``skipped.txt`` names them). Images stored in another format or colour mode (PNG bytes,
grey, CMYK, RGBA) are converted to RGB JPEG; other files among the images (``.mat``) are
never read, since only the listed names are.

Example:
    >>> prepare_pets("downloads/pets", "data/oxford-pets")  # doctest: +SKIP
    PetsSummary(root=PosixPath('data/oxford-pets'), counts={'train': 2944, ...}, ...)
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from mediscope.data.download import extract
from mediscope.data.prepare.resize import resize_image, resize_mask
from mediscope.errors import DataError, DownloadError
from mediscope.files import staged_dir, write_text_atomic

CLASSES: Final[tuple[str, ...]] = ("background", "cat", "dog")
IGNORE_INDEX: Final = 255
SIZE: Final = 256
VAL_EVERY: Final = 5
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
HOMEPAGE: Final = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
#: Species column of the lists → class index of the mask.
SPECIES_CLASS: Final[dict[int, int]] = {1: 1, 2: 2}
_PET, _BACKGROUND, _BORDER = 1, 2, 3  # trimap pixel values
_JPEG_QUALITY = 95

Border = Literal["ignore", "pet"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class PetSample:
    """One line of ``trainval.txt`` / ``test.txt``: the image name, species and split."""

    name: str
    species: int
    split: str


@dataclass(frozen=True)
class PetsSummary:
    """What :func:`prepare_pets` wrote.

    Attributes:
        root: The dataset folder (``img/``, ``labels/``, ``classes.txt``).
        counts: Samples written per split.
        skipped: Listed samples left out, per reason (``no trimap``, ``unreadable image``, ...).
        pixels: Mask pixels per class name, and ``ignore`` for the border.
    """

    root: Path
    counts: dict[str, int]
    skipped: dict[str, int]
    pixels: dict[str, int]


def prepare_pets(
    src: str | Path,
    dst: str | Path,
    *,
    size: int | None = SIZE,
    border: Border = "ignore",
    val_every: int = VAL_EVERY,
    overwrite: bool = False,
    log: Log | None = None,
) -> PetsSummary:
    """Writes the Oxford-IIIT Pet masks dataset into ``dst`` from a copy of the archives.

    Args:
        src: A folder holding ``images/`` and ``annotations/`` (the unpacked archives), or
            the archives themselves (``images.tar.gz`` and ``annotations.tar.gz``).
        dst: The dataset folder to write (must not exist or be empty unless ``overwrite``).
        size: Side of the square images and masks; None keeps the original sizes.
        border: ``"ignore"`` marks the trimap border 255; ``"pet"`` makes it cat or dog.
        val_every: Every ``val_every``-th line of ``trainval.txt`` goes to validation.
        overwrite: Replace a non-empty ``dst``.
        log: Called with one-line progress messages.

    Returns:
        Counts per split, skipped samples and pixels per class.

    Raises:
        DataError: ``src`` holds no copy, a list is missing or malformed, or ``dst`` is
            not empty. Nothing is written then.
    """
    src, dst = Path(src), Path(dst)
    _check_options(size, border, val_every)
    # The destination is checked first: unpacking the images takes a while.
    with staged_dir(dst, overwrite=overwrite) as tmp, _raw_folder(src, dst) as raw:
        samples = read_split_lists(raw / "annotations", val_every=val_every)
        summary = convert(raw, tmp, samples, size=size, border=border, log=log)
        _write_notes(tmp, summary, size=size, border=border, val_every=val_every)
    return replace(summary, root=dst)


def prepare_fetched(folder: Path, *, log: Log | None = None) -> PetsSummary:
    """The catalog's preparation step: converts the unpacked archives in ``folder`` in place.

    ``mediscope data fetch`` calls it on its temporary folder, which is renamed into place
    afterwards; the raw ``images/`` and ``annotations/`` are removed once converted.
    """
    samples = read_split_lists(folder / "annotations", val_every=VAL_EVERY)
    summary = convert(folder, folder, samples, size=SIZE, border="ignore", log=log)
    _write_notes(folder, summary, size=SIZE, border="ignore", val_every=VAL_EVERY)
    for raw in ("images", "annotations"):
        shutil.rmtree(folder / raw)
    return summary


def read_split_lists(annotations: Path, *, val_every: int = VAL_EVERY) -> list[PetSample]:
    """The samples of ``trainval.txt`` and ``test.txt``, with their species and split.

    The species comes from ``list.txt`` when it names the image, else from the split list's
    own species column.

    Raises:
        DataError: a list is missing, a line is malformed (naming ``file:line``), or an
            image is in both lists.
    """
    if not annotations.is_dir():
        raise DataError("no annotations/ folder", where=annotations.parent, hint=_COPY_HINT)
    listed = annotations / "list.txt"
    species = dict(_read_rows(listed)) if listed.is_file() else {}
    samples: list[PetSample] = []
    for filename, split in (("trainval.txt", "train"), ("test.txt", "test")):
        path = annotations / filename
        if not path.is_file():
            raise DataError(f"no {filename}", where=annotations, hint=_COPY_HINT)
        for position, (name, kind) in enumerate(_read_rows(path), 1):
            part = "val" if split == "train" and position % val_every == 0 else split
            samples.append(PetSample(name, species.get(name, kind), part))
    _check_unique(samples, annotations)
    return samples


def trimap_to_mask(
    trimap: np.ndarray, species: int, *, border: Border = "ignore", where: str | Path | None = None
) -> np.ndarray:
    """Turns a trimap (1 pet, 2 background, 3 border) into a mask of class indices.

    Args:
        trimap: ``H x W`` integer array.
        species: 1 (cat) or 2 (dog), as in the lists.
        border: ``"ignore"`` gives the border :data:`IGNORE_INDEX`, ``"pet"`` the pet's class.
        where: The trimap file, for the error message.

    Returns:
        ``H x W`` uint8: 0 background, 1 cat, 2 dog, 255 ignored.

    Raises:
        DataError: values other than 1, 2 and 3, or an unknown species.

    Example:
        >>> trimap_to_mask(np.array([[1, 2, 3]]), species=2).tolist()
        [[2, 0, 255]]
    """
    if species not in SPECIES_CLASS:
        raise DataError(f"unknown species {species} (1 cat, 2 dog)", where=where)
    pet = SPECIES_CLASS[species]
    present = np.unique(trimap)
    if not set(present.tolist()) <= {_PET, _BACKGROUND, _BORDER}:
        raise DataError(
            f"trimap values {present.tolist()} are not 1 (pet), 2 (background), 3 (border)",
            where=where,
        )
    lut = np.zeros(_BORDER + 1, dtype=np.uint8)
    lut[_PET] = pet
    lut[_BORDER] = IGNORE_INDEX if border == "ignore" else pet
    mask: np.ndarray = lut[trimap.astype(np.intp)]
    return mask


def convert(
    raw: Path,
    out: Path,
    samples: Sequence[PetSample],
    *,
    size: int | None = SIZE,
    border: Border = "ignore",
    log: Log | None = None,
) -> PetsSummary:
    """Writes ``img/`` and ``labels/`` under ``out`` from ``raw/images`` and ``raw/annotations``.

    Writes into ``out`` directly: callers give it a temporary folder (see
    :func:`prepare_pets`). Samples that cannot be converted are skipped and counted.
    """
    say = log or (lambda _message: None)
    for kind in ("img", "labels"):
        for split in SPLITS:
            (out / kind / split).mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    skipped: dict[str, list[str]] = {}
    pixels = np.zeros(256, dtype=np.int64)
    say(f"oxford-pets: converting {len(samples):,} trimaps to masks")
    for done, sample in enumerate(samples, 1):
        reason = _convert_one(raw, out, sample, size=size, border=border, pixels=pixels)
        if reason is None:
            counts[sample.split] += 1
        else:
            skipped.setdefault(reason, []).append(sample.name)
        if done % 1000 == 0:
            say(f"oxford-pets: {done:,} / {len(samples):,}")
    if skipped:
        _write_skip_list(out, skipped)
        say(f"oxford-pets: skipped {_skip_note(skipped)} (see skipped.txt)")
    return PetsSummary(
        root=out,
        counts={split: counts[split] for split in SPLITS},
        skipped={reason: len(names) for reason, names in sorted(skipped.items())},
        pixels={
            **{name: int(pixels[i]) for i, name in enumerate(CLASSES)},
            "ignore": int(pixels[IGNORE_INDEX]),
        },
    )


_COPY_HINT = (
    "give the folder of the unpacked Oxford-IIIT Pet archives (images/ and annotations/) "
    f"or of images.tar.gz and annotations.tar.gz from {HOMEPAGE}"
)


def _check_options(size: int | None, border: str, val_every: int) -> None:
    if size is not None and size < 1:
        raise DataError(f"size must be positive, got {size}", where="size")
    if border not in ("ignore", "pet"):
        raise DataError(f"border must be 'ignore' or 'pet', got '{border}'", where="border")
    if val_every < 2:
        raise DataError(
            f"val_every must be 2 or more, got {val_every}",
            where="val_every",
            hint="5 puts every 5th trainval image (20 %) in the validation split",
        )


@contextmanager
def _raw_folder(src: Path, dst: Path) -> Iterator[Path]:
    """``src`` itself when unpacked, else its two archives unpacked into a temporary folder."""
    if (src / "images").is_dir() and (src / "annotations").is_dir():
        yield src
        return
    archives = [_find_archive(src, kind) for kind in ("images", "annotations")]
    if not src.is_dir() or None in archives:
        raise DataError(
            "no Oxford-IIIT Pet copy: neither images/ + annotations/ nor their archives",
            where=src,
            hint=_COPY_HINT,
        )
    # Unpacked beside the destination: the images take 800 MB, too much for some /tmp.
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".raw", dir=dst.parent))
    try:
        for archive in archives:
            assert archive is not None
            _unpack(archive, tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _find_archive(folder: Path, kind: str) -> Path | None:
    names = (f"{kind}.tar.gz", f"oxford-pets-{kind}.tar.gz", f"{kind}.tar")
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _unpack(archive: Path, into: Path) -> None:
    try:
        extract(archive, into, kind="tar", strip_top=False)
    except DownloadError as exc:
        raise DataError(
            exc.message, where=archive, hint="the archive is damaged; download it again"
        ) from None


def _read_rows(path: Path) -> Iterator[tuple[str, int]]:
    """``(name, species)`` of each line of a list; ``#`` lines are comments."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) < 3 or parts[2] not in ("1", "2"):
            raise DataError(
                f"expected '<name> <class id> <species 1|2> <breed id>', got '{text}'",
                where=f"{path}:{number}",
                hint="the list is damaged; fetch the annotations again",
            )
        yield parts[0], int(parts[2])


def _check_unique(samples: Sequence[PetSample], annotations: Path) -> None:
    seen = Counter(s.name for s in samples)
    twice = sorted(name for name, n in seen.items() if n > 1)
    if twice:
        raise DataError(
            f"{len(twice)} images are listed twice, e.g. '{twice[0]}'",
            where=annotations,
            hint="an image must be in one of trainval.txt and test.txt, once",
        )


def _convert_one(
    raw: Path, out: Path, sample: PetSample, *, size: int | None, border: Border, pixels: np.ndarray
) -> str | None:
    """Writes one image and mask; returns why it was skipped, or None."""
    image_path = raw / "images" / f"{sample.name}.jpg"
    trimap_path = raw / "annotations" / "trimaps" / f"{sample.name}.png"
    if not image_path.is_file():
        return "no image"
    if not trimap_path.is_file():
        return "no trimap"
    photo = _read_photo(image_path)
    if photo is None:
        return "unreadable image"
    image, plain_jpeg = photo
    trimap = _read_trimap(trimap_path)
    if trimap is None or trimap.shape != image.shape[:2]:
        return "bad trimap"
    try:
        mask = trimap_to_mask(trimap, sample.species, border=border, where=trimap_path)
    except DataError:
        return "bad trimap"
    image_out = out / "img" / sample.split / f"{sample.name}.jpg"
    if size is not None:
        image, mask = resize_image(image, size), resize_mask(mask, size)
    if size is None and plain_jpeg:
        shutil.copyfile(image_path, image_out)  # the original bytes: no second JPEG loss
    else:
        Image.fromarray(image, mode="RGB").save(image_out, quality=_JPEG_QUALITY)
    Image.fromarray(mask, mode="L").save(out / "labels" / sample.split / f"{sample.name}.png")
    pixels += np.bincount(mask.ravel(), minlength=256)
    return None


def _read_photo(path: Path) -> tuple[np.ndarray, bool] | None:
    """The image as RGB, and whether the file is already an RGB JPEG; None if unreadable."""
    try:
        with Image.open(path) as img:
            img.load()
            plain = img.format == "JPEG" and img.mode == "RGB"
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.array(rgb, dtype=np.uint8), plain
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _read_trimap(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            img.load()
            array = np.array(img)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return array if array.ndim == 2 else None


def _skip_note(skipped: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(names)} ({reason})" for reason, names in sorted(skipped.items()))


def _write_skip_list(out: Path, skipped: dict[str, list[str]]) -> None:
    lines = [f"{name}\t{reason}" for reason, names in sorted(skipped.items()) for name in names]
    write_text_atomic(out / "skipped.txt", "\n".join(lines) + "\n")


def _write_notes(
    out: Path, summary: PetsSummary, *, size: int | None, border: Border, val_every: int
) -> None:
    write_text_atomic(out / "classes.txt", "\n".join(CLASSES) + "\n")
    total = sum(summary.pixels.values()) or 1
    shares = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in summary.pixels.items())
    border_note = (
        f"{IGNORE_INDEX} = the trimap's undecided border: set data.ignore_index: {IGNORE_INDEX}"
        if border == "ignore"
        else "the trimap's border is counted as the pet (no ignored pixels)"
    )
    skipped = ", ".join(f"{n} {reason}" for reason, n in summary.skipped.items()) or "none"
    text = f"""Oxford-IIIT Pet Dataset as background / cat / dog segmentation masks

Source: {HOMEPAGE}
  O. M. Parkhi, A. Vedaldi, A. Zisserman, C. V. Jawahar, "Cats and Dogs", CVPR 2012.
Licence: CC BY-SA 4.0; the images' copyright stays with their owners.

Layout: img/{{train,val,test}}/<name>.jpg and labels/{{train,val,test}}/<name>.png
Masks: single-channel PNG of class indices: 0 background, 1 cat, 2 dog;
  {border_note}.
Splits: test = annotations/test.txt; val = lines {val_every}, {2 * val_every}, \
{3 * val_every}, ... of
  annotations/trainval.txt; train = its other lines.
Size: {f"{size} x {size} (images area / bilinear, masks nearest)" if size else "original"}
Samples: {", ".join(f"{k} {v}" for k, v in summary.counts.items())}; skipped: {skipped}
Pixels: {shares}
"""
    write_text_atomic(out / "README.txt", text)
