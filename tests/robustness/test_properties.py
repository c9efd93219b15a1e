"""Property tests of the label readers, the mask reader and the converters.

(a) Arbitrary input (random bytes, random label lines, random JSON structures, random
XML, random small images as masks) makes the YOLO, COCO and VOC readers, the mask
reader, the masks format and the converters either succeed or raise a
:class:`~mediscope.errors.DataError`; nothing else (ValueError, KeyError, IndexError,
UnicodeDecodeError, ...). What they return then is sane: finite boxes of positive size
inside their image, class ids within the class table, masks of class indices.

(b) Round trips keep the content: random box sets written as YOLO, COCO or VOC and read
back give the same classes and the same boxes to within ``TOLERANCE`` pixels (the
writers write exact numbers; what is left is float32 rounding), convert A → B → A
between the three keeps boxes and classes, and masks → yolo gives one box per region.

Every test draws a bounded number of examples with a fixed seed (``derandomize``), and
writes its files into a ``tempfile.TemporaryDirectory`` of its own per example.
``MEDISCOPE_FUZZ_SCALE=N`` draws N times as many.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mediscope.data.convert import ConvertOptions, convert
from mediscope.data.formats.coco import coco_to_masks, polygons_to_mask, rle_decode
from mediscope.data.formats.coco_detection import read_coco_detection, write_coco_detection
from mediscope.data.formats.masks import read_masks
from mediscope.data.formats.voc import read_voc, write_voc
from mediscope.data.formats.yolo import read_yolo, write_yolo
from mediscope.data.masks import read_mask
from mediscope.data.samples import Sample, SampleSet
from mediscope.errors import DataError, MediscopeError
from mediscope.tasks.validate import config_from_text

#: Pixels by which boxes may differ after a round trip (float32 boxes of images up to
#: 64 px carry about 4e-6 px of rounding; the writers add none).
TOLERANCE = 1e-4
CLASSES = ["cocci", "bacilli", "spirilla"]

#: ``MEDISCOPE_FUZZ_SCALE=20`` multiplies the examples, for a longer hunt by hand.
SCALE = int(os.environ.get("MEDISCOPE_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=120 * SCALE,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(
    max_examples=50 * SCALE,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _only_data_errors(read: Callable[[], Any]) -> Any:
    """``read()``'s result, or None when it raised a DataError (any other error fails)."""
    try:
        return read()
    except DataError as exc:
        assert str(exc).strip() and "\n" not in str(exc)  # one line for the CLI
        return None


def _check_boxes(samples: SampleSet) -> None:
    """Boxes are finite, of positive size, inside their image; labels are classes."""
    for sample in samples.samples:
        assert sample.boxes is not None and sample.box_labels is not None
        width, height = Image.open(sample.image).size
        boxes = sample.boxes
        assert boxes.dtype == np.float32 and boxes.shape == (len(sample.box_labels), 4)
        assert np.isfinite(boxes).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        labels = sample.box_labels
        assert ((labels >= 0) & (labels < len(samples.classes))).all()


def _image(path: Path, width: int = 32, height: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 60, 200)).save(path)
    return path


# -- strategies ----------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 10).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_0", "", "½", "0.5.5", "--1"]),
    st.text(max_size=6),
)
LABEL_LINE = st.lists(NUMBER_TEXT, min_size=0, max_size=7).map(" ".join)
LABEL_TEXT = st.one_of(
    st.lists(LABEL_LINE, max_size=6).map("\n".join),
    st.text(max_size=200),
)

JSON_KEYS = st.sampled_from(
    [
        "images",
        "annotations",
        "categories",
        "id",
        "image_id",
        "category_id",
        "file_name",
        "bbox",
        "name",
        "iscrowd",
        "width",
        "height",
        "segmentation",
        "size",
        "counts",
    ]
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a.png", "../x.png", "images/a.png", "cocci", "", "0", "1e9"]),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(JSON_KEYS, inner, max_size=6)
    ),
    max_leaves=30,
)


@st.composite
def coco_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly COCO-shaped documents with random holes and wrong types."""
    categories = draw(
        st.one_of(
            st.just([{"id": 1, "name": "cocci"}, {"id": 2, "name": "bacilli"}]),
            st.lists(st.dictionaries(JSON_KEYS, JSON_SCALARS, max_size=3), max_size=3),
            JSON_VALUES,
        )
    )
    image = st.fixed_dictionaries(
        {"id": st.integers(0, 3), "file_name": st.sampled_from(["a.png", "b.png", "c.png"])},
        optional={"width": JSON_SCALARS, "height": JSON_SCALARS},
    )
    bbox = st.one_of(
        st.lists(st.floats(-10, 60) | JSON_SCALARS, min_size=0, max_size=5), JSON_SCALARS
    )
    annotation = st.fixed_dictionaries(
        {},
        optional={
            "image_id": st.integers(0, 3) | JSON_SCALARS,
            "category_id": st.integers(0, 3) | JSON_SCALARS,
            "bbox": bbox,
            "iscrowd": st.sampled_from([0, 1, None, "yes"]),
            "segmentation": JSON_VALUES,
        },
    )
    document: dict[str, Any] = {
        "images": draw(st.one_of(st.lists(image, max_size=3), JSON_VALUES)),
        "annotations": draw(st.one_of(st.lists(annotation, max_size=5), JSON_VALUES)),
        "categories": categories,
    }
    for key in draw(st.sets(st.sampled_from(list(document)), max_size=2)):
        del document[key]
    return document


XML_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 80).map(str),
    st.sampled_from(["cocci", "bacilli", "", "a.png", "  12  ", "1e400"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
)
XML_TAGS = st.sampled_from(
    ["object", "name", "bndbox", "xmin", "ymin", "xmax", "ymax", "filename", "size", "x"]
)


@st.composite
def xml_trees(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(XML_TAGS)
    if depth >= 3 or draw(st.booleans()):
        text = draw(XML_TEXT)
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<{tag}>{escaped}</{tag}>"
    children = draw(st.lists(xml_trees(depth + 1), max_size=4))
    return f"<{tag}>{''.join(children)}</{tag}>"


@st.composite
def voc_documents(draw: st.DrawFn) -> str:
    body = "".join(draw(st.lists(xml_trees(), max_size=4)))
    root = draw(st.sampled_from(["annotation", "annotation", "other"]))
    text = f"<{root}><filename>a.png</filename>{body}</{root}>"
    if draw(st.integers(0, 9)) == 0:  # now and then, cut it short
        text = text[: draw(st.integers(0, len(text)))]
    return text


@st.composite
def box_sets(draw: st.DrawFn) -> list[tuple[int, int, list[list[float]], list[int]]]:
    """Images (width, height) with valid boxes (inside, positive size) and labels."""
    images = []
    for _ in range(draw(st.integers(1, 3))):
        width, height = draw(st.integers(8, 64)), draw(st.integers(8, 64))
        boxes, labels = [], []
        for _ in range(draw(st.integers(0, 4))):
            x1 = draw(st.floats(0, width - 1, allow_nan=False))
            y1 = draw(st.floats(0, height - 1, allow_nan=False))
            x2 = draw(st.floats(x1 + 0.5, width, allow_nan=False))
            y2 = draw(st.floats(y1 + 0.5, height, allow_nan=False))
            x1, y1, x2, y2 = (float(np.float32(v)) for v in (x1, y1, x2, y2))
            if x2 - x1 < 0.5 or y2 - y1 < 0.5:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(draw(st.integers(0, len(CLASSES) - 1)))
        images.append((width, height, boxes, labels))
    return images


def _sample_set(
    root: Path, images: list[tuple[int, int, list[list[float]], list[int]]]
) -> SampleSet:
    samples = []
    for i, (width, height, boxes, labels) in enumerate(images):
        image = _image(root / "src" / f"img{i}.png", width, height)
        samples.append(
            Sample(
                image=str(image),
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                box_labels=np.asarray(labels, np.int64),
                split="train",
            )
        )
    return SampleSet(list(CLASSES), samples, root / "src")


def _by_name(samples: SampleSet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for sample in samples.samples:
        assert sample.boxes is not None and sample.box_labels is not None
        order = np.lexsort((*sample.boxes.T[::-1], sample.box_labels))
        found[Path(sample.image).stem] = (sample.boxes[order], sample.box_labels[order])
    return found


def _assert_same_boxes(before: SampleSet, after: SampleSet) -> None:
    assert after.classes == before.classes
    expected, got = _by_name(before), _by_name(after)
    assert set(got) == set(expected)
    for name, (boxes, labels) in expected.items():
        got_boxes, got_labels = got[name]
        assert got_labels.tolist() == labels.tolist(), name
        np.testing.assert_allclose(got_boxes, boxes, rtol=0, atol=TOLERANCE, err_msg=name)


# -- (a) arbitrary input: DataError or a sane result ---------------------------------------


@FUZZ
@given(text=LABEL_TEXT, skip=st.booleans())
def test_yolo_label_lines(text: str, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root / "images" / "train" / "a.png")
        _image(root / "images" / "train" / "b.png", 16, 40)
        (root / "labels" / "train").mkdir(parents=True)
        (root / "labels" / "train" / "a.txt").write_text(text, encoding="utf-8")
        (root / "labels" / "train" / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n", encoding="utf-8")
        mode = "skip" if skip else "error"
        samples = _only_data_errors(lambda: read_yolo(root, classes=CLASSES, on_bad_label=mode))
        if samples is not None:
            _check_boxes(samples)
        if skip:  # skipping drops bad lines: the read always succeeds
            assert samples is not None


@FUZZ
@given(data=st.binary(max_size=300), where=st.sampled_from(["label", "data.yaml", "image"]))
def test_yolo_random_bytes(data: bytes, where: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        image = _image(root / "images" / "train" / "a.png")
        label = root / "labels" / "train" / "a.txt"
        label.parent.mkdir(parents=True)
        label.write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
        (root / "data.yaml").write_text("names: [cocci, bacilli, spirilla]\n", encoding="utf-8")
        target = {"label": label, "data.yaml": root / "data.yaml", "image": image}[where]
        target.write_bytes(data)
        samples = _only_data_errors(lambda: read_yolo(root))
        if samples is not None:
            _check_boxes(samples)


YAML_TEXT = st.one_of(
    st.text(max_size=120),
    JSON_VALUES.map(json.dumps),
    st.integers(1, 2000).map(lambda n: "names: " + "[" * n + "a" + "]" * n),
    st.lists(
        st.sampled_from(["names:", "  - a", "\t- b", "train: images/train", "{", "'", "&x", "*x"]),
        max_size=6,
    ).map("\n".join),
)


@FUZZ
@given(text=YAML_TEXT)
def test_config_random_yaml(text: str) -> None:
    try:
        config_from_text(text)
    except MediscopeError as exc:
        assert str(exc).strip() and "\n" not in str(exc)


@FUZZ
@given(text=YAML_TEXT)
def test_yolo_random_data_yaml(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root / "images" / "train" / "a.png")
        label = root / "labels" / "train" / "a.txt"
        label.parent.mkdir(parents=True)
        label.write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
        (root / "data.yaml").write_text(text, encoding="utf-8")
        samples = _only_data_errors(lambda: read_yolo(root))
        if samples is not None:
            _check_boxes(samples)


@FUZZ
@given(document=coco_documents(), skip=st.booleans())
def test_coco_random_documents(document: dict[str, Any], skip: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, size in (("a.png", (32, 24)), ("b.png", (20, 40))):
            _image(root / name, *size)
        file = root / "annotations.json"
        file.write_text(json.dumps(document), encoding="utf-8")
        mode = "skip" if skip else "error"
        samples = _only_data_errors(lambda: read_coco_detection(file, on_bad_label=mode))
        if samples is not None:
            _check_boxes(samples)
        masks = _only_data_errors(lambda: coco_to_masks(document, where=str(file)))
        if masks is not None:
            assert all(m.dtype == np.uint8 and m.ndim == 2 for m in masks.values())


@FUZZ
@given(value=JSON_VALUES, depth=st.sampled_from([0, 0, 5, 3000]), data=st.binary(max_size=200))
def test_coco_random_json_and_bytes(value: Any, depth: int, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "annotations.json"
        text = "[" * depth + json.dumps(value) + "]" * depth  # deep nesting too
        file.write_text(text, encoding="utf-8")
        _only_data_errors(lambda: read_coco_detection(file))
        file.write_bytes(data)
        _only_data_errors(lambda: read_coco_detection(file))


@st.composite
def rle_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """RLE dicts whose runs often add up to the size (negative sizes included)."""
    size = draw(st.one_of(st.lists(st.integers(-3, 6), min_size=2, max_size=2), JSON_VALUES))
    numbers = isinstance(size, list) and len(size) == 2
    numbers = numbers and all(type(v) is int for v in size)
    pixels = abs(size[0] * size[1]) if numbers else 4
    fitting = st.lists(st.integers(0, pixels), max_size=4).map(
        lambda runs: [*runs, pixels - sum(runs)]
    )
    counts = draw(
        st.one_of(fitting, st.text(max_size=12), st.lists(st.integers(-3, 30), max_size=8))
    )
    return {"size": size, "counts": counts}


@FUZZ
@given(rle=rle_dicts())
def test_rle_decode(rle: dict[str, Any]) -> None:
    mask = _only_data_errors(lambda: rle_decode(rle))
    if mask is not None:
        assert mask.shape == tuple(rle["size"]) and set(np.unique(mask).tolist()) <= {0, 1}


@FUZZ
@given(
    polygon=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**40), 2**40),
        max_size=9,
    ),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
)
def test_polygons_to_mask(polygon: list[float], height: int, width: int) -> None:
    mask = _only_data_errors(lambda: polygons_to_mask([polygon], height, width))
    if mask is not None:
        assert mask.shape == (height, width) and set(np.unique(mask).tolist()) <= {0, 1}
        assert np.isfinite(polygon).all()  # NaN or infinity is refused, never drawn


@FUZZ
@given(text=voc_documents(), skip=st.booleans())
def test_voc_random_xml(text: str, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root / "a.png")
        (root / "a.xml").write_text(text, encoding="utf-8")
        mode = "skip" if skip else "error"
        samples = _only_data_errors(lambda: read_voc(root, classes=CLASSES, on_bad_label=mode))
        if samples is not None:
            _check_boxes(samples)
        samples = _only_data_errors(lambda: read_voc(root, on_bad_label=mode))  # names found
        if samples is not None:
            _check_boxes(samples)


@FUZZ
@given(data=st.binary(max_size=300))
def test_voc_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root / "a.png")
        (root / "a.xml").write_bytes(data)
        _only_data_errors(lambda: read_voc(root, classes=CLASSES))


MASK_MODES = ["L", "P", "RGB", "RGBA", "I;16", "1", "LA", "I", "F"]


@st.composite
def mask_images(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    mode = draw(st.sampled_from(MASK_MODES))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    channels = {"RGB": 3, "RGBA": 4, "LA": 2}.get(mode, 1)
    top = draw(st.sampled_from([1, 2, 3, 8, 255, 256, 65535]))
    values = draw(
        st.lists(
            st.integers(0, top),
            min_size=height * width * channels,
            max_size=height * width * channels,
        )
    )
    array = (
        np.asarray(values).reshape(height, width, channels).squeeze(axis=2 if channels == 1 else ())
    )
    return array, mode


def _save_mask(path: Path, array: np.ndarray, mode: str) -> None:
    """Saves ``array`` in the image mode ``mode`` (32-bit modes as TIFF: PNG has none)."""
    if mode == "I;16":
        Image.fromarray(array.astype(np.uint16)).save(path, format="PNG")
    elif mode in ("I", "F"):
        kind = np.int32 if mode == "I" else np.float32
        Image.fromarray(array.astype(kind)).save(path, format="TIFF")
    elif mode == "1":
        Image.fromarray(array.astype(bool)).save(path, format="PNG")
    else:
        base = "L" if mode == "P" else mode
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode=base)
        (image.convert("P") if mode == "P" else image).save(path, format="PNG")


@FUZZ
@given(
    mask=mask_images(),
    num_classes=st.integers(2, 5),  # data.classes holds two or more
    ignore_index=st.sampled_from([None, 0, 4, 255]),
    mode=st.sampled_from(["auto", "index", "binary", "palette"]),
    palette=st.sampled_from([None, [[0, 0, 0], [255, 0, 0]], {"background": [0, 0, 0]}]),
)
def test_read_mask_random_images(
    mask: tuple[np.ndarray, str],
    num_classes: int,
    ignore_index: int | None,
    mode: Any,
    palette: Any,
) -> None:
    array, image_mode = mask
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.png"
        _save_mask(path, array, image_mode)
        classes = ["background", *[f"c{i}" for i in range(1, num_classes)]]
        result = _only_data_errors(
            lambda: read_mask(
                path,
                num_classes=num_classes,
                palette=palette,
                classes=classes,
                ignore_index=ignore_index,
                mode=mode,
            )
        )
        if result is not None:
            assert result.dtype == np.uint8 and result.shape == array.shape[:2]
            allowed = set(range(num_classes)) | (
                {ignore_index} if ignore_index is not None else set()
            )
            assert set(np.unique(result).tolist()) <= allowed


@FUZZ
@given(data=st.binary(max_size=300))
def test_read_mask_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.png"
        path.write_bytes(data)
        _only_data_errors(lambda: read_mask(path, num_classes=2))


@FUZZ
@given(
    text=st.lists(
        st.lists(
            st.sampled_from(
                ["image", "mask", "split", "patient_id", "a.png", "m.png", "train", "x", "", '"']
            )
            | st.text(max_size=5),
            max_size=5,
        ).map(",".join),
        max_size=5,
    ).map("\n".join)
)
def test_masks_manifest_random_csv(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root / "a.png")
        Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "m.png")
        manifest = root / "manifest.csv"
        manifest.write_text(text, encoding="utf-8")
        found = _only_data_errors(lambda: read_masks(manifest, classes=["background", "lesion"]))
        if found is not None:
            assert all(
                Path(s.image).is_file() and Path(s.mask or "").is_file() for s in found.samples
            )


@FUZZ
@given(text=LABEL_TEXT, target=st.sampled_from(["coco", "voc"]))
def test_convert_random_yolo_labels(text: str, target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "yolo"
        _image(root / "images" / "train" / "a.png")
        (root / "labels" / "train").mkdir(parents=True)
        (root / "labels" / "train" / "a.txt").write_text(text, encoding="utf-8")
        (root / "data.yaml").write_text("names: [cocci, bacilli, spirilla]\n", encoding="utf-8")
        dst = Path(tmp) / "out"
        result = _only_data_errors(lambda: convert("yolo", target, root, dst))
        assert (result is not None) == dst.exists()  # complete or absent


# -- (b) round trips -----------------------------------------------------------------------

WRITERS: dict[str, tuple[Callable[..., Path], Callable[..., SampleSet]]] = {
    "yolo": (write_yolo, read_yolo),
    "coco": (write_coco_detection, read_coco_detection),
    "voc": (write_voc, read_voc),
}


@ROUND_TRIP
@given(images=box_sets(), fmt=st.sampled_from(sorted(WRITERS)))
def test_write_then_read_keeps_boxes(images: list[Any], fmt: str) -> None:
    write, read = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        before = _sample_set(Path(tmp), images)
        write(before, Path(tmp) / "out")
        after = read(Path(tmp) / "out")
        _assert_same_boxes(before, after)


@ROUND_TRIP
@given(
    images=box_sets(),
    pair=st.sampled_from([(a, b) for a in sorted(WRITERS) for b in sorted(WRITERS) if a != b]),
)
def test_convert_there_and_back_keeps_boxes(images: list[Any], pair: tuple[str, str]) -> None:
    first, second = pair
    write, read = WRITERS[first]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        before = _sample_set(root, images)
        write(before, root / "a")
        convert(first, second, root / "a", root / "b")
        convert(second, first, root / "b", root / "c")
        _assert_same_boxes(before, read(root / "c"))
        _assert_same_boxes(before, WRITERS[second][1](root / "b"))


@ROUND_TRIP
@given(
    names=st.lists(st.text(min_size=0, max_size=6), min_size=1, max_size=3, unique=True),
    fmt=st.sampled_from(sorted(WRITERS)),
)
def test_class_names_round_trip_or_are_refused(names: list[str], fmt: str) -> None:
    """A writer writes class names that read back the same, or refuses them first."""
    write, read = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        boxes = [[1.0, 1.0, 5.0, 6.0]] * len(names)
        before = _sample_set(root, [(16, 16, boxes, list(range(len(names))))])
        before.classes = names
        try:
            write(before, root / "out")
        except DataError:
            assert not (root / "out").exists()
            return
        _assert_same_boxes(before, read(root / "out"))


@st.composite
def region_masks(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
    """A mask with separated rectangles of classes 1..3, and each one's (class, box)."""
    height, width = draw(st.integers(6, 40)), draw(st.integers(6, 40))
    mask = np.zeros((height, width), np.uint8)
    regions: list[tuple[int, list[int]]] = []
    for _ in range(draw(st.integers(0, 5))):
        x1, y1 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        x2, y2 = draw(st.integers(x1 + 1, width)), draw(st.integers(y1 + 1, height))
        # One pixel of background around every region keeps regions apart (8-connected).
        if mask[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1].any():
            continue
        label = draw(st.integers(1, 3))
        mask[y1:y2, x1:x2] = label
        regions.append((label, [x1, y1, x2, y2]))
    return mask, regions


@ROUND_TRIP
@given(found=region_masks())
def test_masks_to_yolo_keeps_a_box_per_region(found: tuple[np.ndarray, list[Any]]) -> None:
    mask, regions = found
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "masks"
        height, width = mask.shape
        _image(root / "img" / "train" / "a.png", width, height)
        (root / "labels" / "train").mkdir(parents=True)
        Image.fromarray(mask).save(root / "labels" / "train" / "a.png")
        classes = ["background", "cocci", "bacilli", "spirilla"]
        convert("masks", "yolo", root, Path(tmp) / "yolo", ConvertOptions(classes=classes))
        (sample,) = read_yolo(Path(tmp) / "yolo").samples
        assert sample.boxes is not None and sample.box_labels is not None
        got = sorted(
            (int(label), [round(float(v), 4) for v in box])
            for box, label in zip(sample.boxes, sample.box_labels, strict=True)
        )
        expected = sorted((label - 1, [float(v) for v in box]) for label, box in regions)
        assert got == expected


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_round_trip_of_an_image_without_boxes(fmt: str, tmp_path: Path) -> None:
    write, read = WRITERS[fmt]
    before = _sample_set(tmp_path, [(20, 10, [], [])])
    write(before, tmp_path / "out")
    _assert_same_boxes(before, read(tmp_path / "out", classes=CLASSES))
