"""Oxford-IIIT Pet: fetched from a local server through the catalog entry, then prepared.

A tiny fake copy of the two published archives (JPEGs, trimaps, list.txt, trainval.txt,
test.txt, plus the odd files of the real set) is served on 127.0.0.1; the catalog URLs
are pointed there with ``mirror=`` and the checksums replaced by those of the fakes.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mediscope.data.catalog import DatasetEntry, get_dataset
from mediscope.data.download import MARKER, Timeouts, fetch_entry
from mediscope.data.formats.masks import read_masks
from mediscope.data.prepare.oxford_pets import (
    CLASSES,
    IGNORE_INDEX,
    prepare_pets,
    read_split_lists,
    trimap_to_mask,
)
from mediscope.errors import DataError, DownloadError

FAST = Timeouts(connect=2.0, read=2.0)
H, W = 16, 32  # trimap and image size; 256 / 16 and 256 / 32 are whole factors

# name -> species (1 cat, 2 dog); list order is the file order of trainval.txt.
TRAINVAL = [
    ("Abyssinian_1", 1),
    ("Abyssinian_2", 1),
    ("Bengal_1", 1),
    ("Bombay_1", 1),  # no trimap: skipped
    ("Egyptian_Mau_1", 1),  # val (5th line); stored as RGBA PNG bytes, as a few real files are
    ("beagle_1", 2),
    ("beagle_2", 2),
    ("boxer_1", 2),
    ("boxer_2", 2),
    ("pug_1", 2),  # val (10th line)
]
TEST = [("Persian_1", 1), ("Persian_2", 1), ("samoyed_1", 2), ("samoyed_2", 2)]
NO_TRIMAP = {"Bombay_1"}
RGBA_PNG = {"Egyptian_Mau_1"}


# --- a fake copy of the archives ----------------------------------------------------------


def trimap_for(index: int) -> np.ndarray:
    """Background 2, a pet block 1 surrounded by a border ring 3, shifted per image."""
    trimap = np.full((H, W), 2, dtype=np.uint8)
    left = 4 + index % 8
    trimap[3:13, left : left + 14] = 3
    trimap[5:11, left + 2 : left + 12] = 1
    return trimap


def photo_for(index: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    return buffer.getvalue()


def tar_gz(members: dict[str, bytes], *, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def list_lines(rows: list[tuple[str, int]]) -> str:
    return "".join(
        f"{name} {i + 1} {species} {i % 3 + 1}\n" for i, (name, species) in enumerate(rows)
    )


def fake_archives(test_list: str | None = None) -> dict[str, bytes]:
    """``images.tar.gz`` and ``annotations.tar.gz`` as the publisher lays them out."""
    everything = TRAINVAL + TEST
    images: dict[str, bytes] = {"images/Abyssinian_1.mat": b"MATLAB 5.0 MAT-file"}
    annotations: dict[str, bytes] = {}
    for index, (name, _species) in enumerate(everything):
        if name in RGBA_PNG:
            images[f"images/{name}.jpg"] = encode(photo_for(index), "PNG", "RGBA")
        else:
            images[f"images/{name}.jpg"] = encode(photo_for(index), "JPEG")
        if name not in NO_TRIMAP:
            annotations[f"annotations/trimaps/{name}.png"] = encode(trimap_for(index), "PNG")
    annotations["annotations/trimaps/._Abyssinian_1.png"] = b"\x00\x05\x16\x07 AppleDouble"
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
    annotations["annotations/list.txt"] = (header + list_lines(everything)).encode()
    annotations["annotations/trainval.txt"] = list_lines(TRAINVAL).encode()
    annotations["annotations/test.txt"] = (test_list or list_lines(TEST)).encode()
    # The published images.tar.gz is said to be an uncompressed tar despite its name.
    images_tar = tar_gz(images, compress=False)
    return {"images.tar.gz": images_tar, "annotations.tar.gz": tar_gz(annotations)}


def expected_mask(name: str, *, border: str = "ignore") -> np.ndarray:
    everything = TRAINVAL + TEST
    index = [n for n, _ in everything].index(name)
    species = dict(everything)[name]
    trimap = trimap_for(index)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[trimap == 1] = species  # cat 1, dog 2
    mask[trimap == 3] = 255 if border == "ignore" else species
    return mask


# --- the local server ---------------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """Serves ``tmp_path/www`` on 127.0.0.1; yields its URL and the paths requested."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MEDISCOPE_DOWNLOAD_BASE", raising=False)
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    httpd.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.paths  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def published_entry(tmp_path: Path, *, damage: bool = False) -> DatasetEntry:
    """The catalog entry with the fakes' checksums; the fakes put where its URLs point."""
    archives = fake_archives()
    entry = get_dataset("oxford-pets")
    resources = []
    for resource in entry.resources:
        data = archives[resource.url.rsplit("/", 1)[-1]]
        path = tmp_path / "www" / resource.url.split("://", 1)[1].split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        md5 = hashlib.md5(data + (b"x" if damage else b"")).hexdigest()
        resources.append(replace(resource, md5=md5, size=len(data)))
    return replace(entry, resources=tuple(resources))


def split_of(root: Path) -> dict[str, list[str]]:
    return {
        s: sorted(p.stem for p in (root / "img" / s).iterdir()) for s in ("train", "val", "test")
    }


# --- tests --------------------------------------------------------------------------------


def test_catalog_entry_has_the_published_urls_and_md5s() -> None:
    entry = get_dataset("oxford-pets")
    assert [(r.url, r.md5) for r in entry.resources] == [
        (
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
            "5c4f3ee8e5d25df40f4fd59a7f44e54c",
        ),
        (
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
            "95a8c909bbe2e81eed6a22bccdf3f68f",
        ),
    ]
    assert entry.licence == "CC BY-SA 4.0" and entry.prepare


def test_fetch_prepares_cat_and_dog_masks_in_mmseg_layout(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _paths = server
    dst = tmp_path / "data"
    messages: list[str] = []

    result = fetch_entry(
        published_entry(tmp_path), dst, mirror=url, timeouts=FAST, log=messages.append
    )

    root = dst / "oxford-pets"
    assert result.path == root and result.downloaded and result.verified
    assert sorted(p.name for p in dst.iterdir()) == ["oxford-pets"]  # archives and temp gone
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [MARKER, "README.txt", "classes.txt", "img", "labels", "skipped.txt"]
    )
    assert (root / "classes.txt").read_text().split() == ["background", "cat", "dog"]
    assert "255" in (root / "README.txt").read_text()
    # Lines 5 and 10 of trainval.txt are val; Bombay_1 has no trimap.
    assert split_of(root) == {
        "train": [
            "Abyssinian_1",
            "Abyssinian_2",
            "Bengal_1",
            "beagle_1",
            "beagle_2",
            "boxer_1",
            "boxer_2",
        ],
        "val": ["Egyptian_Mau_1", "pug_1"],
        "test": ["Persian_1", "Persian_2", "samoyed_1", "samoyed_2"],
    }
    assert (root / "skipped.txt").read_text() == "Bombay_1\tno trimap\n"
    assert any("skipped 1 (no trimap)" in m for m in messages)
    for split, names in split_of(root).items():
        for name in names:
            with Image.open(root / "img" / split / f"{name}.jpg") as img:
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (256, 256))
            with Image.open(root / "labels" / split / f"{name}.png") as img:
                assert (img.mode, img.size) == ("L", (256, 256))
                mask = np.array(img)
            # Nearest-neighbour upscaling by 16 x 8 repeats each trimap pixel exactly.
            np.testing.assert_array_equal(
                mask, np.kron(expected_mask(name), np.ones((16, 8), np.uint8))
            )
    cat = np.array(Image.open(root / "labels" / "train" / "Bengal_1.png"))
    dog = np.array(Image.open(root / "labels" / "test" / "samoyed_1.png"))
    assert set(np.unique(cat)) == {0, 1, 255} and set(np.unique(dog)) == {0, 2, 255}


def test_the_masks_format_reads_the_prepared_folder(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _paths = server
    fetch_entry(published_entry(tmp_path), tmp_path / "data", mirror=url, timeouts=FAST)

    samples = read_masks(tmp_path / "data" / "oxford-pets", img_suffix=".jpg")

    assert samples.classes == list(CLASSES)
    assert len(samples) == 13
    assert sorted(s.split or "" for s in samples.samples).count("val") == 2


def test_second_fetch_is_a_no_op(server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, paths = server
    entry = published_entry(tmp_path)
    dst = tmp_path / "data"
    fetch_entry(entry, dst, mirror=url, timeouts=FAST)
    mask = dst / "oxford-pets" / "labels" / "test" / "Persian_1.png"
    stamp = mask.stat().st_mtime_ns
    requests = len(paths)

    again = fetch_entry(entry, dst, mirror=url, timeouts=FAST)

    assert not again.downloaded and again.verified
    assert len(paths) == requests == 2 and mask.stat().st_mtime_ns == stamp


def test_checksum_mismatch_fails_and_leaves_nothing(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _paths = server
    dst = tmp_path / "data"

    with pytest.raises(DownloadError, match="checksum mismatch for oxford-pets-images.tar.gz"):
        fetch_entry(published_entry(tmp_path, damage=True), dst, mirror=url, timeouts=FAST)

    assert list(dst.iterdir()) == []


def test_a_failed_preparation_leaves_no_dataset_and_keeps_the_archives(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _paths = server
    entry = published_entry(tmp_path)
    data = fake_archives(test_list="Persian_1 24 cat 1\n")["annotations.tar.gz"]
    path = tmp_path / "www" / "~vgg" / "data" / "pets" / "data" / "annotations.tar.gz"
    path.write_bytes(data)
    resources = (entry.resources[0], replace(entry.resources[1], md5=hashlib.md5(data).hexdigest()))
    dst = tmp_path / "data"

    with pytest.raises(DataError, match=r"test.txt:1: expected '<name> <class id> <species 1\|2>"):
        fetch_entry(replace(entry, resources=resources), dst, mirror=url, timeouts=FAST)

    # No dataset and no temporary folder; the verified archives stay for the next run.
    assert sorted(p.name for p in dst.iterdir()) == [
        "oxford-pets-annotations.tar.gz",
        "oxford-pets-images.tar.gz",
    ]


def unpack_fakes(folder: Path) -> Path:
    for data in fake_archives().values():
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            tf.extractall(folder, filter="data")
    return folder


def test_original_sizes_and_border_as_pet(tmp_path: Path) -> None:
    src = unpack_fakes(tmp_path / "pets")

    summary = prepare_pets(src, tmp_path / "out", size=None, border="pet")

    root = tmp_path / "out"
    assert summary.counts == {"train": 7, "val": 2, "test": 4}
    assert summary.skipped == {"no trimap": 1}
    assert summary.pixels["ignore"] == 0
    assert sum(summary.pixels.values()) == 13 * H * W
    mask = np.array(Image.open(root / "labels" / "train" / "boxer_1.png"))
    np.testing.assert_array_equal(mask, expected_mask("boxer_1", border="pet"))
    assert set(np.unique(mask)) == {0, 2}
    # A plain RGB JPEG is copied byte for byte; the RGBA PNG in disguise becomes RGB JPEG.
    original = (src / "images" / "boxer_1.jpg").read_bytes()
    assert (root / "img" / "train" / "boxer_1.jpg").read_bytes() == original
    with Image.open(root / "img" / "val" / "Egyptian_Mau_1.jpg") as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (W, H))


def test_val_every_and_species_from_list_txt(tmp_path: Path) -> None:
    annotations = unpack_fakes(tmp_path / "pets") / "annotations"
    # list.txt wins over the split list's own species column.
    (annotations / "trainval.txt").write_text(
        "Abyssinian_1 1 2 1\nbeagle_1 2 2 1\nbeagle_2 2 2 1\n"
    )

    samples = read_split_lists(annotations, val_every=2)

    assert [(s.name, s.species, s.split) for s in samples[:3]] == [
        ("Abyssinian_1", 1, "train"),
        ("beagle_1", 2, "val"),
        ("beagle_2", 2, "train"),
    ]


def test_trimap_to_mask_by_hand() -> None:
    trimap = np.array([[1, 2, 3], [3, 1, 2]], dtype=np.uint8)

    assert trimap_to_mask(trimap, 1).tolist() == [[1, 0, 255], [255, 1, 0]]
    assert trimap_to_mask(trimap, 2).tolist() == [[2, 0, 255], [255, 2, 0]]
    assert trimap_to_mask(trimap, 2, border="pet").tolist() == [[2, 0, 2], [2, 2, 0]]
    assert IGNORE_INDEX == 255
    with pytest.raises(DataError, match=r"trimap values \[0, 1\]"):
        trimap_to_mask(np.array([[0, 1]]), 1)


def test_import_command_from_the_archives(tmp_path: Path, cli: Callable[..., Any]) -> None:
    src = tmp_path / "downloads"
    src.mkdir()
    for name, data in fake_archives().items():
        (src / name).write_bytes(data)
    dst = tmp_path / "pets"

    result = cli("data", "import", "oxford-pets", src, dst, "--size", "64", "--val-every", "3")

    assert result.code == 0, result.err
    assert "train: 6 images" in result.out and "val: 3 images" in result.out
    assert "skipped: 1 no trimap" in result.out
    with Image.open(dst / "labels" / "val" / "Bengal_1.png") as img:
        assert img.size == (64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads", "pets"]  # no temp folder

    again = cli("data", "import", "oxford-pets", src, dst)

    assert again.code == 2 and again.err.count("error:") == 1
    assert "folder exists and is not empty" in again.err


def test_import_command_without_a_copy(tmp_path: Path, cli: Callable[..., Any]) -> None:
    (tmp_path / "empty").mkdir()

    result = cli("data", "import", "oxford-pets", tmp_path / "empty", tmp_path / "out")

    assert result.code == 2 and result.err.startswith("error: ")
    assert "no Oxford-IIIT Pet copy" in result.err
    assert not (tmp_path / "out").exists()
