"""Albumentations pipelines from the ``augment`` section."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from mediscope.config.schema import AugmentConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A box keeping less than this share of its area after a crop or rotation is dropped.
MIN_BOX_VISIBILITY = 0.4


def normalization(
    kind: str | tuple[list[float], list[float]], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std (0..1 scale) for ``imagenet``, ``none`` or explicit stats."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if kind == "lite0":  # TF-ported EfficientNet-Lite weights: (x - 0.498) / 0.502
        mean, std = (0.498,) * 3, (0.502,) * 3
    elif kind == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif kind == "none":
        mean, std = (0.0,) * 3, (1.0,) * 3
    elif isinstance(kind, tuple):
        mean, std = tuple(kind[0]), tuple(kind[1])
        if len(mean) != channels or len(std) != channels:
            from mediscope.errors import ConfigError

            raise ConfigError(
                f"normalize has {len(mean)} means and {len(std)} stds for {channels} channels",
                where="data.normalize",
            )
        return mean, std
    else:
        raise ValueError(f"unknown normalisation {kind!r}")
    if channels == 1:  # grayscale: the average of the RGB statistics
        return (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


def augmentations(cfg: AugmentConfig, channels: int = 3) -> list[A.BasicTransform]:
    """The training augmentations the config asks for, in a fixed order."""
    ops: list[A.BasicTransform] = []
    if cfg.equalize:
        ops.append(A.Equalize(p=cfg.equalize))
    if cfg.invert:
        ops.append(A.InvertImg(p=cfg.invert))
    if cfg.grayscale and channels == 3:
        ops.append(A.ToGray(num_output_channels=3, p=cfg.grayscale))
    if cfg.sharpen:
        ops.append(A.Sharpen(p=cfg.sharpen))
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.vflip:
        ops.append(A.VerticalFlip(p=cfg.vflip))
    if cfg.rotate90:
        ops.append(A.RandomRotate90(p=cfg.rotate90))
    if cfg.rotate:
        ops.append(A.Rotate(limit=cfg.rotate, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        ops.append(
            A.ColorJitter(
                brightness=cfg.brightness,
                contrast=cfg.contrast,
                saturation=cfg.saturation,
                hue=cfg.hue,
                p=1.0,
            )
        )
    if cfg.blur:
        ops.append(A.GaussianBlur(blur_limit=(3, 5), p=cfg.blur))
    return ops


def normalizing(mean: Sequence[float], std: Sequence[float]) -> list[A.BasicTransform]:
    """Normalise (uint8 pixels, 0..1 ``mean`` and ``std``) → CHW float tensor.

    The last steps of every pipeline: :func:`build_transform` ends with them, and
    :func:`build_normalize` is them alone.
    """
    return [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]


def build_normalize(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalise → tensor at the image's own size (no resize), e.g. for sliding windows."""
    return A.Compose(normalizing(mean, std))


def build_transform(
    *,
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig | None = None,
    channels: int = 3,
    boxes: bool = False,
) -> A.Compose:
    """Resize → (augmentations) → normalise → tensor; ``augment=None`` for evaluation.

    Masks passed as ``mask=`` move with the image (nearest-neighbour resampling).
    ``augment.crop_scale`` replaces the resize by a random scale and crop. With
    ``boxes``, ``bboxes=`` (xyxy pixels) and ``labels=`` move with the image: clipped to
    it, and dropped when less than :data:`MIN_BOX_VISIBILITY` of a box stays inside.
    """
    ops: list[A.BasicTransform]
    if augment is not None and augment.crop_scale is not None:
        ops = [A.RandomResizedCrop(size=image_size, scale=augment.crop_scale, p=1.0)]
    else:
        ops = [A.Resize(height=image_size[0], width=image_size[1])]
    if augment is not None:
        ops.extend(augmentations(augment, channels))
    ops.extend(normalizing(mean, std))
    if boxes:
        params = A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=MIN_BOX_VISIBILITY,
            clip=True,
        )
        return A.Compose(ops, bbox_params=params)
    return A.Compose(ops)
