"""Clinical Bacteria DataSet: fetched from a local server through the catalog, then arranged.

A tiny fake copy of the two archives (DeepDataSet.zip with 640DataSet, DetectionDataSet
and SegmentationDataSet; RawImageDataSet.zip) is served on 127.0.0.1; the catalog URLs are
pointed there with ``mirror=`` or ``MEDISCOPE_DOWNLOAD_BASE``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from mediscope.data.catalog import DatasetEntry, get_dataset
from mediscope.data.download import MARKER, Timeouts, fetch, fetch_entry
from mediscope.data.prepare.clinical_bacteria import (
    CLASSES,
    find_detection_folder,
    prepare_fetched,
    read_split_lists,
)
from mediscope.errors import DataError, DownloadError

FAST = Timeouts(connect=2.0, read=2.0)
RECORD = "records/10526360/files"
WIN = "G:\\qxz\\MyProject\\301Bacteria\\DataSet\\PaperDataSet301\\images\\"

# crop -> label lines; c006 has no label file (a crop without bacteria)
LABELS = {
    "c001": "0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n",
    "c002": "2 0.3 0.4 0.05 0.2\n",
    "c003": "1 0.5 0.5 0.1 0.1\n3 0.6 0.6 0.08 0.2\n",
    "c004": "2 0.1 0.1 0.05 0.1\n2 0.9 0.9 0.05 0.1\n",
    "c005": "",
}
SPLIT_LISTS = {"train": ["c001", "c002", "c004"], "val": ["c003"], "test": ["c005"]}


def jpeg(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 150 + seed, 180)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def deep_members(*, lists: bool = True, top: str = "DeepDataSet/") -> dict[str, bytes]:
    det = f"{top}DetectionDataSet/"
    members = {f"{det}images/c00{i}.jpg": jpeg(i) for i in range(1, 7)}
    members |= {f"{det}labels/{k}.txt": v.encode() for k, v in LABELS.items()}
    members[f"{det}labels/orphan.txt"] = b"1 0.5 0.5 0.1 0.1\n"
    if lists:
        for split, names in SPLIT_LISTS.items():
            members[f"{det}txt/{split}.txt"] = "".join(f"{WIN}{n}.jpg\r\n" for n in names).encode()
    members[f"{top}640DataSet/images/c001.jpg"] = jpeg(1)
    members[f"{top}640DataSet/json/c001.json"] = b'{"shapes": []}'
    members[f"{top}SegmentationDataSet/images/c001.png"] = b"png"
    members[f"{top}SegmentationDataSet/labels/c001.png"] = b"png"
    return members


def raw_members() -> dict[str, bytes]:
    return {f"RawImageDataSet/raw{i}.jpg": jpeg(i, (96, 72)) for i in range(3)}


def archives() -> dict[str, bytes]:
    return {
        "DeepDataSet.zip": make_zip(deep_members()),
        "RawImageDataSet.zip": make_zip(raw_members()),
    }


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Serves ``tmp_path/www`` (the fakes at the catalog's URL paths) on 127.0.0.1."""
    root = tmp_path / "www"
    (root / RECORD).mkdir(parents=True)
    for name, data in archives().items():
        (root / RECORD / name).write_bytes(data)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_no_base(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MEDISCOPE_DOWNLOAD_BASE", raising=False)


def checksummed_entry(*, damage: bool = False) -> DatasetEntry:
    """The catalog entry with the fakes' MD5s (the record's are not in the catalog)."""
    data = archives()
    entry = get_dataset("clinical-bacteria")
    resources = tuple(
        replace(
            r,
            md5=hashlib.md5(data[r.filename] + (b"x" if damage else b"")).hexdigest(),
            size=len(data[r.filename]),
        )
        for r in entry.resources
    )
    return replace(entry, resources=resources)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the catalog entry ---------------------------------------------------------------------


def test_catalog_entry() -> None:
    entry = get_dataset("clinical-bacteria")
    assert [(r.url, r.filename, r.md5, r.subdir) for r in entry.resources] == [
        ("https://zenodo.org/records/10526360/files/DeepDataSet.zip?download=1",
         "DeepDataSet.zip", None, ""),
        ("https://zenodo.org/records/10526360/files/RawImageDataSet.zip?download=1",
         "RawImageDataSet.zip", None, "raw"),
    ]  # fmt: skip
    assert entry.kind == "folder" and entry.target == "clinical-bacteria"
    module, _, function = (entry.prepare or "").partition(":")
    assert getattr(importlib.import_module(module), function) is prepare_fetched
    assert CLASSES == ("G-cocci", "G+cocci", "G-bacilli", "G+bacilli")


# --- fetch + prepare -----------------------------------------------------------------------


def test_fetch_verifies_checksums_and_makes_the_yolo_layout(server: str, tmp_path: Path) -> None:
    dst = tmp_path / "data"
    messages: list[str] = []

    result = fetch_entry(
        checksummed_entry(), dst, mirror=server, timeouts=FAST, log=messages.append
    )

    root = dst / "clinical-bacteria"
    assert result.path == root and result.downloaded and result.verified
    assert names(dst) == ["clinical-bacteria"]  # archives and temporary folders gone
    assert names(root) == sorted(
        [MARKER, "README.txt", "data.yaml", "extras", "images", "labels", "raw"]
    )
    data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
    assert data == {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": 4,
        "names": ["G-cocci", "G+cocci", "G-bacilli", "G+bacilli"],
    }
    # The authors' lists decide the split; c006 is in none of them and goes to train.
    assert {s: names(root / "images" / s) for s in ("train", "val", "test")} == {
        "train": ["c001.jpg", "c002.jpg", "c004.jpg", "c006.jpg"],
        "val": ["c003.jpg"],
        "test": ["c005.jpg"],
    }
    assert {s: names(root / "labels" / s) for s in ("train", "val", "test")} == {
        "train": ["c001.txt", "c002.txt", "c004.txt"],
        "val": ["c003.txt"],
        "test": ["c005.txt"],
    }
    assert (root / "labels" / "val" / "c003.txt").read_text() == LABELS["c003"]
    assert (root / "images" / "train" / "c002.jpg").read_bytes() == jpeg(2)
    assert names(root / "raw") == ["raw0.jpg", "raw1.jpg", "raw2.jpg"]
    with Image.open(root / "raw" / "raw1.jpg") as raw:
        assert raw.size == (96, 72)
    # Everything else of the download is kept, the detection set without its moved crops.
    assert names(root / "extras") == ["640DataSet", "DetectionDataSet", "SegmentationDataSet"]
    assert names(root / "extras" / "DetectionDataSet") == ["labels", "txt"]
    assert names(root / "extras" / "DetectionDataSet" / "labels") == ["orphan.txt"]
    readme = (root / "README.txt").read_text(encoding="utf-8")
    assert "G-cocci=2, G+cocci=1, G-bacilli=3, G+bacilli=1" in readme
    assert "crops without boxes: 2" in readme and "raw images: 3" in readme
    assert any("1 crops in no split list went to train" in m for m in messages)
    assert any("label files without a crop (e.g. orphan.txt)" in m for m in messages)
    assert any(
        m == "clinical-bacteria: crops train 4, val 1, test 1; boxes G-cocci 2, G+cocci 1, "
        "G-bacilli 3, G+bacilli 1; 3 raw images"
        for m in messages
    )


def test_the_yolo_format_reads_the_prepared_folder(server: str, tmp_path: Path) -> None:
    yolo = pytest.importorskip("mediscope.data.formats.yolo")
    fetch_entry(checksummed_entry(), tmp_path, mirror=server, timeouts=FAST)

    samples = yolo.read_yolo(tmp_path / "clinical-bacteria")

    assert list(samples.classes) == list(CLASSES)
    assert len(samples.samples) == 6
    assert sorted(s.split for s in samples.samples) == [
        "test",
        "train",
        "train",
        "train",
        "train",
        "val",
    ]
    assert sum(len(s.boxes) for s in samples.samples) == 7


def test_the_real_entry_fetches_unverified_and_a_second_fetch_is_a_no_op(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDISCOPE_DOWNLOAD_BASE", server)
    messages: list[str] = []

    result = fetch("clinical-bacteria", tmp_path, timeouts=FAST, log=messages.append)

    assert result.downloaded and not result.verified  # the catalog has no MD5s for it
    assert (result.path / "images" / "test" / "c005.jpg").is_file()
    again = fetch("clinical-bacteria", tmp_path, timeouts=FAST, log=messages.append)
    assert not again.downloaded
    assert messages[-1] == f"clinical-bacteria: already present (complete): {result.path}"


def test_checksum_mismatch_fails_and_leaves_no_dataset(server: str, tmp_path: Path) -> None:
    dst = tmp_path / "data"
    with pytest.raises(DownloadError, match="checksum mismatch for DeepDataSet.zip"):
        fetch_entry(checksummed_entry(damage=True), dst, mirror=server, timeouts=FAST)
    assert list(dst.iterdir()) == []


def test_offline_fails_fast_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch_entry(get_dataset("clinical-bacteria"), tmp_path, mirror=f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{port} (connection refused)")
    assert f"{RECORD}/DeepDataSet.zip" in message and str(tmp_path / "DeepDataSet.zip") in message
    assert list(tmp_path.iterdir()) == []


def test_cli_fetch_prints_the_destination_last(
    cli: Callable[..., Any], server: str, tmp_path: Path
) -> None:
    result = cli("data", "fetch", "clinical-bacteria", tmp_path / "d", "--mirror", server)
    assert result.code == 0, result.err
    assert result.out.strip().splitlines()[-1] == f"data: {tmp_path / 'd' / 'clinical-bacteria'}"
    assert "clinical-bacteria" in cli("data", "fetch", "--list").out


# --- prepare on other shapes of the download -----------------------------------------------


def unpack(folder: Path, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_without_split_lists_every_crop_is_in_train_and_raw_is_found_by_name(
    tmp_path: Path,
) -> None:
    # One archive holding everything, unpacked with its top folder; no split lists.
    members = deep_members(lists=False, top="Clinical/DeepDataSet/")
    members |= {f"Clinical/{k}": v for k, v in raw_members().items()}
    folder = unpack(tmp_path / "f", members)
    messages: list[str] = []

    summary = prepare_fetched(folder, log=messages.append)

    assert summary.images == {"train": 6}
    assert summary.objects == {"G-cocci": 2, "G+cocci": 1, "G-bacilli": 3, "G+bacilli": 1}
    assert summary.negatives == 2 and summary.raw == 3
    assert names(folder / "raw") == ["raw0.jpg", "raw1.jpg", "raw2.jpg"]
    assert "val:" not in (folder / "data.yaml").read_text()
    assert "clinical-bacteria: no split lists; every crop is in train" in messages
    assert not (folder / ".source").exists()


def test_a_detection_set_unpacked_flat_and_no_raw_images(tmp_path: Path) -> None:
    det = {
        k.split("DetectionDataSet/", 1)[1]: v for k, v in deep_members().items() if "Detection" in k
    }
    folder = unpack(tmp_path / "f", det)  # images/, labels/, txt/ right in the folder
    messages: list[str] = []

    summary = prepare_fetched(folder, log=messages.append)

    assert summary.images == {"train": 4, "val": 1, "test": 1} and summary.raw == 0
    assert names(folder) == sorted(["README.txt", "data.yaml", "extras", "images", "labels"])
    assert "warning: clinical-bacteria: no raw images (RawImageDataSet) in the download" in messages


def test_no_detection_set_is_a_clear_error(tmp_path: Path) -> None:
    folder = unpack(tmp_path / "f", raw_members())
    with pytest.raises(DataError, match=r"no detection set \(a folder with images/ and labels/"):
        prepare_fetched(folder)


def test_split_lists_take_the_file_name_and_refuse_an_image_in_two_splits(
    tmp_path: Path,
) -> None:
    det = tmp_path / "DetectionDataSet"
    (det / "txt").mkdir(parents=True)
    (det / "txt" / "train.txt").write_text(f"{WIN}a.jpg\n/data/images/b.jpg\n\n")
    (det / "txt" / "val.txt").write_text("c.jpg\n")
    assert read_split_lists(det) == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "val"}
    (det / "txt" / "test.txt").write_text(f"{WIN}a.jpg\n")
    with pytest.raises(DataError, match=r"a.jpg is listed in train.txt and test.txt"):
        read_split_lists(det)
    assert read_split_lists(tmp_path) == {}


def test_the_detection_folder_is_preferred_over_other_images_and_labels_folders(
    tmp_path: Path,
) -> None:
    for name in ("A_Segmentation", "DetectionDataSet"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "labels").mkdir()
        (tmp_path / name / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert find_detection_folder(tmp_path) == tmp_path / "DetectionDataSet"
