"""Detection on whole images of any size: resized, or sliced into overlapping tiles.

An image larger than the window (``inference.window``, else ``data.crop_size`` when
the model was trained on crops: see :meth:`DetectionPredictor.from_config`) is cut
into overlapping tiles; each tile is resized to ``data.image_size`` as in training,
the tiles go through the model in batches, and the boxes of all tiles are merged
(NMS, or weighted boxes fusion). Only one tile batch is in memory besides the image,
so a 4,912 x 3,684 smear stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mediscope.config.schema import Config
from mediscope.data.transforms import build_transform
from mediscope.inference.boxes import merge_detections, tile_windows
from mediscope.models.detection.base import Detector
from mediscope.runtime.info import DEFAULT_SCORE_THRESHOLD
from mediscope.runtime.pipeline import (
    FLIP_AXES,
    merge_tiles,
    suppress_across_classes,
    vote_over_flips,
)
from mediscope.tasks import BaseTask, data_module

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "DetectionPredictor",
    "Detections",
    "counting_threshold",
    "resolve_counting_threshold",
]


@dataclass
class Detections:
    """Boxes (N, 4) xyxy in image pixels, scores (N,) and labels (N,) of one image."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


class DetectionPredictor:
    """Detects objects in ``H x W x C`` uint8 images of any size.

    Build it from a run's config with :meth:`from_config`.

    Args:
        model: The detector.
        image_size: ``H, W`` every image or tile is resized to (the training size).
        mean: Per-channel input mean (0..1), as in training.
        std: Per-channel input std (0..1).
        window: Tile size ``H, W``: larger images are cut into overlapping tiles;
            None predicts every image whole.
        overlap: Share of a tile shared with the next.
        batch_size: Tiles per forward pass.
        merge: How the boxes of overlapping tiles are merged: ``nms``, ``wbf`` or
            ``edge`` (:func:`mediscope.runtime.pipeline.edge_merge`).
        score_threshold: Boxes scoring less are dropped.
        iou_threshold: IoU above which the model's NMS and the tile merge join boxes.
        max_detections: Boxes kept per image, or per tile when tiled.
        agnostic_nms: Also suppress overlapping boxes of different classes (the
            best-scored one is kept).
        tta: The image and its flips vote on every object
            (:func:`mediscope.runtime.pipeline.fuse_views`); four passes per tile.
        num_classes: The detector's classes (default: ``model.num_classes``).
    """

    def __init__(
        self,
        model: Detector,
        *,
        image_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        window: tuple[int, int] | None = None,
        overlap: float = 0.25,
        batch_size: int = 4,
        merge: str = "nms",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = 0.5,
        max_detections: int = 300,
        agnostic_nms: bool = False,
        tta: bool = False,
        num_classes: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tta = tta
        known: int = getattr(model, "num_classes", 0)
        self.num_classes = int(num_classes or known)
        if tta and self.num_classes < 1:
            raise ValueError("test-time augmentation needs num_classes")
        self.size = image_size
        self.window = window
        self.overlap = overlap
        self.batch_size = batch_size
        self.merge = merge
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.agnostic_nms = agnostic_nms
        # evaluation's plain pipeline: every tile is resized to the training size
        self.transform = build_transform(image_size=image_size, mean=mean, std=std)
        self.device = next(model.parameters()).device

    @classmethod
    def from_config(
        cls,
        task: BaseTask,
        config: Config,
        *,
        stats: tuple[list[float], list[float]] | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> DetectionPredictor:
        """The predictor of ``task``'s detector as ``config`` sets it up.

        The tile size is ``inference.window``, else ``data.crop_size`` (a model trained
        on crops of large images predicts them in tiles of that size).

        Args:
            task: The restored task (its model detects).
            config: The run's config: ``data.image_size``, ``data.crop_size`` and the
                ``inference`` section.
            stats: Normalisation mean and std (the checkpoint's); default: the data
                module's for ``config``.
            score_threshold: Overrides ``inference.score_threshold`` (evaluation uses a
                low one, as COCO evaluations do); ``auto`` there stands for
                :data:`DEFAULT_SCORE_THRESHOLD`.
            max_detections: Overrides ``inference.max_detections``.
        """
        assert isinstance(task.model, Detector)
        mean, std = stats or data_module(config).normalization_stats()
        settings = config.inference
        if score_threshold is None:
            setting = settings.score_threshold
            score_threshold = DEFAULT_SCORE_THRESHOLD if setting == "auto" else float(setting)
        return cls(
            task.model,
            image_size=config.data.image_size,
            mean=mean,
            std=std,
            window=settings.window or config.data.crop_size,
            overlap=settings.overlap,
            batch_size=settings.batch_size,
            merge=settings.merge,
            score_threshold=score_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=max_detections or settings.max_detections,
            agnostic_nms=settings.agnostic_nms,
            tta=settings.tta,
        )

    def _batch(self, crops: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        tensors = [self.transform(image=crop)["image"] for crop in crops]
        images = torch.stack(tensors).to(self.device)
        if not self.tta:
            return self.model.predict(
                images,
                score_threshold=self.score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )

        # the image and its flips vote on every object (as the runtime's predictor does)
        def detect(flip: str, threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            dims = [int(d) for d in FLIP_AXES[flip]] if flip else []
            found = self.model.predict(
                images.flip(dims) if dims else images,
                score_threshold=threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )
            return [
                (
                    r["boxes"].float().cpu().numpy(),
                    r["scores"].float().cpu().numpy(),
                    r["labels"].cpu().numpy(),
                )
                for r in found
            ]

        voted = vote_over_flips(
            detect,
            (int(images.shape[-2]), int(images.shape[-1])),
            self.num_classes,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            agnostic=self.agnostic_nms,
        )
        return [
            {
                "boxes": torch.from_numpy(boxes.astype(np.float32)),
                "scores": torch.from_numpy(scores.astype(np.float32)),
                "labels": torch.from_numpy(labels),
            }
            for boxes, scores, labels in voted
        ]

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> Detections:
        """The detections of one image, in its own pixels."""
        height, width = image.shape[:2]
        if self.window is not None and (height > self.window[0] or width > self.window[1]):
            windows = tile_windows(height, width, self.window, self.overlap)
        else:
            windows = [(0, 0, height, width)]
        boxes, scores, labels = [], [], []
        tiles: list[np.ndarray] = []
        step = self.batch_size
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            found = self._batch([image[y0:y1, x0:x1] for y0, x0, y1, x1 in chunk])
            for (y0, x0, y1, x1), result in zip(chunk, found, strict=True):
                scale = np.array(
                    [(x1 - x0) / self.size[1], (y1 - y0) / self.size[0]] * 2, dtype=np.float32
                )
                offset = np.array([x0, y0, x0, y0], dtype=np.float32)
                boxes.append(result["boxes"].float().cpu().numpy() * scale + offset)
                scores.append(result["scores"].float().cpu().numpy())
                labels.append(result["labels"].cpu().numpy())
                tiles.append(np.full(len(labels[-1]), len(tiles), dtype=np.int64))
        all_boxes = np.concatenate(boxes).reshape(-1, 4)
        all_scores, all_labels = np.concatenate(scores), np.concatenate(labels)
        if len(windows) > 1 and len(all_boxes) and self.merge == "edge":
            all_boxes, all_scores, all_labels = merge_tiles(
                all_boxes,
                all_scores,
                all_labels,
                method="edge",
                iou_threshold=self.iou_threshold,
                image_size=(height, width),
                max_detections=self.max_detections * len(windows),
                tiles=np.concatenate(tiles),
                windows=windows,
                agnostic=self.agnostic_nms,
            )
        elif len(windows) > 1 and len(all_boxes):
            merged = merge_detections(
                all_boxes,
                all_scores,
                all_labels,
                method=self.merge,
                iou_threshold=self.iou_threshold,
                image_size=(height, width),
                # the limit holds per window: a whole smear holds many windows' worth
                max_detections=self.max_detections * len(windows),
                agnostic=self.agnostic_nms,
            )
            all_boxes, all_scores, all_labels = merged["boxes"], merged["scores"], merged["labels"]
        elif self.agnostic_nms and len(all_boxes):
            all_boxes, all_scores, all_labels = suppress_across_classes(
                all_boxes, all_scores, all_labels, self.iou_threshold
            )
        return Detections(
            np.asarray(all_boxes, np.float64).reshape(-1, 4),
            np.asarray(all_scores, np.float64),
            np.asarray(all_labels, np.int64),
        )


def counting_threshold(config: Config, checkpoint: Path) -> float:
    """``inference.score_threshold``, or for ``auto`` the run's F1-optimal threshold
    (:data:`DEFAULT_SCORE_THRESHOLD` without one); see :func:`resolve_counting_threshold`."""
    return resolve_counting_threshold(config, checkpoint)[0]


def resolve_counting_threshold(config: Config, checkpoint: Path) -> tuple[float, str]:
    """The score threshold counts are read at, and where it comes from.

    ``inference.score_threshold`` when it is a number (source ``set``); for ``auto`` the
    F1-optimal threshold found on the validation split at the end of ``fit`` or by
    ``validate`` (``score_threshold_f1`` in the run's ``val_metrics.json``, source
    ``calibrated``); without one, :data:`DEFAULT_SCORE_THRESHOLD` (source ``default``:
    a run stopped before its final validation).
    """
    import json

    from mediscope.engine.run_dir import run_dir_of

    setting = config.inference.score_threshold
    if setting != "auto":
        return float(setting), "set"
    run = run_dir_of(checkpoint)
    path = run / "val_metrics.json" if run is not None else None
    if path is not None and path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("score_threshold_f1")
        except (OSError, ValueError):
            value = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), "calibrated"
    return DEFAULT_SCORE_THRESHOLD, "default"
