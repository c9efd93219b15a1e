"""COCO JSON: class-index masks to COCO annotations and back.

COCO files are what annotation tools such as CVAT import and export, so masks can be
sent out for re-annotation and brought back. The module is organised by function:

- run-length encoding (RLE) of binary masks, in COCO's two forms: ``counts`` as a list
  of run lengths, or as the compressed ASCII string of pycocotools;
- polygons (from OpenCV contours; lossy: holes are filled);
- masks → COCO (:func:`masks_to_coco`) and COCO → masks (:func:`coco_to_masks`);
- files: reading and writing COCO JSON and mask PNGs, atomically.

Conventions. Class 0 is the background and is not a category; classes ``1..K`` are the
categories with ids ``1..K``. Each connected region (8-connected) of a class is one
annotation, which is how annotation tools show objects. RLE is exact: masks → COCO (RLE)
→ masks gives the same pixels. Pixels equal to ``ignore_index`` are not exported (COCO has
no "ignore" category) and come back as background.

Polygons pass through the centres of the boundary pixels: :func:`polygons_to_mask` fills
them back exactly (holes aside), but tools that rasterise polygons by covered area
(pycocotools) lose up to half a pixel along the border. Use RLE where pixels matter.

RLE layout, as in the COCO format: the mask is read in column-major order (down the
first column, then the next), and ``counts`` alternate runs of 0 and 1, starting with a
run of 0 (which is empty when the first pixel is 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from mediscope.data.images import image_header
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError
from mediscope.files import atomic_path, write_json_atomic
from mediscope.registry import unknown_name_hint

Encoding = Literal["rle", "polygon"]
PathLike = str | Path
MaskSource = SampleSet | Sequence[Sample] | tuple[Sequence[PathLike], Sequence[PathLike]]
#: Bits of payload per character of a compressed RLE string, and the character offset.
_CHUNK, _ASCII_ZERO = 5, 48

# -- run-length encoding -------------------------------------------------------------------


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary ``H x W`` mask in column-major order, starting with 0s."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return [0, *counts] if flat[0] else counts


def rle_encode(mask: np.ndarray, *, compress: bool = True) -> dict[str, Any]:
    """COCO RLE of a binary ``H x W`` mask: ``{"size": [H, W], "counts": ...}``.

    Args:
        mask: Nonzero pixels are the object.
        compress: ``counts`` as pycocotools' compressed string (default, as in COCO
            files), else as the list of run lengths.

    Example:
        >>> rle_encode(np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]]), compress=False)
        {'size': [3, 3], 'counts': [1, 1, 1, 2, 3, 1]}
        >>> rle_encode(np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]]))["counts"]
        '11112O'
    """
    counts = rle_counts(mask)
    height, width = mask.shape
    return {
        "size": [int(height), int(width)],
        "counts": rle_to_string(counts) if compress else counts,
    }


def rle_decode(rle: Mapping[str, Any], *, where: str = "RLE") -> np.ndarray:
    """The ``H x W`` uint8 0/1 mask of a COCO RLE (compressed string or list of counts).

    Raises:
        DataError: naming ``where`` when ``size`` or ``counts`` are malformed or the runs
            do not cover ``H x W`` pixels.
    """
    height, width = _rle_size(rle, where)
    raw = rle.get("counts")
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    if isinstance(raw, str):
        counts = rle_from_string(raw, where=where)
    elif isinstance(raw, list) and all(isinstance(c, int | np.integer) and c >= 0 for c in raw):
        counts = [int(c) for c in raw]
    else:
        raise DataError("RLE counts must be a string or a list of counts >= 0", where=where)
    if sum(counts) != height * width or min(counts, default=0) < 0:  # negative: corrupt string
        raise DataError(
            f"RLE runs cover {sum(counts)} pixels, the size is {height} x {width}",
            where=where,
            hint="the counts do not belong to this image size",
        )
    values = np.arange(len(counts), dtype=np.int64) % 2  # 0, 1, 0, 1, ...
    flat = np.repeat(values.astype(np.uint8), counts)
    return flat.reshape((height, width), order="F")


def rle_to_string(counts: Sequence[int]) -> str:
    """pycocotools' compressed form of RLE counts.

    Each count from the third on is stored as its difference to the count two before
    (a run of 0s minus the previous run of 0s, ...), then written in 5-bit groups, least
    significant first, as characters from ``"0"``; bit 6 (0x20) says another group
    follows, bit 5 (0x10) of the last group is the sign.
    """
    chars: list[str] = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = x & 0x1F
            x >>= _CHUNK  # arithmetic shift: negative differences keep their sign
            more = x != -1 if group & 0x10 else x != 0
            chars.append(chr(group + (0x20 if more else 0) + _ASCII_ZERO))
    return "".join(chars)


def rle_from_string(text: str, *, where: str = "RLE") -> list[int]:
    """The counts of a compressed RLE string (see :func:`rle_to_string`).

    Raises:
        DataError: for characters outside the encoding or a string cut short.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        x, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise DataError("compressed RLE counts end in the middle of a number", where=where)
            group = ord(text[position]) - _ASCII_ZERO
            if not 0 <= group < 64:
                raise DataError(
                    f"character {text[position]!r} in compressed RLE counts", where=where
                )
            x |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += _CHUNK
            if not more and group & 0x10:
                x |= -1 << shift  # negative: extend the sign
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


#: Pixels of the largest mask made from a COCO file (2 GB of uint8); a larger size is
#: taken for a broken file rather than allocated.
MAX_PIXELS = 2**31


def _rle_size(rle: Mapping[str, Any], where: str) -> tuple[int, int]:
    size = rle.get("size")
    if not (
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in size)
    ):
        raise DataError("RLE size must be [height, width], two integers >= 0", where=where)
    height, width = int(size[0]), int(size[1])
    check_pixels(height, width, where)
    return height, width


def check_pixels(height: int, width: int, where: str) -> None:
    """Refuses image sizes of more than :data:`MAX_PIXELS` pixels (a broken file)."""
    if height * width > MAX_PIXELS:
        raise DataError(
            f"an image of {width} x {height} pixels is too large for a mask",
            where=where,
            hint="check the size in the file",
        )


def _crop_rle_counts(crop: np.ndarray, top: int, left: int, height: int, width: int) -> list[int]:
    """RLE counts of an ``height x width`` mask that is zero outside ``crop`` (at
    ``top, left``), in time proportional to the crop's columns rather than the image."""
    column = np.zeros((height, crop.shape[1]), dtype=bool)
    column[top : top + crop.shape[0]] = crop
    counts = rle_counts(column)
    counts[0] += left * height  # the empty columns before
    after = (width - left - crop.shape[1]) * height
    if len(counts) % 2:  # ends with a run of 0s: extend it
        counts[-1] += after
    elif after:
        counts.append(after)
    return counts


# -- polygons ------------------------------------------------------------------------------


def mask_to_polygons(mask: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """Outer contours of a binary mask as COCO polygons ``[x1, y1, x2, y2, ...]``.

    Vertices are pixel centres (``index + 0.5`` in COCO's continuous coordinates). Holes
    are not represented (COCO polygons have none): they come back filled. A polygon of one
    or two pixels repeats its points to reach the three vertices COCO requires.

    Args:
        mask: Nonzero pixels are the object.
        offset: ``(x, y)`` added to the vertices (when ``mask`` is a crop).
    """
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)  # contours touching the border
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) + np.array(offset) - 1 + 0.5
        while len(points) < 3:
            points = np.concatenate([points, points[-1:]])
        polygons.append([round(float(v), 2) for v in points.ravel()])
    return polygons


def polygons_to_mask(
    polygons: Sequence[Sequence[float]], height: int, width: int, *, where: str = "polygon"
) -> np.ndarray:
    """Fills COCO polygons (their union) into an ``height x width`` uint8 0/1 mask.

    Vertices are rounded to the nearest pixel centre, so the polygons of
    :func:`mask_to_polygons` give back their pixels exactly (holes filled).

    Raises:
        DataError: for a polygon that is not an even list of at least 6 numbers.
    """
    out = np.zeros((height, width), dtype=np.uint8)
    shapes = []
    for polygon in polygons:
        if not isinstance(polygon, list | tuple) or len(polygon) < 6 or len(polygon) % 2:
            raise DataError(
                "a polygon must be a list x1, y1, x2, y2, ... of >= 3 points", where=where
            )
        try:
            points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2) - 0.5
        except (TypeError, ValueError):
            raise DataError("polygon coordinates must be numbers", where=where) from None
        if not np.isfinite(points).all() or np.abs(points).max() > 2**30:
            raise DataError("polygon coordinates must be finite pixel positions", where=where)
        shapes.append(np.round(points).astype(np.int32))
    cv2.fillPoly(out, shapes, 1)
    return out


# -- masks → COCO --------------------------------------------------------------------------


def categories(classes: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories of the classes: ids ``1..K`` for classes ``1..K`` (0 is background)."""
    return [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(classes) if i]


def masks_to_coco(
    samples: MaskSource,
    classes: Sequence[str],
    *,
    encoding: Encoding = "rle",
    decode: Callable[[str], np.ndarray] | None = None,
    ignore_index: int | None = None,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """COCO instance annotations of class-index masks, one per connected region.

    Args:
        samples: The image / mask pairs: a SampleSet, samples with ``mask`` set, or
            ``(image paths, mask paths)``.
        classes: Class names, background first.
        encoding: ``rle`` (exact, compressed counts) or ``polygon`` (outer contours;
            holes are lost).
        decode: Reads a mask file into class indices; default :func:`read_mask` with
            ``len(classes)`` classes and ``ignore_index``.
        ignore_index: A mask value that is not exported.
        image_root: ``file_name`` is the image path relative to it; default the name.

    Returns:
        The COCO dict with ``images`` (ids from 1, sizes from the image files),
        ``annotations`` (``iscrowd`` 0, ``area`` in pixels, ``bbox`` ``[x, y, w, h]``)
        and ``categories``.

    Raises:
        DataError: naming the file, when an image or mask cannot be read, their sizes
            differ, a value is not a class, or two images have the same ``file_name``.

    Example:
        >>> coco = masks_to_coco((["a.jpg"], ["a.png"]), ["background", "lesion"])  # doctest: +SKIP
        >>> coco["annotations"][0]["segmentation"]["counts"]  # doctest: +SKIP
        'Pd03N2...'
    """
    if encoding not in ("rle", "polygon"):
        raise DataError(f"unknown encoding '{encoding}'", where="encoding", hint="rle or polygon")
    if decode is None:
        from mediscope.data.masks import read_mask

        def decode(path: str) -> np.ndarray:
            return read_mask(path, num_classes=len(classes), ignore_index=ignore_index)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for image_id, (image, mask_file) in enumerate(_pairs(samples), start=1):
        file_name = _file_name(Path(image), image_root)
        if file_name in names:
            raise DataError(
                f"two images named {file_name} (also {names[file_name]})",
                where=image,
                hint="give image_root so that file names keep their folders",
            )
        names[file_name] = str(image)
        width, height = _image_size(Path(image))
        mask = decode(str(mask_file))
        if mask.shape != (height, width):
            raise DataError(
                f"mask is {mask.shape[1]} x {mask.shape[0]}, its image {width} x {height}",
                where=mask_file,
                hint="masks must have the size of their images",
            )
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        found = _mask_annotations(mask, len(classes), encoding, ignore_index)
        for annotation in found:
            annotation.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(annotation)
    return {"images": images, "annotations": annotations, "categories": categories(classes)}


def _pairs(samples: MaskSource) -> list[tuple[PathLike, PathLike]]:
    if isinstance(samples, SampleSet):
        samples = samples.samples
    if isinstance(samples, tuple) and len(samples) == 2 and not isinstance(samples[0], Sample):
        images, masks = samples
        if len(images) != len(masks):
            raise DataError(f"{len(images)} images but {len(masks)} masks", where="masks_to_coco")
        return list(zip(images, masks, strict=True))
    pairs: list[tuple[PathLike, PathLike]] = []
    for sample in samples:
        if not isinstance(sample, Sample) or sample.mask is None:
            where = sample.image if isinstance(sample, Sample) else str(sample)
            raise DataError("a sample without a mask", where=where)
        pairs.append((sample.image, sample.mask))
    return pairs


def _file_name(image: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return image.relative_to(root).as_posix()
        except ValueError:
            pass
    return image.name


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels."""
    width, height, _ = image_header(path)
    return width, height


def _mask_annotations(
    mask: np.ndarray, num_classes: int, encoding: Encoding, ignore_index: int | None
) -> list[dict[str, Any]]:
    """One annotation per 8-connected region of each class 1..K of ``mask``."""
    height, width = mask.shape
    found: list[dict[str, Any]] = []
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=num_classes)[:num_classes])
    for class_index in present[present > 0].tolist():
        if class_index == ignore_index:
            continue
        binary = (mask == class_index).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            crop = labels[y : y + h, x : x + w] == k
            if encoding == "rle":
                counts = _crop_rle_counts(crop, y, x, height, width)
                segmentation: Any = {"size": [height, width], "counts": rle_to_string(counts)}
            else:
                segmentation = mask_to_polygons(crop, offset=(x, y))
            found.append(
                {
                    "category_id": class_index,
                    "segmentation": segmentation,
                    "area": area,
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
    if encoding == "polygon":
        # Filled polygons cover what lies in their holes: paint the larger ones first.
        found.sort(key=lambda a: -_polygon_area(a["segmentation"]))
    return found


def _polygon_area(polygons: list[list[float]]) -> float:
    return sum(float(cv2.contourArea(np.asarray(p, np.float32).reshape(-1, 2))) for p in polygons)


# -- COCO → masks --------------------------------------------------------------------------


def coco_classes(coco: Mapping[str, Any], classes: Sequence[str] | None = None) -> list[str]:
    """Class names of a COCO dict: ``classes`` when given (checked against the
    categories), else ``background`` followed by the category names in id order."""
    return list(_category_index(coco, classes, where="COCO")[1])


def coco_to_masks(
    coco: Mapping[str, Any],
    *,
    classes: Sequence[str] | None = None,
    where: str = "COCO",
) -> dict[str, np.ndarray]:
    """Class-index masks of the images of a COCO dict, by ``file_name``.

    Annotations are painted in their order, so a later one wins where they overlap;
    pixels without annotation are background (0). Crowd annotations count like others.

    Args:
        coco: The COCO dict (``images``, ``annotations``, ``categories``).
        classes: Class names, background first, fixing the index of each category by
            name; default ``background`` + the categories in id order (see
            :func:`coco_classes`).
        where: The source named in errors (e.g. the JSON file).

    Returns:
        ``file_name → H x W`` uint8 class indices, in the order of ``images``.

    Raises:
        DataError: naming ``where`` and the entry, for missing keys, unknown image or
            category ids, malformed segmentations and RLE sizes that are not the image's.
    """
    index, names = _category_index(coco, classes, where=where)
    if len(names) > 256:
        raise DataError(f"{len(names)} classes do not fit 8-bit masks", where=where)
    masks: dict[int, np.ndarray] = {}
    files: dict[int, str] = {}
    for i, image in enumerate(_list(coco, "images", where)):
        at = f"{where}: images[{i}]"
        image_id, file_name = _field(image, "id", int, at), _field(image, "file_name", str, at)
        height, width = _field(image, "height", int, at), _field(image, "width", int, at)
        check_pixels(height, width, at)
        if image_id in files:
            raise DataError(f"image id {image_id} repeats", where=at)
        if file_name in files.values():
            raise DataError(f"file_name {file_name} repeats", where=at)
        files[image_id] = file_name
        masks[image_id] = np.zeros((height, width), dtype=np.uint8)
    for i, annotation in enumerate(_list(coco, "annotations", where)):
        at = f"{where}: annotations[{i}]"
        image_id = _field(annotation, "image_id", int, at)
        category = _field(annotation, "category_id", int, at)
        if image_id not in masks:
            raise DataError(f"image_id {image_id} is not in images", where=at)
        if category not in index:
            raise DataError(
                f"category_id {category} is not in categories",
                where=at,
                hint=f"category ids: {', '.join(map(str, sorted(index)))}",
            )
        canvas = masks[image_id]
        region = segmentation_mask(annotation.get("segmentation"), *canvas.shape, where=at)
        canvas[region.astype(bool)] = index[category]
    return {files[k]: masks[k] for k in files}


def segmentation_mask(segmentation: Any, height: int, width: int, *, where: str) -> np.ndarray:
    """The ``height x width`` 0/1 mask of a COCO ``segmentation`` (RLE or polygons).

    Raises:
        DataError: for a missing or malformed segmentation, or an RLE of another size.
    """
    if isinstance(segmentation, Mapping):
        size = _rle_size(segmentation, where)
        if size != (height, width):
            raise DataError(
                f"RLE size {list(size)} is not the image's [{height}, {width}]", where=where
            )
        return rle_decode(segmentation, where=where)
    if isinstance(segmentation, list) and segmentation:
        return polygons_to_mask(segmentation, height, width, where=where)
    raise DataError(
        "no segmentation (RLE or polygons)",
        where=where,
        hint="masks need segmentation; boxes alone do not make a mask",
    )


def _category_index(
    coco: Mapping[str, Any], classes: Sequence[str] | None, *, where: str
) -> tuple[dict[int, int], list[str]]:
    """Category id → class index, and the class names."""
    cats: dict[int, str] = {}
    for i, category in enumerate(_list(coco, "categories", where)):
        at = f"{where}: categories[{i}]"
        cat_id, name = _field(category, "id", int, at), _field(category, "name", str, at)
        if cat_id in cats:
            raise DataError(f"category id {cat_id} repeats", where=at)
        cats[cat_id] = name
    if classes is None:
        names = [n for _, n in sorted(cats.items()) if n != "background"]
        if len(set(names)) != len(names):
            raise DataError("category names repeat", where=f"{where}: categories")
        classes = ["background", *names]
    missing = [name for name in cats.values() if name not in classes]
    if missing:
        raise DataError(
            f"category '{missing[0]}' is not one of the classes",
            where=f"{where}: categories",
            hint=unknown_name_hint(missing[0], list(classes)),
        )
    return {cat_id: list(classes).index(name) for cat_id, name in cats.items()}, list(classes)


def _list(coco: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = coco.get(key) if isinstance(coco, Mapping) else None
    if not isinstance(value, list):
        raise DataError(
            f"no '{key}' list", where=where, hint="a COCO file has images, annotations, categories"
        )
    return value


def _field(entry: Any, key: str, kind: type, where: str) -> Any:
    value = entry.get(key) if isinstance(entry, Mapping) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"'{key}' missing or not {kind.__name__}", where=where)
    if key in ("height", "width") and isinstance(value, int) and value <= 0:
        raise DataError(f"'{key}' must be positive", where=where)
    return value


# -- files ---------------------------------------------------------------------------------


def read_coco(path: Path) -> dict[str, Any]:
    """Reads a COCO JSON file.

    Raises:
        DataError: naming the file (and line) when it is missing or not a JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError("COCO file not found", where=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", where=f"{path}:{exc.lineno}") from None
    except RecursionError:
        raise DataError("JSON nested too deeply to be a COCO file", where=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the COCO file ({exc})", where=path) from None
    if not isinstance(data, dict):
        raise DataError("a COCO file holds a JSON object", where=path)
    return data


def write_coco(path: Path, coco: Mapping[str, Any]) -> Path:
    """Writes a COCO dict as JSON, atomically."""
    return write_json_atomic(path, dict(coco))


def write_mask_png(path: Path, mask: np.ndarray) -> Path:
    """Writes ``H x W`` class indices as a single-channel (mode L) PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(tmp, format="PNG")
    return path
