"""``mediscope serve``: a web page and a JSON API over trained models, for a lab's
network.

:func:`~mediscope.serve.app.create_app` builds the FastAPI app (``pip install
'mediscope[serve]'``); ``mediscope serve`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from mediscope.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'mediscope.serve' has no attribute {name!r}")
