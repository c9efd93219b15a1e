"""What the server refuses, and how: JSON errors, the upload size, the image check, the
token and the per-model queue.

* :class:`ApiError`: an error answered as ``{"error": "<one line>", "hint": "..."}``
  with its HTTP status.
* :class:`BodyLimit`: an ASGI middleware that answers 413 to a request body larger
  than the upload limit, before it is read (``Content-Length``) or as soon as the
  streamed body passes the limit.
* :func:`decode_upload`: the uploaded bytes as the model's ``H x W x C`` uint8 image.
  The content decides the type (DICOM by its ``DICM`` marker at byte 128, images by
  Pillow among PNG, JPEG, TIFF, BMP and WebP), never the file name; images beyond
  Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, its guard against
  decompression bombs) are refused from their header, before any pixel is decoded.
* :func:`token_matches`: the ``Authorization: Bearer T`` header or ``?token=T``.
* :class:`ModelQueue`: one prediction at a time per model (a one-thread executor),
  at most ``size`` more waiting; beyond that :class:`ApiError` 429 with Retry-After.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hmac
import io
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException

from mediscope.errors import MediscopeError

T = TypeVar("T")

MB = 1024 * 1024
#: Bytes a multipart body holds beyond the file (boundaries, headers, other fields).
MULTIPART_SLACK = 64 * 1024
#: Image formats Pillow may open (those ``mediscope`` reads as image files).
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128
UNSUPPORTED_HINT = "send a PNG, JPEG, TIFF, BMP, WebP or DICOM file"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An error the API answers as JSON ``{"error": message, "hint": hint, ...}``.

    Args:
        status: The HTTP status code.
        message: What is wrong, one line.
        hint: What to do about it.
        headers: Extra response headers (``Retry-After``).
        extra: Extra fields of the JSON body (``retry_after``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())
        self.hint = hint
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": self.message, "hint": self.hint, **self.extra}


def error_from(exc: MediscopeError, status: int = 400, where: str | None = None) -> ApiError:
    """A user-facing mediscope error as an :class:`ApiError`; ``where`` replaces the
    error's own place (a private temporary file's path is no business of the client)."""
    place = where if where is not None else exc.where
    message = f"{place}: {exc.message}" if place else exc.message
    return ApiError(status, message, hint=exc.hint)


def too_large(limit_mb: float) -> ApiError:
    """413: the upload is larger than the server takes."""
    return ApiError(
        413,
        f"the upload is larger than this server's limit of {limit_mb:g} MB",
        hint="send a smaller file, or start the server with a larger --max-upload-mb",
    )


async def _send_json(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised while a request body streams in past the limit (an HTTPException, so that
    FastAPI's form parsing lets it through rather than answering 400)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


class BodyLimit:
    """ASGI middleware: 413 for a request body beyond ``max_upload_mb`` (plus
    :data:`MULTIPART_SLACK` for the multipart framing), checked against the
    ``Content-Length`` header before reading and counted while the body streams in."""

    def __init__(self, app: ASGIApp, max_upload_mb: float) -> None:
        self.app = app
        self.max_upload_mb = float(max_upload_mb)
        self.allowed = int(self.max_upload_mb * MB) + MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send, ApiError(400, "bad Content-Length header"))
                return
            if declared > self.allowed:
                await _send_json(send, too_large(self.max_upload_mb))
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.allowed:
                    raise BodyTooLarge(too_large(self.max_upload_mb))
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            if not started:
                await _send_json(send, exc.error)


# -- the image ---------------------------------------------------------------------------


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM file (the ``DICM`` marker after the 128-byte preamble).

    Example:
        >>> is_dicom(bytes(128) + b"DICM" + bytes(8)), is_dicom(b"\\x89PNG")
        (True, False)
    """
    end = DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)
    return len(data) >= end and data[DICOM_MAGIC_OFFSET:end] == DICOM_MAGIC


def _pixel_limit() -> int | None:
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else None


def _check_pixels(width: int, height: int, name: str) -> None:
    limit = _pixel_limit()
    if limit is not None and width * height > limit:
        raise ApiError(
            413,
            f"{name}: {width} x {height} pixels is beyond the limit of {limit:,} pixels "
            "(Pillow's MAX_IMAGE_PIXELS, a guard against decompression bombs)",
            hint="cut the image into tiles (mediscope data tile) and send those",
        )


def _unreadable(name: str, exc: Exception) -> ApiError:
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return ApiError(
        400,
        f"{name}: cannot read the image ({type(exc).__name__}: {text})",
        hint="the file may be truncated or damaged; send it again or another one",
    )


def decode_upload(
    data: bytes,
    name: str,
    *,
    load: Callable[[Any], tuple[np.ndarray, str | None]],
    scratch: Path,
) -> np.ndarray:
    """The uploaded bytes as an ``H x W x C`` uint8 image.

    Args:
        data: The file's content.
        name: Its name, for messages only (never opened).
        load: The predictor's ``load_image`` (its channels and DICOM window).
        scratch: A private folder for the one temporary file a DICOM upload needs
            (pydicom and mediscope's DICOM reader read files); removed at once.

    Raises:
        ApiError: 400 for an empty, unsupported, truncated or damaged file, 413 for an
            image beyond Pillow's pixel limit.
    """
    if not data:
        raise ApiError(400, f"{name}: the file is empty", hint=UNSUPPORTED_HINT)
    if is_dicom(data):
        return _decode_dicom(data, name, load=load, scratch=scratch)
    try:
        picture = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ApiError(
            413,
            f"{name}: the image is beyond Pillow's pixel limit ({' '.join(str(exc).split())}; "
            "MAX_IMAGE_PIXELS, a guard against decompression bombs)",
            hint="cut the image into tiles (mediscope data tile) and send those",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(
            400,
            f"{name}: not an image this server reads (the content is checked, not the file name)",
            hint=UNSUPPORTED_HINT,
        ) from None
    with picture:
        _check_pixels(picture.width, picture.height, name)
        try:
            picture.load()
            image, _ = load(picture)
        except MediscopeError as exc:
            raise error_from(exc, where=name) from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise _unreadable(name, exc) from None
    return image


def _decode_dicom(
    data: bytes,
    name: str,
    *,
    load: Callable[[Any], tuple[np.ndarray, str | None]],
    scratch: Path,
) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ApiError(
            400, f"{name}: reading DICOM needs pydicom", hint="pip install 'mediscope[dicom]'"
        ) from None
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        rows, columns = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        raise _unreadable(name, exc) from None
    _check_pixels(columns, rows, name)
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".dcm", dir=scratch)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        image, _ = load(temporary)
    except MediscopeError as exc:
        raise error_from(exc, where=name) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return image


# -- the token ---------------------------------------------------------------------------


def token_matches(expected: str, header: str | None, query: str | None) -> bool:
    """Whether the request carries the token: ``Authorization: Bearer <token>`` or
    ``?token=<token>`` (compared in constant time).

    Example:
        >>> token_matches("s3cret", "Bearer s3cret", None), token_matches("s3cret", None, "x")
        (True, False)
    """
    given: list[str] = []
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            given.append(value.strip())
    if query:
        given.append(query)
    wanted = expected.encode()
    return any(hmac.compare_digest(value.encode(), wanted) for value in given)


# -- one prediction at a time per model ------------------------------------------------


class ModelQueue:
    """Runs one model's predictions one at a time, with at most ``size`` waiting.

    The work runs on the model's own thread, so the event loop stays free and a model
    never runs two images at once (its backend and Grad-CAM hooks are not shared
    between threads); ``size`` bounds the uploads held in memory while they wait.

    Args:
        name: The model's id (names the thread).
        size: Predictions that may wait while one runs.
    """

    def __init__(self, name: str, size: int) -> None:
        self.size = max(0, int(size))
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"mediscope-{name}"
        )
        self._lock = threading.Lock()
        self._pending = 0
        self._seconds = 1.0  # running mean of a prediction's duration

    @property
    def pending(self) -> int:
        """Predictions running or waiting."""
        return self._pending

    def retry_after(self) -> int:
        """Seconds after which a refused request may try again (at least 1)."""
        return max(1, math.ceil(self._seconds * max(self._pending, 1)))

    def submit(self, work: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queues ``work``.

        Raises:
            ApiError: 429 (``busy``, with ``Retry-After``) when the queue is full.
        """
        with self._lock:
            if self._pending >= 1 + self.size:
                seconds = self.retry_after()
                raise ApiError(
                    429,
                    "busy",
                    hint=f"the model has {self._pending} images to predict; try again in "
                    f"{seconds} s",
                    headers={"Retry-After": str(seconds)},
                    extra={"retry_after": seconds},
                )
            self._pending += 1

        def timed() -> T:
            start = time.perf_counter()
            try:
                return work()
            finally:
                took = time.perf_counter() - start
                self._seconds = 0.7 * self._seconds + 0.3 * took

        future = self._executor.submit(timed)
        future.add_done_callback(self._release)
        return future

    def _release(self, _: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stops the thread once the queued work is done (new work is refused)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
