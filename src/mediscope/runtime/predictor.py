"""The :class:`Predictor`: a trained model called on images, whatever its format.

Get one with :func:`mediscope.load`; it predicts paths, arrays, PIL images and tensors
and returns typed results (:mod:`mediscope.runtime.results`). Large images go through
the same sliding window (segmentation) or tiles (detection) as ``mediscope predict``,
set by the model's inference settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mediscope.errors import ConfigError
from mediscope.metrics.calibration import apply_temperature, apply_temperature_sigmoid
from mediscope.runtime.backends import Backend
from mediscope.runtime.info import PRE_NMS_TOP, ModelInfo
from mediscope.runtime.inputs import chunks, folder_images, is_single, to_image
from mediscope.runtime.pipeline import (
    FLIP_AXES,
    Detections,
    dense_detections,
    merge_tiles,
    prepare,
    resize_maps,
    sliding_window,
    suppress_across_classes,
    tile_windows,
    vote_over_flips,
    with_flips,
)
from mediscope.runtime.results import (
    ClassificationResult,
    DetectionResult,
    Result,
    SegmentationResult,
)

#: Computes Grad-CAM heatmaps ``(N, H, W)`` of a batch for the given class indices.
CamFunction = Callable[[np.ndarray, Sequence[int]], np.ndarray]


class Predictor:
    """A trained model ready to predict images.

    Build it with :func:`mediscope.load` (a run folder, a checkpoint and its config, or
    an exported ``.onnx`` / TorchScript file).

    Args:
        backend: Where the network runs.
        info: The model's task, classes, input and inference settings.
        batch_size: Images (or windows, tiles) per forward pass; default: the model's
            ``inference.batch_size``.
        cam: Grad-CAM function of an eager classifier (None elsewhere).

    Example:
        >>> predictor = mediscope.load("runs/demo-gram-crops")  # doctest: +SKIP
        >>> result = predictor.predict("smear.png")  # doctest: +SKIP
        >>> result.label, result.probabilities  # doctest: +SKIP
        ('gram_positive', {'gram_negative': 0.04, 'gram_positive': 0.96})
    """

    def __init__(
        self,
        backend: Backend,
        info: ModelInfo,
        *,
        batch_size: int | None = None,
        cam: CamFunction | None = None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.batch_size = int(batch_size or info.inference.batch_size)
        if self.batch_size < 1:
            raise ConfigError(
                f"batch size must be at least 1, got {batch_size}", where="batch_size"
            )
        self._cam = cam

    @property
    def task(self) -> str:
        """``classification``, ``segmentation`` or ``detection``."""
        return self.info.task

    @property
    def classes(self) -> list[str]:
        """The class names, in index order."""
        return list(self.info.classes)

    @property
    def format(self) -> str:
        """Where the model runs: ``eager``, ``torchscript`` or ``onnx``."""
        return self.backend.name

    def with_settings(
        self,
        *,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        agnostic_nms: bool | None = None,
    ) -> Predictor:
        """The same model with other detection settings (None keeps the model's).

        Args:
            score_threshold: Boxes scoring less are dropped (counts included).
            iou_threshold: Boxes overlapping more are one object (NMS, tile merge).
            agnostic_nms: Also suppress overlapping boxes of different classes.

        Raises:
            ConfigError: for a model that does not detect, or a threshold out of range.

        Example:
            >>> strict = mediscope.load("runs/demo-gram-stain").with_settings(  # doctest: +SKIP
            ...     score_threshold=0.5, agnostic_nms=True)
        """
        given = (score_threshold, iou_threshold, agnostic_nms)
        if all(value is None for value in given):
            return self
        if self.task != "detection":
            raise ConfigError(
                f"score and IoU thresholds are for detectors; this model is a {self.task} model",
                where="score_threshold",
                hint="drop score_threshold, iou_threshold and agnostic_nms",
            )
        settings = self.info.inference.with_detection(
            score_threshold=score_threshold, iou_threshold=iou_threshold, agnostic_nms=agnostic_nms
        )
        info = replace(self.info, inference=settings)
        return Predictor(self.backend, info, batch_size=self.batch_size, cam=self._cam)

    def __repr__(self) -> str:
        size = "x".join(map(str, self.info.image_size))
        return (
            f"Predictor({self.task}, {len(self.classes)} classes: {', '.join(self.classes[:6])}"
            f"{', ...' if len(self.classes) > 6 else ''}; {size} px; {self.format})"
        )

    # --- the public calls -------------------------------------------------------------

    def predict(
        self,
        images: Any,
        *,
        probabilities: bool = False,
        cam: bool = False,
    ) -> Result | list[Result]:
        """Predicts one image or a list of images.

        Args:
            images: A path, a NumPy array (``H x W`` or ``H x W x C``; uint8, uint16 or
                float), a PIL image or a torch tensor; or a list or tuple of them.
            probabilities: Segmentation: keep the per-class probability maps.
            cam: Classification: add a Grad-CAM heatmap (eager PyTorch models only).

        Returns:
            One result for one image, a list for a list.
        """
        if is_single(images):
            return self.predict_batch([images], probabilities=probabilities, cam=cam)[0]
        return self.predict_batch(list(images), probabilities=probabilities, cam=cam)

    __call__ = predict

    def predict_batch(
        self,
        images: Sequence[Any],
        *,
        batch_size: int | None = None,
        probabilities: bool = False,
        cam: bool = False,
    ) -> list[Result]:
        """Predicts images, ``batch_size`` per forward pass; one result per image."""
        size = int(batch_size or self.batch_size)
        results: list[Result] = []
        for group in chunks(list(images), size):
            loaded = [self.load_image(item) for item in group]
            results.extend(self._predict_loaded(loaded, size, probabilities, cam))
        return results

    def predict_folder(
        self,
        folder: str | Path,
        *,
        recursive: bool = True,
        progress: bool = True,
        probabilities: bool = False,
        cam: bool = False,
    ) -> Iterator[Result]:
        """Predicts the images of a folder one batch at a time, with a progress bar.

        Yields:
            One result per image, in sorted path order (``result.path`` names it).
        """
        files = folder_images(folder, recursive=recursive)
        yield from self.iter_predict(files, progress=progress, probabilities=probabilities, cam=cam)

    def iter_predict(
        self,
        images: Sequence[Any],
        *,
        progress: bool = False,
        probabilities: bool = False,
        cam: bool = False,
    ) -> Iterator[Result]:
        """Predicts images lazily, a batch at a time (memory: one batch of images)."""
        items = list(images)
        bar = _progress(len(items)) if progress else None
        try:
            for group in chunks(items, self.batch_size):
                loaded = [self.load_image(item) for item in group]
                yield from self._predict_loaded(loaded, self.batch_size, probabilities, cam)
                if bar is not None:
                    bar[0].advance(bar[1], len(group))
        finally:
            if bar is not None:
                bar[0].stop()

    # --- the tasks ----------------------------------------------------------------------

    def load_image(self, item: Any) -> tuple[np.ndarray, str | None]:
        """An input as the model's ``H x W x C`` uint8 image (channels, DICOM window,
        intensity window), and its path when it has one."""
        return to_image(
            item,
            channels=self.info.channels,
            dicom_window=self.info.dicom_window,
            intensity=self.info.intensity,
        )

    def _predict_loaded(
        self,
        loaded: list[tuple[np.ndarray, str | None]],
        batch_size: int,
        probabilities: bool,
        cam: bool,
    ) -> list[Result]:
        if cam and self.task not in ("classification", "multilabel"):
            raise ConfigError("Grad-CAM is for classifiers", where="cam", hint="drop cam=True")
        if self.task in ("classification", "multilabel"):
            return list(self._classify(loaded, batch_size, cam))
        if self.task == "segmentation":
            return [self._segment(image, path, batch_size, probabilities) for image, path in loaded]
        if self.task == "detection":
            return [self._detect(image, path, batch_size) for image, path in loaded]
        raise ConfigError(f"no predictor for the task {self.task!r}", where="task")

    def _prepare(self, image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
        return prepare(image, size=size, mean=self.info.mean, std=self.info.std)

    def _classify(
        self, loaded: list[tuple[np.ndarray, str | None]], batch_size: int, cam: bool
    ) -> list[ClassificationResult]:
        if cam and self._cam is None:
            raise ConfigError(
                f"Grad-CAM needs the PyTorch model; this one is {self.format}",
                where="cam",
                hint="load the run folder or checkpoint instead of the exported file",
            )
        classes = self.classes
        results = []
        for group in chunks(loaded, batch_size):
            batch = np.stack([self._prepare(image, self.info.image_size) for image, _ in group])
            outputs = self.backend.run(batch)["probabilities"]
            multilabel = self.task == "multilabel"
            if multilabel:
                probs = apply_temperature_sigmoid(outputs, self.info.temperature)
            else:
                probs = apply_temperature(outputs, self.info.temperature)
            indices = probs.argmax(axis=1)
            heatmaps = self._cam(batch, indices.tolist()) if cam and self._cam else None
            for i, (image, path) in enumerate(group):
                index = int(indices[i])
                heatmap = None
                if heatmaps is not None:
                    heatmap = resize_maps(heatmaps[i][None], image.shape[:2])[0]
                results.append(
                    ClassificationResult(
                        label=classes[index],
                        index=index,
                        probabilities={c: float(p) for c, p in zip(classes, probs[i], strict=True)},
                        path=path,
                        cam=heatmap,
                        labels=self._present(probs[i]) if multilabel else None,
                    )
                )
        return results

    def _present(self, probs: np.ndarray) -> list[str]:
        """Labels at or above their threshold (0.5 without one)."""
        cut = self.info.thresholds
        return [c for c, p in zip(self.classes, probs, strict=True) if p >= cut.get(c, 0.5)]

    def segment_probabilities(self, image: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """``(K, H, W)`` float32 class probabilities of an ``H x W x C`` uint8 image."""
        settings = self.info.inference
        height, width = image.shape[:2]

        def forward(batch: np.ndarray) -> np.ndarray:
            return self.backend.run(batch)["probabilities"]

        probs_of = with_flips(forward) if settings.tta else forward
        if settings.window is not None:
            return sliding_window(
                probs_of,
                self._prepare(image, None),
                window=settings.window,
                overlap=settings.overlap,
                batch_size=int(batch_size or self.batch_size),
                gaussian=settings.gaussian,
            )
        maps = probs_of(self._prepare(image, self.info.image_size)[None])[0]
        return resize_maps(np.asarray(maps, dtype=np.float32), (height, width))

    def _segment(
        self, image: np.ndarray, path: str | None, batch_size: int, keep: bool
    ) -> SegmentationResult:
        probs = self.segment_probabilities(image, batch_size)
        mask = probs.argmax(axis=0).astype(np.uint8 if len(self.classes) <= 256 else np.int32)
        return SegmentationResult(
            mask=mask, classes=self.classes, probabilities=probs if keep else None, path=path
        )

    def _detect_batch(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Detections per image of a prepared batch, in its input pixels; with
        ``inference.tta`` the image and its flips vote (:func:`fuse_views`)."""
        settings = self.info.inference
        if not settings.tta:
            return self._detect_view(batch, settings.score_threshold)

        def detect(flip: str, threshold: float) -> list[Detections]:
            flipped = np.flip(batch, axis=FLIP_AXES[flip]) if flip else batch
            return self._detect_view(np.ascontiguousarray(flipped), threshold)

        return vote_over_flips(
            detect,
            (int(batch.shape[-2]), int(batch.shape[-1])),
            len(self.classes),
            score_threshold=settings.score_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=settings.max_detections,
            agnostic=settings.agnostic_nms,
        )

    def _detect_view(
        self, batch: np.ndarray, score_threshold: float
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        settings = self.info.inference
        detect = getattr(self.backend, "detect", None)
        if detect is not None:
            found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = detect(
                batch,
                score_threshold=score_threshold,
                iou_threshold=settings.iou_threshold,
                max_detections=settings.max_detections,
            )
            return found
        outputs = self.backend.run(batch)
        return [
            dense_detections(
                boxes,
                scores,
                score_threshold=score_threshold,
                iou_threshold=settings.iou_threshold,
                max_detections=settings.max_detections,
                pre_nms_top=PRE_NMS_TOP,
            )
            for boxes, scores in zip(outputs["boxes"], outputs["scores"], strict=True)
        ]

    def _detect(self, image: np.ndarray, path: str | None, batch_size: int) -> DetectionResult:
        settings = self.info.inference
        size = self.info.image_size
        height, width = image.shape[:2]
        window = settings.window
        if window is not None and (height > window[0] or width > window[1]):
            windows = tile_windows(height, width, window, settings.overlap)
        else:
            windows = [(0, 0, height, width)]
        boxes, scores, labels = [], [], []
        tiles: list[np.ndarray] = []
        for chunk in chunks(windows, batch_size):
            batch = np.stack([self._prepare(image[y0:y1, x0:x1], size) for y0, x0, y1, x1 in chunk])
            for (y0, x0, y1, x1), (b, s, lab) in zip(chunk, self._detect_batch(batch), strict=True):
                scale = np.array([(x1 - x0) / size[1], (y1 - y0) / size[0]] * 2, dtype=np.float32)
                offset = np.array([x0, y0, x0, y0], dtype=np.float32)
                boxes.append(np.asarray(b, np.float32).reshape(-1, 4) * scale + offset)
                scores.append(np.asarray(s, np.float32).reshape(-1))
                labels.append(np.asarray(lab, np.int64).reshape(-1))
                tiles.append(np.full(len(labels[-1]), len(tiles), dtype=np.int64))
        all_boxes = np.concatenate(boxes).reshape(-1, 4)
        all_scores, all_labels = np.concatenate(scores), np.concatenate(labels)
        if len(windows) > 1 and len(all_boxes):
            # the limit holds per window: a whole smear holds many windows' worth
            all_boxes, all_scores, all_labels = merge_tiles(
                all_boxes,
                all_scores,
                all_labels,
                method=settings.merge,
                iou_threshold=settings.iou_threshold,
                image_size=(height, width),
                max_detections=settings.max_detections * len(windows),
                tiles=np.concatenate(tiles),
                windows=windows,
                agnostic=settings.agnostic_nms,
            )
        elif settings.agnostic_nms and len(all_boxes):
            # within each class first (as an eager detector does), then across classes:
            # the same boxes whatever the model's format
            all_boxes, all_scores, all_labels = suppress_across_classes(
                all_boxes, all_scores, all_labels, settings.iou_threshold
            )
        return DetectionResult(
            boxes=np.asarray(all_boxes, np.float64).reshape(-1, 4),
            scores=np.asarray(all_scores, np.float64),
            class_indices=np.asarray(all_labels, np.int64),
            classes=self.classes,
            image_size=(height, width),
            path=path,
        )


def _progress(total: int) -> tuple[Any, Any]:
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    return bar, bar.add_task("predicting", total=total)
