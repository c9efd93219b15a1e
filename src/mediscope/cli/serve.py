"""``serve``: a web page and a JSON API over trained models (FastAPI on uvicorn)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import typer

from mediscope.errors import ConfigError

SERVE_PACKAGES = ("fastapi", "uvicorn", "multipart")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def address(host: str, port: int, token: str | None) -> str:
    """The page's address, with ``?token=`` when there is one.

    Example:
        >>> address("127.0.0.1", 8000, "s3cret")
        'http://127.0.0.1:8000/?token=s3cret'
    """
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _check_packages() -> None:
    import importlib.util

    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"mediscope serve needs {', '.join(missing)}",
            where="mediscope serve",
            hint="pip install 'mediscope[serve]'",
        )


def serve_command(
    sources: list[Path] | None = typer.Argument(
        None,
        help="Run folders, exported models (.onnx, .pt), or folders searched for run "
        "folders and .onnx files.",
        metavar="RUN_DIR|MODEL.onnx|FOLDER",
        show_default=False,
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    token: str | None = typer.Option(
        None,
        "--token",
        help="A secret the API asks for (Authorization: Bearer T, or ?token=T); the "
        "printed address carries it.",
        metavar="T",
    ),
    max_upload_mb: float = typer.Option(
        200.0, "--max-upload-mb", help="The largest upload in MB (413 beyond).", metavar="MB"
    ),
    queue: int = typer.Option(
        4, "--queue", help="Images that may wait per model while one is predicted (429 beyond)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads per model (default: all cores).", metavar="N"
    ),
) -> None:
    """Serve a web page and a JSON API (/docs) to predict images with trained models:
    upload an image, see the classes, boxes and counts or the mask, download the files.
    Listens on 127.0.0.1 (this machine only) unless --host says otherwise."""
    if not sources:
        raise ConfigError(
            "no models to serve",
            where="mediscope serve",
            hint="give run folders, exported .onnx files, or folders holding them",
        )
    if max_upload_mb <= 0:
        raise ConfigError("must be positive", where="--max-upload-mb")
    if queue < 0:
        raise ConfigError("must be 0 or more", where="--queue")
    _check_packages()
    import uvicorn

    from mediscope.serve.app import create_app

    app = create_app(
        sources, token=token, max_upload_mb=max_upload_mb, queue=queue, threads=threads
    )
    registry = app.state.registry
    for model in registry.models:
        if model.predictor is None:
            print(f"  {model.id}: failed to load: {model.error}")
        else:
            print(f"  {model.id}: {model.task}, {model.predictor.format} ({model.source})")
    print(f"{len(registry.loaded)} of {len(registry)} models loaded")
    if not token and not is_loopback(host):
        print(
            f"warning: listening on {host} without --token: anyone who can reach this "
            "machine can use the models and see the results",
            file=sys.stderr,
        )
    print(f"mediscope serve: {address(host, port, token)}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
