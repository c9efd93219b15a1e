"""One LightningModule per task; ``TASKS`` maps task names to their classes."""

from __future__ import annotations

from mediscope.registry import Registry
from mediscope.tasks.base import BaseTask
from mediscope.tasks.classification import ClassificationTask
from mediscope.tasks.detection import DetectionTask
from mediscope.tasks.segmentation import SegmentationTask

TASKS: Registry[type[BaseTask]] = Registry("task")
TASKS.register("classification", ClassificationTask)
TASKS.register("segmentation", SegmentationTask)
TASKS.register("detection", DetectionTask)

__all__ = ["TASKS", "BaseTask", "ClassificationTask", "DetectionTask", "SegmentationTask"]
