"""The web app of ``mediscope serve``: the page, and a JSON API over the loaded models.

Endpoints (all JSON errors are ``{"error": "<one line>", "hint": "..."}``):

* ``GET /api/health``: status, version and number of loaded models (no token needed).
* ``GET /api/models``: each model's id, task, classes and colours, format, input size,
  default score threshold, validation metrics with intervals, model card, load error.
* ``POST /api/predict``: one image (multipart: ``model``, ``image``, ``threshold``,
  ``cam``) -> the result, its id and the URLs of its files.
* ``GET /api/results/{id}/{file}``: ``image.png``, ``overlay.png``, ``mask.png``,
  ``cam.png``, ``result.csv``, ``result.json``, ``labels.txt`` of a recent result.
* ``GET /api/batch.csv?ids=...``: one row per image, the columns of ``mediscope
  predict``'s ``predictions.csv`` (classification, segmentation) or ``counts.csv``
  (detection).

With a token, every ``/api`` endpoint but ``health`` needs ``Authorization: Bearer T``
or ``?token=T``; the page (``/``, ``/static``) and the API description (``/docs``,
``/openapi.json``) stay open, since they hold no data.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mediscope import __version__
from mediscope.errors import MediscopeError
from mediscope.runtime.results import DetectionResult, Result
from mediscope.serve.limits import (
    MB,
    ApiError,
    BodyLimit,
    BodyTooLarge,
    decode_upload,
    error_from,
    token_matches,
    too_large,
)
from mediscope.serve.models import Registry, ServedModel, load_models
from mediscope.serve.results import (
    FILES,
    STORE_BYTES,
    STORE_SIZE,
    THRESHOLD_FILES,
    URL_KEYS,
    ResultStore,
    StoredResult,
    make_file,
    table_text,
)

STATIC = Path(__file__).parent / "static"
#: Detection: boxes are kept down to this score (or the asked threshold, if lower), so
#: that the page can lower its threshold without asking again.
SCORE_FLOOR = 0.01
#: Ids one batch table may list.
MAX_BATCH = 1000
NO_STORE = {"Cache-Control": "no-store"}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error answers of an endpoint."""
    meaning = {
        400: "unreadable image, unsupported type (the content is checked), bad request",
        401: "missing or wrong token",
        404: "unknown model, result or file",
        409: "the model failed to load",
        413: "upload larger than --max-upload-mb, or image beyond Pillow's pixel limit",
        422: "missing or invalid field",
        429: 'the model\'s queue is full: {"error": "busy", "retry_after": s}, Retry-After',
    }
    return {code: {"description": meaning[code]} for code in codes}


PREDICT_EXAMPLE = {
    "id": "Q0uN2k1xV9bq3cTz8mYw4LpA",
    "model": "demo-gram-stain",
    "task": "detection",
    "image": {"name": "smear.png", "width": 1600, "height": 1200},
    "urls": {
        "image": "/api/results/Q0uN2k1xV9bq3cTz8mYw4LpA/image.png",
        "overlay": "/api/results/Q0uN2k1xV9bq3cTz8mYw4LpA/overlay.png",
        "csv": "/api/results/Q0uN2k1xV9bq3cTz8mYw4LpA/result.csv",
        "json": "/api/results/Q0uN2k1xV9bq3cTz8mYw4LpA/result.json",
        "yolo": "/api/results/Q0uN2k1xV9bq3cTz8mYw4LpA/labels.txt",
    },
    "threshold": 0.25,
    "result": {
        "task": "detection",
        "path": "smear.png",
        "threshold": 0.25,
        "counts": {"G+cocci": 1, "G-bacilli": 0},
        "boxes": [[10.0, 12.0, 30.0, 33.0], [50.0, 60.0, 64.0, 80.0]],
        "scores": [0.91, 0.04],
        "class_indices": [0, 1],
        "class_names": ["G+cocci", "G-bacilli"],
    },
}

PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mediscope</title></head>
<body><h1>mediscope</h1><p>The page is not installed; the API is at
<a href="docs">/docs</a>.</p></body></html>
"""


def set_torch_threads(threads: int) -> None:
    """Sets torch's intra-op threads once, when a model has imported torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(threads))


def clean_name(filename: str | None) -> str:
    """An uploaded file's name, safe to show and to write in a CSV: its last path part,
    without control characters, at most 200 characters.

    Example:
        >>> clean_name("../../etc/smear 1.png"), clean_name(None)
        ('smear 1.png', 'image')
    """
    last = re.split(r"[\\/]", filename or "")[-1]
    last = re.sub(r"[\x00-\x1f\x7f]", "", last).strip()
    return last[:200] or "image"


def _download_name(name: str, file: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:80] or "image"
    return f"{stem}-{file}"


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    place = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    text = str(first.get("msg", "invalid"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{place}: {text}{more}" if place else f"{text}{more}"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(MediscopeError)
    async def mediscope_error(request: Request, exc: MediscopeError) -> JSONResponse:
        return _json_error(error_from(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return _json_error(exc.error)
        hint = "see /docs for the API" if exc.status_code in (404, 405) else None
        error = ApiError(exc.status_code, str(exc.detail), hint=hint)
        error.headers = dict(exc.headers or {})
        return _json_error(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json_error(ApiError(422, _validation_message(exc), hint="see /docs for the API"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        message = f"internal error: {type(exc).__name__}: {exc}"
        return _json_error(ApiError(500, message, hint="please report it"))


#: The token's two ways in (module-level: FastAPI reads the annotations by name).
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
QUERY_TOKEN = APIKeyQuery(name="token", auto_error=False, description="?token=<token>")


def _token_dependency(token: str) -> Any:
    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        query_token: Annotated[str | None, Depends(QUERY_TOKEN)],
    ) -> None:
        header = f"Bearer {credentials.credentials}" if credentials is not None else None
        if not token_matches(token, header, query_token):
            raise ApiError(
                401,
                "missing or wrong token",
                hint="send 'Authorization: Bearer <token>' or add ?token=<token> (the "
                "address mediscope serve printed)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token


def _predict(
    model: ServedModel,
    data: bytes,
    name: str,
    threshold: float | None,
    cam: bool,
    scratch: Path,
) -> tuple[np.ndarray, Result, float | None]:
    """Decodes and predicts one upload; detection keeps the boxes down to
    :data:`SCORE_FLOOR` and returns the threshold the page starts at."""
    predictor = model.predictor
    assert predictor is not None
    image = decode_upload(data, name, load=predictor.load_image, scratch=scratch)
    shown: float | None = None
    if predictor.task == "detection":
        info = predictor.info
        shown = float(info.inference.score_threshold if threshold is None else threshold)
        floor = min(shown, SCORE_FLOOR)
        # a shallow copy with its own settings: the same network, and the shared
        # predictor's settings stay as /api/models reports them
        low = copy.copy(predictor)
        low.info = replace(info, inference=replace(info.inference, score_threshold=floor))
        result = low.predict(image)
    else:
        result = predictor.predict(image, cam=cam)
    assert not isinstance(result, list)
    result.path = name
    return image, result, shown


def _result_json(entry: StoredResult) -> dict[str, Any]:
    data = entry.result.to_dict()
    if isinstance(entry.result, DetectionResult) and entry.threshold is not None:
        data["threshold"] = entry.threshold
        data["counts"] = entry.result.filter(entry.threshold).counts()
    return data


def _predict_and_store(
    model: ServedModel,
    store: ResultStore,
    data: bytes,
    name: str,
    threshold: float | None,
    cam: bool,
    scratch: Path,
) -> bytes:
    """The work of ``POST /api/predict``, on the model's own thread: decode, predict,
    store, and the response's JSON (a large mask's run lengths take a while too)."""
    image, result, shown = _predict(model, data, name, threshold, cam, scratch)
    entry = store.add(
        model=model.id,
        task=str(model.task),
        name=name,
        image=image,
        result=result,
        threshold=shown,
    )
    body = {
        "id": entry.id,
        "model": model.id,
        "task": entry.task,
        "image": {"name": name, "width": int(image.shape[1]), "height": int(image.shape[0])},
        "urls": {URL_KEYS[f]: f"/api/results/{entry.id}/{f}" for f in entry.files},
        "threshold": shown,
        "result": _result_json(entry),
    }
    return json.dumps(body).encode()


def create_app(
    sources: Sequence[str | Path],
    *,
    token: str | None = None,
    max_upload_mb: float = 200,
    queue: int = 4,
    threads: int | None = None,
    store_size: int = STORE_SIZE,
    store_bytes: int = STORE_BYTES,
) -> FastAPI:
    """The web app serving the models of ``sources``, loaded now.

    Args:
        sources: Run folders, exported models (``.onnx``, ``.pt``), or folders searched
            for run folders and ``.onnx`` files.
        token: When set, the API (but ``/api/health``) needs it.
        max_upload_mb: The largest upload, in MB (413 beyond).
        queue: Predictions that may wait per model while one runs (429 beyond).
        threads: CPU threads of each model (torch, onnxruntime); default: all cores.
        store_size: Results kept for their files and tables.
        store_bytes: Bytes of images and files those results may hold.

    Returns:
        The FastAPI app (run it with uvicorn).

    Raises:
        ConfigError: no sources, a missing path, or a folder without models.
    """
    cores = int(threads or os.cpu_count() or 1)
    registry = Registry(load_models([Path(s) for s in sources], queue=queue, threads=cores))
    set_torch_threads(cores)
    store = ResultStore(store_size, store_bytes)
    limit_bytes = int(max_upload_mb * MB)
    scratch = Path(tempfile.mkdtemp(prefix="mediscope-serve-"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            registry.close()
            shutil.rmtree(scratch, ignore_errors=True)

    app = FastAPI(
        title="mediscope",
        version=__version__,
        summary="Classification, detection and segmentation models of mediscope runs.",
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.store = store
    app.state.max_upload_bytes = limit_bytes
    app.add_middleware(BodyLimit, max_upload_mb=max_upload_mb)
    _add_error_handlers(app)
    protected = [Depends(_token_dependency(token))] if token else []
    api = APIRouter(prefix="/api", dependencies=protected)

    @app.get("/api/health", summary="Server status (needs no token)", tags=["server"])
    async def health() -> dict[str, Any]:
        """``{"status": "ok", "version": ..., "models": <models loaded>}``."""
        return {"status": "ok", "version": __version__, "models": len(registry.loaded)}

    @api.get(
        "/models",
        summary="The models, their metrics and cards",
        tags=["models"],
        responses=_errors(401),
    )
    async def models() -> dict[str, Any]:
        """Every model, including those that failed to load (with ``error``)."""
        return {"models": [model.describe() for model in registry.models]}

    @api.post(
        "/predict",
        summary="Predict one image",
        tags=["predict"],
        response_class=Response,
        responses={
            200: {"content": {"application/json": {"example": PREDICT_EXAMPLE}}},
            **_errors(400, 401, 404, 409, 413, 422, 429),
        },
    )
    async def predict(
        model: Annotated[str, Form(description="The model's id (see /api/models).")],
        image: Annotated[
            UploadFile, File(description="PNG, JPEG, TIFF (8 or 16 bit), BMP, WebP or DICOM.")
        ],
        threshold: Annotated[
            float | None,
            Form(
                ge=0,
                le=1,
                description="Detection: the score threshold of counts and files (default: "
                "the model's); boxes down to min(threshold, 0.01) are returned.",
            ),
        ] = None,
        cam: Annotated[
            bool, Form(description="Classification: a Grad-CAM heatmap (run folders).")
        ] = False,
    ) -> Response:
        """Predicts the image with the model; returns the result (``to_dict()``), its id
        and the URLs of its files. Detection returns every box scoring at least
        ``min(threshold, 0.01)``, with ``threshold`` (the model's default or the one
        asked) and ``counts`` at that threshold."""
        served = registry.get(model)
        data = await image.read()
        if len(data) > limit_bytes:
            raise too_large(max_upload_mb)
        name = clean_name(image.filename)
        if cam and served.task != "classification":
            raise ApiError(400, f"Grad-CAM is for classifiers; {model!r} is {served.task}")
        if cam and served.predictor is not None and served.predictor.format != "eager":
            raise ApiError(
                400,
                f"Grad-CAM needs the PyTorch model; {model!r} is {served.predictor.format}",
                hint="serve the run folder instead of the exported file",
            )
        assert served.queue is not None
        future = served.queue.submit(
            functools.partial(
                _predict_and_store, served, store, data, name, threshold, cam, scratch
            )
        )
        body = await asyncio.wrap_future(future)
        return Response(body, media_type="application/json", headers=NO_STORE)

    @api.get(
        "/results/{rid}/{file}",
        summary="A file of a recent result",
        tags=["results"],
        responses={
            200: {"content": {media: {} for media in sorted(set(FILES.values()))}},
            **_errors(401, 404, 422),
        },
    )
    async def result_file(
        rid: str,
        file: str,
        threshold: Annotated[
            float | None,
            Query(
                ge=0,
                le=1,
                description="Detection: keep the boxes scoring this or more (default: the "
                "result's threshold).",
            ),
        ] = None,
    ) -> Response:
        """``image.png`` (8-bit, as the model saw it), ``overlay.png``, ``mask.png``
        (segmentation: palette PNG of class indices), ``cam.png`` (classification with
        Grad-CAM), ``result.csv``, ``result.json`` (detection: COCO) and ``labels.txt``
        (detection: YOLO with scores)."""
        entry = store.get(rid)
        if file not in FILES or file not in entry.files:
            raise ApiError(
                404,
                f"a {entry.task} result has no file {file[:80]!r}",
                hint=f"its files are: {', '.join(entry.files)}",
            )
        varies = file in THRESHOLD_FILES and entry.task == "detection"
        key = (file, None if not varies or threshold is None else float(threshold))
        data = entry.made.get(key)
        if data is None:
            data = await run_in_threadpool(make_file, entry, file, threshold)
            if key[1] is None:
                store.remember(entry, key, data)
        kind = "inline" if file.endswith(".png") else "attachment"
        headers = {
            **NO_STORE,
            "Content-Disposition": f'{kind}; filename="{_download_name(entry.name, file)}"',
        }
        return Response(data, media_type=FILES[file], headers=headers)

    @api.get(
        "/batch.csv",
        summary="One table of several results",
        tags=["results"],
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}, **_errors(400, 401, 404, 422)},
    )
    async def batch_csv(
        ids: Annotated[str, Query(description="Result ids, comma-separated, of one model.")],
        threshold: Annotated[
            float | None,
            Query(ge=0, le=1, description="Detection: count boxes scoring this or more."),
        ] = None,
    ) -> Response:
        """One row per image with the columns ``mediscope predict`` writes: path, label
        and a probability per class (classification), path, mask and each class's pixel
        share (segmentation), path, boxes per class and total (detection,
        ``counts.csv``)."""
        wanted = [part.strip() for part in ids.split(",") if part.strip()]
        if not wanted:
            raise ApiError(400, "no result ids", hint="give ?ids=<id>,<id>,...")
        if len(wanted) > MAX_BATCH:
            raise ApiError(400, f"{len(wanted)} ids; one table takes {MAX_BATCH} at most")
        entries = [store.get(rid) for rid in wanted]
        text = await run_in_threadpool(table_text, entries, threshold)
        headers = {**NO_STORE, "Content-Disposition": 'attachment; filename="batch.csv"'}
        return Response(text.encode(), media_type="text/csv; charset=utf-8", headers=headers)

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(PLACEHOLDER_PAGE)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
