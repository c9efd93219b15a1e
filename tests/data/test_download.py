"""Dataset downloads against a local HTTP server: layout, checksums, resume, timeouts, safety.

Every test serves small archives it builds from a temporary folder on 127.0.0.1; the
catalog URLs are pointed there with ``mirror=`` or ``MEDISCOPE_DOWNLOAD_BASE``, which
also proves that the host part is replaced.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mediscope.data import catalog, download
from mediscope.data.catalog import DatasetEntry, Resource
from mediscope.data.download import (
    MARKER,
    Timeouts,
    apply_mirror,
    extract,
    fetch,
    fetch_entry,
    kaggle,
)
from mediscope.errors import DownloadError, UnknownNameError

HOST = "https://data.example.org"  # never contacted: every test replaces it
FAST = Timeouts(connect=2.0, read=2.0)


# --- a local server with three behaviours --------------------------------------------------


class PlainHandler(SimpleHTTPRequestHandler):
    """Serves the folder; ignores Range (as http.server does); ``/moved/X`` redirects to X."""

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "range": self.headers.get("Range")})  # type: ignore[attr-defined]
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/moved") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


class RangeHandler(PlainHandler):
    """Answers ``Range: bytes=N-`` with 206 and the rest of the file."""

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if not match:
            super().do_GET()
            return
        self.server.requests.append({"path": self.path, "range": self.headers["Range"]})  # type: ignore[attr-defined]
        data = Path(self.translate_path(self.path)).read_bytes()
        start = int(match.group(1))
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # Recorded before writing: the client may finish reading before this thread
        # runs again, and the test looks at the record right after the download.
        self.server.sent.append(len(body))  # type: ignore[attr-defined]
        self.wfile.write(body)


class StallHandler(PlainHandler):
    """Sends the headers and the first 1,000 bytes, then goes silent."""

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "range": self.headers.get("Range")})  # type: ignore[attr-defined]
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:1000])
        self.wfile.flush()
        self.server.release.wait(5)  # type: ignore[attr-defined]


@dataclass
class Server:
    url: str
    root: Path
    requests: list[dict[str, Any]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts servers on 127.0.0.1:0 over ``tmp_path/www``; all stop at the test's end."""
    root = tmp_path / "www"
    root.mkdir()
    running: list[ThreadingHTTPServer] = []

    def start(handler: type[PlainHandler] = RangeHandler) -> Server:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        info = Server(f"http://127.0.0.1:{httpd.server_address[1]}", root)
        httpd.requests = info.requests  # type: ignore[attr-defined]
        httpd.sent = info.sent  # type: ignore[attr-defined]
        httpd.release = threading.Event()  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        running.append(httpd)
        return info

    yield start
    for httpd in running:
        httpd.release.set()  # type: ignore[attr-defined]
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_no_base(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MEDISCOPE_DOWNLOAD_BASE", raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- archives and catalog entries built by the tests ----------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_zip(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


TIFS = {f"TINY/{c}/{c}-{i}.tif": f"{c}{i}".encode() * 50 for c in ("ADI", "BACK") for i in (1, 2)}


def publish(server: Server, filename: str, data: bytes) -> str:
    """Puts ``data`` where the catalog path of ``filename`` points; returns the catalog URL."""
    path = server.root / "records" / "1" / "files" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{HOST}/records/1/files/{filename}?download=1"


def folder_entry(
    server: Server, data: bytes, *, filename: str = "TINY.zip", unpack: str = "zip", **kw: Any
) -> DatasetEntry:
    resource = Resource(
        url=publish(server, filename, data),
        filename=filename,
        md5=md5(data),
        size=len(data),
        unpack=unpack,  # type: ignore[arg-type]
    )
    return DatasetEntry(
        name=kw.pop("name", "tiny"),
        title="tiny test set",
        licence="CC0",
        homepage=HOST,
        target=kw.pop("target", "tiny"),
        layout="tiny/<CLASS>/*.tif",
        resources=(resource,),
        expected=kw.pop("expected", ("ADI", "BACK")),
        **kw,
    )


def file_entry(server: Server, data: bytes, name: str = "tinymnist") -> DatasetEntry:
    return DatasetEntry(
        name=name,
        title="tiny npz",
        licence="CC0",
        homepage=HOST,
        target=f"{name}.npz",
        layout=f"{name}.npz",
        resources=(Resource(publish(server, f"{name}.npz", data), f"{name}.npz", md5=md5(data)),),
        kind="file",
    )


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(
        buffer,
        train_images=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
        train_labels=np.arange(6).reshape(6, 1) % 3,
    )
    return buffer.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders and partial files that must not survive."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".part" in p.name)


# --- fetching into the expected layout ---------------------------------------------------


def test_zip_unpacks_into_imagefolder_layout_and_second_fetch_is_a_no_op(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    archive = make_zip({**TIFS, "__MACOSX/TINY/._ADI-1.tif": b"junk"})
    entry = folder_entry(server, archive)
    dst = tmp_path / "data"
    messages: list[str] = []

    result = fetch_entry(entry, dst, mirror=server.url, timeouts=FAST, log=messages.append)

    assert result.path == dst / "tiny" and result.downloaded and result.verified
    assert sorted(p.name for p in (dst / "tiny").iterdir()) == [MARKER, "ADI", "BACK"]
    assert (dst / "tiny" / "ADI" / "ADI-1.tif").read_bytes() == TIFS["TINY/ADI/ADI-1.tif"]
    assert sorted(p.name for p in dst.iterdir()) == ["tiny"]  # archive gone, no temp folder
    assert any("downloading http://127.0.0.1" in m for m in messages)

    before = len(server.requests)
    again = fetch_entry(entry, dst, mirror=server.url, timeouts=FAST, log=messages.append)
    assert not again.downloaded and again.verified
    assert len(server.requests) == before  # nothing asked of the server
    assert messages[-1] == f"tiny: already present (verified): {dst / 'tiny'}"


def test_force_downloads_again_and_replaces_the_folder(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    entry = folder_entry(server, make_zip(TIFS))
    fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST)
    (tmp_path / "tiny" / "stray.txt").write_text("old")
    before = len(server.requests)

    result = fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST, force=True)

    assert result.downloaded and len(server.requests) == before + 1
    assert not (tmp_path / "tiny" / "stray.txt").exists()
    assert (tmp_path / "tiny" / "BACK" / "BACK-2.tif").exists()
    assert leftovers(tmp_path) == []


def test_tar_gz_and_redirects(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve()
    members = {"ADI/a.tif": b"a" * 300, "BACK/b.tif": b"b" * 300, "README.txt": b"hi"}
    entry = folder_entry(server, make_tar_gz(members), filename="tiny.tar.gz", unpack="tar")
    # The mirror's path comes first: /moved/records/... redirects to /records/...
    fetch_entry(entry, tmp_path, mirror=f"{server.url}/moved", timeouts=FAST, progress=True)
    assert (tmp_path / "tiny" / "ADI" / "a.tif").read_bytes() == b"a" * 300
    assert (tmp_path / "tiny" / "README.txt").exists()  # two top-level entries: nothing stripped
    assert [r["path"].split("?")[0] for r in server.requests] == [
        "/moved/records/1/files/tiny.tar.gz",
        "/records/1/files/tiny.tar.gz",
    ]


def test_npz_file_through_the_environment_base(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve()
    data = npz_bytes()
    entry = file_entry(server, data)
    monkeypatch.setitem(catalog._CATALOG, entry.name, entry)
    monkeypatch.setenv("MEDISCOPE_DOWNLOAD_BASE", server.url)

    result = fetch("tinymnist", tmp_path / "npz", timeouts=FAST)

    assert result.path == tmp_path / "npz" / "tinymnist.npz"
    with np.load(result.path) as arrays:
        assert arrays["train_images"].shape == (6, 8, 8, 3)
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["tinymnist.npz"]
    assert not fetch("tinymnist", tmp_path / "npz", timeouts=FAST).downloaded


def test_real_catalog_entries() -> None:
    nct = catalog.get_dataset("nct-crc-he-100k")
    assert nct.resources[0].url == (
        "https://zenodo.org/records/1214456/files/NCT-CRC-HE-100K.zip?download=1"
    )
    assert nct.resources[0].md5 == "6fd702d11df6292bc054397ae038a464"
    assert catalog.get_dataset("crc-val-he-7k").resources[0].md5 == (
        "2fd1651b4f94ebd818ebf90ad2b6ce06"
    )
    assert nct.expected == ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
    for name in (
        "pathmnist",
        "chestmnist_64",
        "bloodmnist_128",
        "octmnist_224",
        "nodulemnist3d_64",
    ):
        resource = catalog.get_dataset(name).resources[0]
        assert resource.url == f"https://zenodo.org/records/10519652/files/{name}.npz?download=1"
        assert resource.md5 is not None and len(resource.md5) == 32
    assert "organmnist3d_128" not in catalog.dataset_names()  # 3-D sets stop at 64
    with pytest.raises(UnknownNameError, match="did you mean 'dermamnist'"):
        catalog.get_dataset("dermamnst")
    with pytest.raises(ValueError, match="already"):
        catalog.register(nct)


def test_apply_mirror() -> None:
    url = "https://zenodo.org/records/1/files/a.zip?download=1"
    assert apply_mirror(url, None) == url
    assert apply_mirror(url, "http://m:81/") == "http://m:81/records/1/files/a.zip?download=1"
    with pytest.raises(DownloadError, match="not an http"):
        apply_mirror(url, "mirror.lab")


# --- checksums ---------------------------------------------------------------------------


def test_checksum_mismatch_deletes_the_file_and_names_both_sums(
    serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve()
    junk = b"not the published pathmnist" * 100
    target = server.root / "records" / "10519652" / "files" / "pathmnist.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(junk)
    monkeypatch.setenv("MEDISCOPE_DOWNLOAD_BASE", server.url)  # the real catalog entry

    with pytest.raises(DownloadError) as caught:
        fetch("pathmnist", tmp_path / "dst", timeouts=FAST)

    message = str(caught.value)
    assert "checksum mismatch for pathmnist.npz" in message
    assert "a8b06965200029087d5bd730944a56c1" in message and md5(junk) in message
    assert list((tmp_path / "dst").iterdir()) == []


def test_a_wrong_file_already_in_place_is_reported_not_replaced(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    entry = file_entry(server, npz_bytes())
    (tmp_path / "tinymnist.npz").write_bytes(b"truncated")
    with pytest.raises(DownloadError, match=r"is present but its md5 is .*--force"):
        fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST)
    assert server.requests == []
    assert fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST, force=True).downloaded


# --- resume ------------------------------------------------------------------------------


PAYLOAD = bytes(range(256)) * 800  # 204,800 bytes


def test_resume_asks_only_for_the_remainder(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(RangeHandler)
    url = publish(server, "big.bin", PAYLOAD)
    (tmp_path / "big.bin.part").write_bytes(PAYLOAD[:70_000])

    download.download(
        apply_mirror(url, server.url), tmp_path / "big.bin", md5=md5(PAYLOAD), timeouts=FAST
    )

    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=70000-"]
    assert server.sent == [len(PAYLOAD) - 70_000]
    assert not (tmp_path / "big.bin.part").exists()


def test_restart_from_scratch_when_the_server_ignores_range(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(PlainHandler)
    url = publish(server, "big.bin", PAYLOAD)
    (tmp_path / "big.bin.part").write_bytes(PAYLOAD[:70_000])
    messages: list[str] = []

    download.download(
        apply_mirror(url, server.url),
        tmp_path / "big.bin",
        md5=md5(PAYLOAD),
        timeouts=FAST,
        log=messages.append,
    )

    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD  # not 70,000 bytes too long
    assert [r["range"] for r in server.requests] == ["bytes=70000-"]
    assert messages == ["big.bin.part: the server cannot resume; starting again"]


def test_corrupt_partial_file_is_discarded_and_downloaded_again(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(RangeHandler)
    url = publish(server, "big.bin", PAYLOAD)
    (tmp_path / "big.bin.part").write_bytes(b"\xff" * 70_000)

    download.download(
        apply_mirror(url, server.url), tmp_path / "big.bin", md5=md5(PAYLOAD), timeouts=FAST
    )

    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=70000-", None]


def test_a_stalled_server_times_out_and_the_next_run_resumes(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    stalled = serve(StallHandler)
    url = publish(stalled, "big.bin", PAYLOAD)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"sent nothing for 0.3 s; 1,000 bytes are kept"):
        download.download(
            apply_mirror(url, stalled.url),
            tmp_path / "big.bin",
            md5=md5(PAYLOAD),
            timeouts=Timeouts(connect=2, read=0.3),
        )
    assert time.monotonic() - start < 3
    assert (tmp_path / "big.bin.part").stat().st_size == 1000

    healthy = serve(RangeHandler)
    download.download(
        apply_mirror(url, healthy.url), tmp_path / "big.bin", md5=md5(PAYLOAD), timeouts=FAST
    )
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in healthy.requests] == ["bytes=1000-"]


def test_unreachable_host_fails_fast_with_what_to_do(tmp_path: Path) -> None:
    port = closed_port()
    entry = catalog.get_dataset("crc-val-he-7k")
    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch_entry(entry, tmp_path, mirror=f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    url = f"http://127.0.0.1:{port}/records/1214456/files/CRC-VAL-HE-7K.zip?download=1"
    assert str(caught.value) == (
        f"cannot reach 127.0.0.1:{port} (connection refused); on an offline machine download "
        f"{url} by hand and put it in {tmp_path / 'CRC-VAL-HE-7K.zip'}, then run the command again"
    )


def test_http_error_is_one_clear_message(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve()
    with pytest.raises(DownloadError, match=r"/nothing\.zip answered HTTP 404"):
        download.download(f"{server.url}/nothing.zip", tmp_path / "d" / "x.zip", timeouts=FAST)
    assert list((tmp_path / "d").iterdir()) == []


# --- unpacking safety ----------------------------------------------------------------------


def test_a_failing_extraction_leaves_no_half_extracted_folder(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    good = make_zip(TIFS, stored=True)
    # Damage the bytes of the last member: its CRC check fails after the others were written.
    damaged = bytearray(good)
    spot = damaged.rindex(TIFS["TINY/BACK/BACK-2.tif"][:20])
    damaged[spot : spot + 5] = b"XXXXX"
    entry = folder_entry(server, bytes(damaged))  # its md5 is the damaged file's

    with pytest.raises(DownloadError, match=r"cannot unpack TINY.zip: Bad CRC-32"):
        fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST)

    assert not (tmp_path / "tiny").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kind", "data", "what"),
    [
        ("zip", make_zip({"ADI/a.tif": b"a", "../evil.txt": b"x"}), "a path outside"),
        ("zip", make_zip({"ADI/a.tif": b"a", "/tmp/evil.txt": b"x"}), "a path outside"),
        ("tar", make_tar_gz({"ADI/a.tif": b"a", "ADI/../../evil.txt": b"x"}), "a path outside"),
        ("tar", make_tar_gz({"ADI/a.tif": b"a"}, links={"ADI/l": "/etc/passwd"}), "a link"),
    ],
)
def test_path_traversal_is_refused(
    serve: Callable[..., Server], tmp_path: Path, kind: str, data: bytes, what: str
) -> None:
    server = serve()
    name = "evil.zip" if kind == "zip" else "evil.tar.gz"
    entry = folder_entry(server, data, filename=name, unpack=kind)
    dst = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match=f"refusing to unpack {name}: member .* is {what}"):
        fetch_entry(entry, dst, mirror=server.url, timeouts=FAST)
    assert not list(tmp_path.rglob("evil.txt")) and not (dst / "tiny").exists()
    assert leftovers(dst) == []


def test_extract_strips_only_a_single_top_folder(tmp_path: Path) -> None:
    one_top = tmp_path / "one.zip"
    one_top.write_bytes(make_zip({"TOP/ADI/a.tif": b"a", "TOP/notes.txt": b"n"}))
    extract(one_top, tmp_path / "x", kind="zip")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["ADI", "notes.txt"]
    extract(one_top, tmp_path / "y", kind="zip", strip_top=False)
    assert [p.name for p in (tmp_path / "y").iterdir()] == ["TOP"]


# --- offline and manual paths ----------------------------------------------------------------


def test_an_archive_put_in_dst_by_hand_is_verified_and_used_offline(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    archive = make_zip(TIFS)
    entry = folder_entry(server, archive)
    (tmp_path / "TINY.zip").write_bytes(archive)
    offline = f"http://127.0.0.1:{closed_port()}"

    result = fetch_entry(entry, tmp_path, mirror=offline, timeouts=FAST)

    assert (result.path / "ADI" / "ADI-2.tif").exists()
    assert (tmp_path / "TINY.zip").exists()  # the user's file is left alone


def test_a_folder_unpacked_by_hand_counts_as_present(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve()
    entry = folder_entry(server, make_zip(TIFS))
    for name in ("ADI", "BACK"):
        (tmp_path / "tiny" / name).mkdir(parents=True)
    result = fetch_entry(entry, tmp_path, mirror=server.url, timeouts=FAST)
    assert not result.downloaded and not result.verified and server.requests == []

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    other = folder_entry(server, make_zip(TIFS), name="other", target="other")
    with pytest.raises(DownloadError, match="holds no complete 'other'; remove it, or run again"):
        fetch_entry(other, tmp_path, mirror=server.url, timeouts=FAST)


# --- Kaggle ------------------------------------------------------------------------------


def test_kaggle_without_package_or_credentials_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kaggle, "_kaggle_installed", lambda: False)
    with pytest.raises(DownloadError, match=r"comes from Kaggle and the 'kaggle' package is not"):
        fetch("covid19-radiography", tmp_path)

    monkeypatch.setattr(kaggle, "_kaggle_installed", lambda: True)
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setattr(kaggle, "_kaggle_api", lambda: pytest.fail("must not sign in"))
    with pytest.raises(DownloadError) as caught:
        fetch("covid19-radiography", tmp_path / "dst")
    assert str(caught.value) == (
        "'covid19-radiography' comes from Kaggle and no Kaggle credentials were found; "
        "pip install kaggle and put your API token in ~/.kaggle/kaggle.json (or set "
        "KAGGLE_USERNAME and KAGGLE_KEY); or download it by hand from "
        "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database and "
        f"unpack it to {tmp_path / 'dst' / 'covid19-radiography'}"
    )
    token = tmp_path / "home" / ".kaggle" / "kaggle.json"
    token.parent.mkdir(parents=True)
    token.write_text('{"username": "someone", "key": "not-a-real-key"}')
    assert kaggle._kaggle_credentials()


class FakeKaggleApi:
    """Stands in for kaggle's KaggleApi: writes the dataset zip the real one would."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def dataset_download_files(self, dataset: str, **kwargs: Any) -> None:
        self.calls.append({"dataset": dataset, **kwargs})
        members = {
            f"COVID-19_Radiography_Dataset/{c}/images/{c}-1.png": c.encode()
            for c in ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
        }
        zip_path = Path(kwargs["path"]) / "covid19-radiography-database.zip"
        zip_path.write_bytes(make_zip(members))


def test_kaggle_download_with_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeKaggleApi()
    monkeypatch.setattr(kaggle, "_kaggle_installed", lambda: True)
    monkeypatch.setattr(kaggle, "_kaggle_api", lambda: api)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")

    result = fetch("covid19-radiography", tmp_path, progress=False)

    assert api.calls == [
        {
            "dataset": "tawsifurrahman/covid19-radiography-database",
            "path": api.calls[0]["path"],
            "unzip": False,
            "quiet": True,
        }
    ]
    assert (result.path / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["covid19-radiography"]
    assert not fetch("covid19-radiography", tmp_path).downloaded
    assert len(api.calls) == 1


def test_kaggle_failure_is_a_download_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing:
        def dataset_download_files(self, dataset: str, **kwargs: Any) -> None:
            raise SystemExit(1)  # what kaggle does when the sign-in fails

    monkeypatch.setattr(kaggle, "_kaggle_installed", lambda: True)
    monkeypatch.setattr(kaggle, "_kaggle_api", Refusing)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "x")
    with pytest.raises(DownloadError, match="the Kaggle download of .* failed"):
        fetch("covid19-radiography", tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the command line --------------------------------------------------------------------


def test_cli_fetch_prints_the_destination_last(
    cli: Callable[..., Any],
    serve: Callable[..., Server],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve()
    entry = folder_entry(server, make_zip(TIFS))
    monkeypatch.setitem(catalog._CATALOG, entry.name, entry)

    result = cli("data", "fetch", "tiny", tmp_path, "--mirror", server.url)
    assert result.code == 0, result.err
    assert result.out.strip().splitlines()[-1] == f"data: {tmp_path / 'tiny'}"

    again = cli("data", "fetch", "tiny", tmp_path, "--mirror", server.url)
    assert "already present (verified)" in again.out
    assert again.out.strip().splitlines()[-1] == f"data: {tmp_path / 'tiny'}"


def test_cli_errors_are_one_line_with_exit_2(cli: Callable[..., Any], tmp_path: Path) -> None:
    unknown = cli("data", "fetch", "pathmnst", tmp_path)
    assert unknown.code == 2
    assert unknown.err.strip().splitlines() == [
        "error: unknown dataset 'pathmnst'; did you mean 'pathmnist'? "
        f"'mediscope data fetch --list' shows the {len(catalog.dataset_names())} names"
    ]
    offline = cli(
        "data", "fetch", "pathmnist", tmp_path, "--mirror", f"http://127.0.0.1:{closed_port()}"
    )
    assert offline.code == 2
    lines = offline.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach 127.0.0.1:")
    assert cli("data", "fetch").code == 2


def test_cli_list_shows_names_sizes_and_licences(cli: Callable[..., Any]) -> None:
    result = cli("data", "fetch", "--list")
    assert result.code == 0
    rows = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    assert "11.7 GB" in rows["nct-crc-he-100k"] and "CC BY 4.0" in rows["nct-crc-he-100k"]
    assert "800.3 MB" in rows["crc-val-he-7k"]
    assert "CC BY-NC 4.0" in rows["dermamnist_224"]
    assert "Kaggle" in rows["covid19-radiography"]
    assert "pneumoniamnist_128" in rows and "tissuemnist_64" in rows
