"""COCO and masks: run-length encoding, polygons, and masks → COCO → masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.formats.coco import (
    coco_classes,
    coco_to_masks,
    mask_to_polygons,
    masks_to_coco,
    polygons_to_mask,
    read_coco,
    rle_counts,
    rle_decode,
    rle_encode,
    rle_from_string,
    rle_to_string,
    write_coco,
    write_mask_png,
)
from mediscope.data.samples import Sample
from mediscope.errors import DataError

# Column-major: 0 1 0 | 1 1 0 | 0 0 1 → runs 0x1, 1x1, 0x1, 1x2, 0x3, 1x1.
TINY = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)
TINY_COUNTS = [1, 1, 1, 2, 3, 1]
# Counts 1, 1, 1 as is; then 2-1 = 1, 3-1 = 2, 1-2 = -1 (5 bits 11111, sign bit set) → "O".
TINY_STRING = "11112O"


def test_rle_of_a_tiny_mask_by_hand() -> None:
    assert rle_counts(TINY) == TINY_COUNTS
    assert rle_encode(TINY, compress=False) == {"size": [3, 3], "counts": TINY_COUNTS}
    assert rle_encode(TINY) == {"size": [3, 3], "counts": TINY_STRING}
    assert rle_decode({"size": [3, 3], "counts": TINY_STRING}).tolist() == TINY.tolist()
    assert rle_decode({"size": [3, 3], "counts": TINY_COUNTS}).tolist() == TINY.tolist()


def test_rle_edge_cases_by_hand() -> None:
    # 100 = 0b11_00100: low group 4 with "more" (4 + 32 + 48 = 84, 'T'), then 3 ('3').
    assert rle_encode(np.zeros((10, 10)))["counts"] == "T3"
    # A mask starting with the object starts with an empty background run.
    assert rle_encode(np.ones((2, 2)), compress=False)["counts"] == [0, 4]
    assert rle_encode(np.ones((2, 2)))["counts"] == "04"
    # Non-square: 2 rows x 3 columns, read down the columns.
    mask = np.array([[1, 0, 0], [1, 0, 1]])
    assert rle_counts(mask) == [0, 2, 3, 1]
    assert rle_decode(rle_encode(mask)).tolist() == mask.tolist()


def test_compressed_counts_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        counts = rng.integers(0, 5000, size=int(rng.integers(1, 40))).tolist()
        counts[1:] = [max(c, 1) for c in counts[1:]]
        assert rle_from_string(rle_to_string(counts)) == counts


def test_bad_rle_is_a_data_error() -> None:
    with pytest.raises(DataError, match="cover 8 pixels, the size is 3 x 3"):
        rle_decode({"size": [3, 3], "counts": [1, 7]})
    with pytest.raises(DataError, match="end in the middle"):
        rle_decode({"size": [3, 3], "counts": "T"})
    with pytest.raises(DataError, match="character"):
        rle_decode({"size": [3, 3], "counts": "11 1"})
    with pytest.raises(DataError, match="size must be"):
        rle_decode({"size": [3], "counts": "11"})


def test_cross_check_with_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = (rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < 0.4).astype(
            np.uint8
        )
        theirs = mask_api.encode(np.asfortranarray(mask))
        assert rle_encode(mask)["counts"] == theirs["counts"].decode("ascii")
        assert rle_decode(theirs).tolist() == mask.tolist()


def tricky_mask() -> np.ndarray:
    """Holes, touching classes, single pixels and objects on every edge."""
    mask = np.zeros((20, 24), dtype=np.uint8)
    mask[2:12, 2:12] = 1  # a square of class 1 ...
    mask[5:8, 5:8] = 0  # ... with a hole
    mask[6, 6] = 2  # and a class-2 pixel inside the hole
    mask[2:12, 12:16] = 2  # class 2 touching class 1
    mask[0, 0] = mask[19, 23] = mask[0, 23] = 3  # single pixels in the corners
    mask[19, 5:20] = 1  # along the bottom edge
    mask[8:19, 23] = 2  # along the right edge
    mask[15, 3] = mask[16, 4] = 1  # diagonal neighbours: one 8-connected region
    return mask


def write_dataset(root: Path, masks: list[np.ndarray]) -> list[Sample]:
    samples = []
    for i, mask in enumerate(masks):
        image, mask_file = root / f"img/case{i}.jpg", root / f"labels/case{i}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        mask_file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((*mask.shape, 3), dtype=np.uint8)).save(image)
        Image.fromarray(mask).save(mask_file)
        samples.append(Sample(image=str(image), mask=str(mask_file)))
    return samples


CLASSES = ["background", "a", "b", "c"]


def test_masks_to_coco_rle_round_trip_is_pixel_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = [tricky_mask()]
    for _ in range(8):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        noise = rng.integers(0, 4, (h, w)).astype(np.uint8)
        blobs = np.kron(rng.integers(0, 4, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4)))[:h, :w]
        masks += [noise, blobs.astype(np.uint8)]
    masks.append(np.zeros((7, 9), dtype=np.uint8))  # nothing annotated
    samples = write_dataset(tmp_path, masks)
    coco = masks_to_coco(samples, CLASSES)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert [c["name"] for c in coco["categories"]] == ["a", "b", "c"]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in coco["annotations"])
    back = coco_to_masks(coco, classes=CLASSES)
    assert list(back) == [f"case{i}.jpg" for i in range(len(masks))]
    for mask, decoded in zip(masks, back.values(), strict=True):
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, mask)


def test_one_annotation_per_connected_region(tmp_path: Path) -> None:
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[0:2, 0:2] = 1  # region 1 of class a
    mask[3, 4] = 1  # region 2 of class a
    mask[2:4, 0:3] = 2  # class b, touching region 1 (another class: another annotation)
    coco = masks_to_coco(
        (["x.jpg"], ["x.png"]), CLASSES[:3], decode=lambda _: mask, image_root=None
    )
    annotations = coco["annotations"]
    got = [(a["category_id"], a["area"], a["bbox"]) for a in annotations]
    assert got == [(1, 4, [0, 0, 2, 2]), (1, 1, [4, 3, 1, 1]), (2, 6, [0, 2, 3, 2])]
    assert [a["id"] for a in annotations] == [1, 2, 3]
    assert {a["image_id"] for a in annotations} == {1} and coco["images"][0]["id"] == 1


@pytest.fixture(autouse=True)
def _images_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``x.jpg`` for the tests that decode masks from memory: a 5 x 4 image."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")


def test_polygons_are_exact_without_holes_and_fill_holes() -> None:
    mask = np.zeros((12, 14), dtype=np.uint8)
    mask[1:5, 1:9] = 1
    mask[6:11, 0:3] = 1  # on the left edge
    mask[11, 13] = 1  # one pixel in the corner
    mask[8, 6:13] = 1  # a one-pixel line
    assert np.array_equal(polygons_to_mask(mask_to_polygons(mask), 12, 14), mask)
    polygon = mask_to_polygons(np.ones((1, 1)))[0]
    assert polygon == [0.5, 0.5] * 3  # pixel centre, three times
    ring = np.ones((5, 5), dtype=np.uint8)
    ring[2, 2] = 0
    assert polygons_to_mask(mask_to_polygons(ring), 5, 5).all()  # the hole is lost


def test_polygon_encoding_keeps_objects_inside_holes(tmp_path: Path) -> None:
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[1:8, 1:8] = 1
    mask[3:6, 3:6] = 2  # class b fills the hole of class a
    Image.fromarray(np.zeros((9, 9, 3), dtype=np.uint8)).save(tmp_path / "y.jpg")
    coco = masks_to_coco(
        (["y.jpg"], ["y.png"]), CLASSES[:3], encoding="polygon", decode=lambda _: mask
    )
    assert all(isinstance(a["segmentation"], list) for a in coco["annotations"])
    assert np.array_equal(coco_to_masks(coco)["y.jpg"], mask)


def test_coco_from_elsewhere(tmp_path: Path) -> None:
    rle = {"size": [3, 3], "counts": TINY_COUNTS}  # uncompressed, as crowd regions are
    square = [1.5, 1.5, 2.5, 1.5, 2.5, 2.5, 1.5, 2.5]  # pixels (1, 1) to (2, 2)
    coco = {
        "images": [{"id": 7, "file_name": "dir/a.png", "height": 3, "width": 3}],
        "categories": [{"id": 9, "name": "b"}, {"id": 4, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 4, "iscrowd": 1, "segmentation": rle},
            {"id": 2, "image_id": 7, "category_id": 9, "segmentation": [square]},
        ],
    }
    assert coco_classes(coco) == ["background", "a", "b"]  # by category id
    expected = TINY.copy()
    expected[1:3, 1:3] = 2  # the later annotation wins
    assert coco_to_masks(coco)["dir/a.png"].tolist() == expected.tolist()
    # Given classes fix the indices by name.
    remapped = coco_to_masks(coco, classes=["bg", "b", "a"])["dir/a.png"]
    assert remapped.tolist() == np.where(expected == 0, 0, 3 - expected).tolist()
    with pytest.raises(DataError, match="category 'b' is not one of the classes"):
        coco_classes(coco, ["background", "a", "c"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_id": 8}, r"annotations\[0\]: image_id 8 is not in images"),
        ({"category_id": 2}, r"annotations\[0\]: category_id 2 is not in categories"),
        ({"segmentation": {"size": [4, 3], "counts": "11112O"}}, "RLE size .4, 3. is not"),
        ({"segmentation": None}, "no segmentation"),
        ({"segmentation": [[1, 2, 3]]}, "a polygon must be"),
    ],
)
def test_malformed_annotations(change: dict[str, object], message: str) -> None:
    rle = {"size": [3, 3], "counts": TINY_STRING}
    annotation = {"id": 1, "image_id": 7, "category_id": 1, "segmentation": rle}
    annotation.update(change)
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "height": 3, "width": 3}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [annotation],
    }
    with pytest.raises(DataError, match=message):
        coco_to_masks(coco, where="in.json")


def test_missing_lists_and_fields() -> None:
    with pytest.raises(DataError, match="no 'images' list"):
        coco_to_masks({"categories": [], "annotations": []})
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 3}], "categories": []}
    with pytest.raises(DataError, match=r"images\[0\]: 'height' missing"):
        coco_to_masks({**coco, "annotations": []})


def test_size_mismatch_between_image_and_mask(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mask is 3 x 2, its image 5 x 4") as info:
        masks_to_coco((["x.jpg"], ["m.png"]), CLASSES, decode=lambda _: np.zeros((2, 3), np.uint8))
    assert info.value.where == "m.png"


def test_files(tmp_path: Path) -> None:
    mask = tricky_mask()
    write_mask_png(tmp_path / "out" / "m.png", mask)
    with Image.open(tmp_path / "out" / "m.png") as image:
        assert image.mode == "L" and np.array_equal(np.asarray(image), mask)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.png"]  # no temporary left
    write_coco(tmp_path / "c.json", {"images": [], "annotations": [], "categories": []})
    assert read_coco(tmp_path / "c.json")["images"] == []
    (tmp_path / "bad.json").write_text('{"images": [\n  1,\n')
    with pytest.raises(DataError, match="not valid JSON") as info:
        read_coco(tmp_path / "bad.json")
    assert info.value.where == f"{tmp_path / 'bad.json'}:3"
