"""mediscope: deep learning on medical and microbiological images.

Classification, object detection and semantic segmentation, from a dataset check to a
trained, evaluated, reported and exported model, with one config file and one command.

Examples:
    >>> import mediscope
    >>> config = mediscope.load_config("configs/demo/gram-crops.yaml")  # doctest: +SKIP
    >>> result = mediscope.fit(config)  # doctest: +SKIP
    >>> predictor = mediscope.load(result.run_dir)  # doctest: +SKIP
    >>> predictor.predict("smear.png").counts()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "mediscope.tasks.validate",
    "Config": "mediscope.config",
    "fit": "mediscope.api",
    "test": "mediscope.api",
    "validate": "mediscope.api",
    "build_model": "mediscope.models",
    "list_models": "mediscope.api",
    "MediscopeError": "mediscope.errors",
    "load": "mediscope.api.loading",
    "export_run": "mediscope.export",
    "Predictor": "mediscope.runtime.predictor",
    "ModelInfo": "mediscope.runtime.info",
    "ClassificationResult": "mediscope.runtime.results",
    "DetectionResult": "mediscope.runtime.results",
    "SegmentationResult": "mediscope.runtime.results",
}


def __getattr__(name: str) -> Any:
    # The public API is imported lazily: `mediscope --help` must not wait for torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mediscope' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
