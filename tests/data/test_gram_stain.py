"""The synthetic Gram-stained smear detection dataset: layout, labels, realism checks, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from mediscope.data.formats.yolo import label_lines
from mediscope.data.synthetic.gram_stain import (
    CLASS_SHARES,
    GRAM_CLASSES,
    LABEL_NUMBER,
    GramStainSummary,
    Smear,
    generate_gram_stain,
    render_gram_smear,
)
from mediscope.errors import DataError

LINE = re.compile(r"^([0-3]) (\d\.\d{6,}) (\d\.\d{6,}) (\d\.\d{6,}) (\d\.\d{6,})$")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _smears(n: int, seed: int = 0, **kw: object) -> list[Smear]:
    return [render_gram_smear(np.random.default_rng([seed, i]), **kw) for i in range(n)]  # type: ignore[arg-type]


def _read_labels(path: Path) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LINE.match(line)
        assert match, f"{path.name}: bad line {line!r}"
        cls, *numbers = match.groups()
        cx, cy, w, h = (float(v) for v in numbers)
        rows.append((int(cls), cx, cy, w, h))
    return rows


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GramStainSummary]:
    dst = tmp_path_factory.mktemp("gram") / "smears"
    summary = generate_gram_stain(
        dst, count=12, test_count=4, size=160, seed=3, large=(400, 300), large_count=1
    )
    return dst, summary


# --- layout ---------------------------------------------------------------------------------


def test_layout_data_yaml_and_summary(small: tuple[Path, GramStainSummary]) -> None:
    dst, summary = small
    assert sorted(p.name for p in dst.iterdir()) == [
        "README.txt",
        "data.yaml",
        "images",
        "labels",
        "large",
    ]
    assert (dst / "large" / "classes.txt").is_file()
    data = yaml.safe_load((dst / "data.yaml").read_text(encoding="utf-8"))
    assert data["names"] == ["G-cocci", "G+cocci", "G-bacilli", "G+bacilli"] == list(GRAM_CLASSES)
    assert data["nc"] == 4
    assert "path" not in data  # the root is data.yaml's folder: a copy reads its own files
    assert (data["train"], data["test"]) == ("images/train", "images/test")

    assert summary.root == dst
    assert summary.images == {"train": 12, "test": 4, "large": 1}
    for split, folder, n in (
        ("train", dst / "images" / "train", 12),
        ("test", dst / "images" / "test", 4),
        ("large", dst / "large" / "images", 1),
    ):
        images = sorted(p.stem for p in folder.iterdir())
        labels_dir = folder.parent.parent / "labels" / folder.name
        if split == "large":
            labels_dir = dst / "large" / "labels"
        assert images == [f"{split}_{i:05d}" for i in range(n)]
        assert sorted(p.stem for p in labels_dir.iterdir()) == images
        counts = np.zeros(4, int)
        negatives = 0
        for stem in images:
            rows = _read_labels(labels_dir / f"{stem}.txt")
            negatives += not rows
            for cls, *_ in rows:
                counts[cls] += 1
        assert summary.objects[split] == dict(zip(GRAM_CLASSES, counts.tolist(), strict=True))
        assert summary.negatives[split] == negatives
    readme = (dst / "README.txt").read_text(encoding="utf-8")
    assert "seed: 3" in readme and "One box per bacterial cell" in readme


def test_images_are_rgb_pngs_of_the_requested_sizes(small: tuple[Path, GramStainSummary]) -> None:
    dst, _ = small
    img = cv2.imread(str(dst / "images" / "train" / "train_00000.png"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (160, 160, 3) and img.dtype == np.uint8
    big = cv2.imread(str(dst / "large" / "images" / "large_00000.png"), cv2.IMREAD_UNCHANGED)
    assert big is not None and big.shape == (300, 400, 3)
    assert _read_labels(dst / "large" / "labels" / "large_00000.txt")  # never a negative


def test_label_lines_parse_and_boxes_lie_inside_the_image(
    small: tuple[Path, GramStainSummary],
) -> None:
    dst, _ = small
    rows = [r for p in sorted(dst.rglob("labels/**/*.txt")) for r in _read_labels(p)]
    assert len(rows) > 20
    for _cls, cx, cy, w, h in rows:
        assert 0 < w <= 1 and 0 < h <= 1
        assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
        assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6


def test_label_lines_round_trip_pixel_boxes() -> None:
    boxes = np.array([[10, 20, 30, 60], [0, 0, 320, 240]], np.int32)
    text = label_lines(boxes, np.array([2, 0]), 320, 240, number=LABEL_NUMBER)
    assert text == "2 0.062500 0.166667 0.062500 0.166667\n0 0.500000 0.500000 1.000000 1.000000\n"
    assert label_lines(boxes[:0], np.array([], np.int64), 320, 240, number=LABEL_NUMBER) == ""


# --- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_images_do_not_depend_on_count(
    tmp_path: Path,
) -> None:
    generate_gram_stain(tmp_path / "a", count=3, test_count=1, size=96, seed=5)
    generate_gram_stain(tmp_path / "b", count=3, test_count=1, size=96, seed=5)
    generate_gram_stain(tmp_path / "c", count=4, test_count=0, size=96, seed=5)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # every file, data.yaml included
    for name in ("images/train/train_00002.png", "labels/train/train_00002.txt"):
        assert a[name] == c[name]
    assert "images/test/test_00000.png" not in c
    assert "test:" not in c["data.yaml"].decode()


def test_different_seeds_and_images_differ(tmp_path: Path) -> None:
    first = render_gram_smear(np.random.default_rng(1))
    again = render_gram_smear(np.random.default_rng(1))
    other = render_gram_smear(np.random.default_rng(2))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.boxes, again.boxes)
    assert np.abs(first.image.astype(int) - other.image.astype(int)).mean() > 5


# --- realism: classes, sizes, boxes on objects, negatives, debris ----------------------------


@pytest.fixture(scope="module")
def many() -> list[Smear]:
    return _smears(200, seed=11)


def test_class_shares_follow_the_clinical_bacteria_dataset(many: list[Smear]) -> None:
    counts = np.bincount(np.concatenate([s.classes for s in many]), minlength=4)
    shares = counts / counts.sum()
    assert counts.sum() > 800  # about 6 cells per image
    # 3,371 : 1,462 : 5,799 : 1,192 -> 0.285, 0.124, 0.490, 0.101
    assert np.allclose(shares, CLASS_SHARES, atol=0.05), shares
    assert counts.argmax() == 2 and counts.argmin() in (1, 3)


def test_negatives_exist_and_boxes_are_learnable_sizes(many: list[Smear]) -> None:
    negatives = sum(s.classes.size == 0 for s in many)
    assert 4 <= negatives <= 35  # about 8 %
    boxes = np.concatenate([s.boxes for s in many])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert 15 <= np.median(sides) <= 40  # typical box side 10-40 px at 320 px
    assert np.percentile(short, 5) >= 10
    assert np.percentile(sides, 95) <= 70


def test_boxes_lie_on_stained_objects(many: list[Smear]) -> None:
    dark_enough = 0
    total = 0
    for smear in many[:60]:
        grey = smear.image.astype(np.float32).mean(axis=2)
        background = float(np.median(grey))
        h, w = grey.shape
        for x0, y0, x1, y1 in smear.boxes.tolist():
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            inside = grey[y0:y1, x0:x1]
            total += 1
            # A cell darkens its box well below the smear around it.
            dark_enough += float(np.percentile(inside, 20)) < background - 25
    assert total > 200
    assert dark_enough / total > 0.97


def test_negatives_hold_debris_and_host_cells_but_no_boxes() -> None:
    smears = _smears(25, seed=4, negative=True)
    assert all(s.boxes.shape == (0, 4) and s.classes.size == 0 for s in smears)
    assert sum(len(s.distractors) for s in smears) >= 20
    # Debris is drawn: darker than the smear where it lies.
    darker = 0
    checked = 0
    for smear in smears:
        grey = smear.image.astype(np.float32).mean(axis=2)
        for x0, y0, x1, y1 in smear.distractors.tolist():
            if (x1 - x0) * (y1 - y0) > 40 * 40:
                continue  # host cells are large and pale
            checked += 1
            darker += float(grey[y0:y1, x0:x1].min()) < float(np.median(grey)) - 20
    assert checked >= 10 and darker / checked > 0.8


def test_debris_never_gets_a_box(many: list[Smear]) -> None:
    labelled_debris = 0
    debris = 0
    for smear in many:
        for d in smear.distractors.tolist():
            if (d[2] - d[0]) * (d[3] - d[1]) > 40 * 40:
                continue
            debris += 1
            labelled_debris += any(_iou(d, b) > 0.5 for b in smear.boxes.tolist())
    assert debris > 100
    assert labelled_debris / debris < 0.02  # only where a cell happens to lie on debris


def _iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def test_large_smears_are_dense_and_drawn_at_the_tile_magnification() -> None:
    smear = render_gram_smear(np.random.default_rng(0), (1200, 900), negative=False)
    tile = _smears(40, seed=9)
    assert smear.image.shape == (900, 1200, 3)
    assert len(smear.classes) > 30
    sides = np.median(np.maximum(*(smear.boxes[:, 2:] - smear.boxes[:, :2]).T))
    tile_boxes = np.concatenate([s.boxes for s in tile])
    tile_sides = np.median(np.maximum(*(tile_boxes[:, 2:] - tile_boxes[:, :2]).T))
    assert 0.7 < sides / tile_sides < 1.4


def _window_counts(smear: Smear, side: int) -> list[int]:
    """Cells (box centres) in each ``side`` px window of a tiling of the smear."""
    centres = (smear.boxes[:, :2] + smear.boxes[:, 2:]) / 2
    h, w = smear.image.shape[:2]
    return [
        int(((centres >= (x, y)) & (centres < (x + side, y + side))).all(axis=1).sum())
        for y in range(0, h - side + 1, side)
        for x in range(0, w - side + 1, side)
    ]


def test_fields_are_as_crowded_as_windows_of_a_whole_smear() -> None:
    # A detector that counts a whole smear in tiles meets its clumps: windows several
    # times as crowded as the smear's mean. Fields drawn as parts of such a smear show
    # that spread of crowding; whole small images (part_of=None) show much less.
    side, whole = 160, (800, 800)
    windows = np.array(
        [
            count
            for i in range(24)
            for count in _window_counts(
                render_gram_smear(
                    np.random.default_rng([7, i]), whole, magnification=0.5, negative=False
                ),
                side,
            )
        ]
    )
    fields = np.array(
        [
            len(s.classes)
            for s in _smears(
                400, seed=8, size=side, magnification=0.5, negative=False, part_of=whole
            )
        ]
    )

    def spread(counts: np.ndarray) -> tuple[float, float]:
        return float(counts.std() / counts.mean()), float(np.percentile(counts, 99) / counts.mean())

    (cv_fields, top_fields), (cv_windows, top_windows) = spread(fields), spread(windows)
    assert 0.8 < fields.mean() / windows.mean() < 1.25  # the same cells per area
    assert cv_fields > 0.75 * cv_windows  # 0.99 against 1.12; whole small images: 0.79
    assert top_fields > 0.75 * top_windows  # 99th percentile over the mean: 4.5 against 5.5; 3.8


def test_no_cell_is_drawn_mostly_hidden_under_others(monkeypatch: pytest.MonkeyPatch) -> None:
    # A crowded smear (six times the usual groups): cells touch and overlap a little, but
    # none lies more than 30 % under later cells, nor covers 30 % of itself with earlier ones.
    from mediscope.data.synthetic import gram_stain as gs
    from mediscope.data.synthetic import stain as st

    monkeypatch.setattr(gs, "_GROUPS_PER_UM2", 6 * gs._GROUPS_PER_UM2)
    rng = np.random.default_rng(4)
    canvas = gs._Canvas(st.make_background(640, 640, rng, px_per_um=20.0), 20.0)
    boxes: list = []
    classes: list = []
    gs._draw_bacteria(canvas, rng, boxes, classes, None)
    ids, shown = np.unique(canvas.cells[canvas.cells > 0], return_counts=True)
    assert len(boxes) == len(canvas.areas) - 1 > 60
    assert list(ids) == list(range(1, len(canvas.areas)))  # every labelled cell shows
    assert all(n >= 0.7 * canvas.areas[k] for k, n in zip(ids, shown, strict=True))
    overlapping = sum(n < canvas.areas[k] for k, n in zip(ids, shown, strict=True))
    assert overlapping > 5  # touching and overlapping cells remain


def test_crowding_draws_more_cells_per_field_and_leaves_large_smears_alone(
    tmp_path: Path,
) -> None:
    # Twice the crowding: about twice the groups in every field (fewer than twice the
    # cells, as cells that would hide each other are left out); the large smears, which a
    # detector counts, are drawn as at the default, to the byte.
    args = {"count": 40, "test_count": 0, "size": 128, "seed": 3, "large": (300, 200)}
    base = generate_gram_stain(tmp_path / "one", large_count=1, **args)
    dense = generate_gram_stain(tmp_path / "two", large_count=1, crowding=2.0, **args)
    cells = [sum(s.objects["train"].values()) for s in (base, dense)]
    assert 1.5 < cells[1] / cells[0] < 2.1, cells
    assert dense.images == base.images
    for folder in ("large/images", "large/labels"):
        for one in sorted((tmp_path / "one" / folder).iterdir()):
            assert one.read_bytes() == (tmp_path / "two" / folder / one.name).read_bytes()
    assert (
        "crowding of the train and test images: 2 x"
        in (tmp_path / "two" / "README.txt").read_text()
    )
    assert "crowding" not in (tmp_path / "one" / "README.txt").read_text()
    # the default crowding is the generator as it was: the same seed, the same files
    again = generate_gram_stain(tmp_path / "three", large_count=1, crowding=1.0, **args)
    assert again.objects == base.objects


def test_crowding_must_be_positive() -> None:
    with pytest.raises(DataError, match="crowding must be positive"):
        render_gram_smear(np.random.default_rng(0), 96, crowding=0.0)
    with pytest.raises(DataError, match="crowding must be positive"):
        render_gram_smear(np.random.default_rng(0), 96, crowding=float("nan"))


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count must be at least 1"),
        ({"test_count": -1}, "test_count must be 0 or more"),
        ({"size": 32}, "size must be at least 64"),
        ({"seed": -1}, "seed must be 0 or more"),
        ({"large": (100, 2000), "large_count": 1}, "large must be"),
        ({"large": (2000, 1500)}, "large_count of 1 or more"),
        ({"large_count": -2}, "large_count must be 0 or more"),
        ({"crowding": 0.0}, "crowding must be positive"),
        ({"crowding": float("nan")}, "crowding must be positive"),
        ({"crowding": float("inf")}, "crowding must be positive"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_gram_stain(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_gram_stain(dst, count=1, test_count=0, size=64)
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
    summary = generate_gram_stain(dst, count=1, test_count=0, size=64, overwrite=True)
    assert summary.images == {"train": 1}
    assert not (dst / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_large_count_alone_uses_the_default_size(tmp_path: Path) -> None:
    summary = generate_gram_stain(tmp_path / "d", count=1, test_count=0, size=64, large_count=1)
    big = cv2.imread(str(tmp_path / "d" / "large" / "images" / "large_00000.png"))
    assert big.shape == (1500, 2000, 3)
    assert summary.images["large"] == 1 and sum(summary.objects["large"].values()) > 20
    # the large smears read on their own as a YOLO dataset (classes.txt beside them)
    from mediscope.data.formats.yolo import read_yolo

    large = read_yolo(tmp_path / "d" / "large")
    assert large.classes == ["G-cocci", "G+cocci", "G-bacilli", "G+bacilli"]
    assert len(large) == 1 and len(large.samples[0].boxes) == sum(summary.objects["large"].values())


# --- command line ---------------------------------------------------------------------------


def test_cli_writes_the_dataset_and_prints_counts(cli, tmp_path: Path) -> None:
    dst = tmp_path / "gs"
    result = cli(
        "data", "synth", "gram-stain", dst, "--count", "5", "--test-count", "2",
        "--size", "128", "--seed", "1", "--large", "300x200", "--large-count", "1",
    )  # fmt: skip
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["train", "test", "large", "data"]
    assert re.fullmatch(
        r"train: 5 images \(\d+ without bacteria\), \d+ boxes \(G-cocci \d+, G\+cocci \d+, "
        r"G-bacilli \d+, G\+bacilli \d+\)",
        lines[0],
    )
    assert lines[-1] == f"data: {dst}"
    assert cv2.imread(str(dst / "large" / "images" / "large_00000.png")).shape == (200, 300, 3)
    assert cli("data", "synth", "gram-stain", "--help").code == 0


def test_cli_whole_images_are_smears_of_their_own(cli, tmp_path: Path) -> None:
    # --whole-images draws each image as render_gram_smear does with part_of=None; the
    # default draws fields of a 2000 x 1500 smear (at 320 px), whose cells differ.
    args = ("--count", "6", "--test-count", "0", "--size", "96", "--seed", "2")
    assert cli("data", "synth", "gram-stain", tmp_path / "w", "--whole-images", *args).code == 0
    assert cli("data", "synth", "gram-stain", tmp_path / "f", *args).code == 0
    magnification = 96 / 320
    labels = {"w": [], "f": []}
    for i in range(6):
        rng = [np.random.default_rng(np.random.SeedSequence([0x47525354, 2, 0, i])) for _ in "wf"]
        whole = render_gram_smear(rng[0], 96, magnification=magnification)
        field = render_gram_smear(rng[1], 96, magnification=magnification, part_of=(600, 450))
        for key, smear in (("w", whole), ("f", field)):
            text = (tmp_path / key / "labels" / "train" / f"train_{i:05d}.txt").read_text()
            assert text == label_lines(smear.boxes, smear.classes, 96, 96, number=LABEL_NUMBER)
            labels[key].append(text)
    assert labels["w"] != labels["f"]


def test_cli_errors_are_one_line_with_exit_2(cli, tmp_path: Path) -> None:
    dst = tmp_path / "full"
    dst.mkdir()
    (dst / "x").write_text("x")
    result = cli("data", "synth", "gram-stain", dst, "--count", "1")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"error: {dst}: folder exists and is not empty; choose another folder or pass "
        "overwrite=True (--overwrite)"
    ]
    bad = cli("data", "synth", "gram-stain", tmp_path / "new", "--large", "big")
    assert bad.code == 2 and "WIDTHxHEIGHT" in bad.err
    assert not (tmp_path / "new").exists()
    crowded = cli("data", "synth", "gram-stain", tmp_path / "new", "--crowding", "-1")
    assert crowded.code == 2
    assert crowded.err.strip() == "error: crowding: crowding must be positive, got -1.0; e.g. 2"
    assert not (tmp_path / "new").exists()
    small = cli("data", "synth", "gram-stain", tmp_path / "new", "--size", "20")
    assert small.code == 2
    assert small.err.strip() == "error: size: size must be at least 64 px, got 20"
