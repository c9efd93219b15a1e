"""The dataset doctor: ``mediscope check CONFIG|PATH``.

It reads a dataset as training would (every format, every task) and reports, without
stopping at the first problem:

- orphans both ways: images without labels or masks, labels, masks and manifest rows
  without images (for detection an image without a label file is a negative: info);
- images that do not decode: zero-byte, unreadable or truncated files (decoded to the
  end, so that a JPEG cut in half is caught);
- every malformed or out-of-range label line or entry, with its file and line (COCO:
  its entry), through the readers' own checks; zero-size and out-of-image boxes;
- mask values outside the class table and masks of another size than their image;
- exact duplicates (the same pixels) and near duplicates (perceptual hash and
  thumbnail correlation) within a split (warning) and across splits (leakage: error),
  and patients (``group``) in two splits (error);
- statistics: image modes, bit depths and sizes; class balance per image, per object
  (detection) and per pixel (segmentation); box sizes and aspect ratios.

Splits are the data's own (split folders, a split column, ``data.test_path``); when the
config splits at random only test and the rest are compared, unless a run's
``split.json`` gives the split. ``data.exclude`` is applied as training applies it.

Example:
    >>> report = check_dataset(load_config("configs/demo/gram-crops.yaml"))  # doctest: +SKIP
    >>> report.counts  # doctest: +SKIP
    {'error': 0, 'warning': 0, 'info': 1}
"""

from __future__ import annotations

from mediscope.data.doctor.findings import KINDS, SEVERITIES, Finding
from mediscope.data.doctor.run import (
    CheckReport,
    check_dataset,
    dataset_inputs,
    write_check_json,
    write_exclude,
)
from mediscope.data.doctor.sources import detect_format, is_config

__all__ = [
    "KINDS",
    "SEVERITIES",
    "CheckReport",
    "Finding",
    "check_dataset",
    "dataset_inputs",
    "detect_format",
    "is_config",
    "write_check_json",
    "write_exclude",
]
