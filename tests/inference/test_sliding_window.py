"""Sliding-window blending, flip test-time augmentation and predict_mask."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from mediscope.errors import ConfigError
from mediscope.inference.sliding_window import (
    MIN_WEIGHT,
    gaussian_weight,
    predict_mask,
    sliding_window_logits,
    window_starts,
)
from mediscope.inference.tta import flip_tta


@pytest.fixture
def pointwise() -> nn.Module:
    """A 1x1 convolution: each output pixel depends on its own input pixel only, so the
    stitched windows must equal one pass over the whole image."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, kernel_size=1).eval()


def whole(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(image if image.ndim == 4 else image[None])
        return out


@pytest.mark.parametrize(
    ("size", "window", "overlap"),
    [((300, 517), (128, 128), 0.25), ((64, 96), (32, 48), 0.5), ((20, 30), (64, 64), 0.25)],
)
def test_stitched_pointwise_model_equals_whole_image(
    pointwise: nn.Module,
    size: tuple[int, int],
    window: tuple[int, int],
    overlap: float,
) -> None:
    image = torch.randn(3, *size)
    tiled = sliding_window_logits(pointwise, image, window=window, overlap=overlap)
    assert tiled.shape == (1, 4, *size) and tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, whole(pointwise, image), atol=1e-5, rtol=0)


def test_batch_of_images_and_probability_output(pointwise: nn.Module) -> None:
    images = torch.randn(2, 3, 70, 90)
    probs = sliding_window_logits(
        pointwise, images, window=(32, 32), overlap=0.5, batch_size=3, output="probs"
    )
    assert probs.shape == (2, 4, 70, 90)
    expected = whole(pointwise, images).softmax(dim=1)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 70, 90), atol=1e-5, rtol=0)


def test_windows_cover_every_pixel_and_end_at_the_border() -> None:
    for length, window, overlap in [
        (517, 128, 0.25),
        (300, 128, 0.5),
        (128, 128, 0.0),
        (129, 128, 0),
    ]:
        starts = window_starts(length, window, overlap)
        assert starts[0] == 0 and starts[-1] == length - window
        stride = int(window * (1 - overlap))
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(0 < gap <= stride for gap in gaps)  # overlap at least the one asked
        covered = torch.zeros(length, dtype=torch.bool)
        for start in starts:
            covered[start : start + window] = True
        assert covered.all()
    # 517 with stride 96: ceil(389 / 96) = 5 steps, equally spaced by 77.8
    assert window_starts(517, 128, 0.25) == [0, 78, 156, 233, 311, 389]
    assert window_starts(20, 64, 0.25) == [0]


def test_every_pixel_gets_a_positive_weight() -> None:
    weight = gaussian_weight((128, 96))
    assert weight.max() == 1.0 and weight.min() >= MIN_WEIGHT
    assert weight[64, 48] > weight[0, 48] and weight[64, 48] > weight[64, 0]
    # ones blended stay ones: the summed weights divide out everywhere, borders included
    ones = sliding_window_logits(
        lambda x: torch.ones(x.shape[0], 1, *x.shape[-2:]),
        torch.zeros(1, 300, 517),
        window=(128, 128),
    )
    assert torch.isfinite(ones).all() and (ones == 1).all()


def column_ramp(height: int, width: int) -> torch.Tensor:
    """An image whose only channel is each pixel's column index."""
    return torch.arange(width, dtype=torch.float32).expand(1, height, width).clone()


def tile_mean(x: torch.Tensor) -> torch.Tensor:
    """A constant map per window: the mean column index the window sees."""
    return x.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])


def test_constant_windows_blend_smoothly_with_gaussian_weights() -> None:
    # two windows side by side: columns 0..63 (mean 31.5) and 32..95 (mean 63.5)
    image = column_ramp(64, 96)
    blended = sliding_window_logits(tile_mean, image, window=(64, 64), overlap=0.5)[0, 0]
    torch.testing.assert_close(blended[:, :32], torch.full((64, 32), 31.5))
    torch.testing.assert_close(blended[:, 64:], torch.full((64, 32), 63.5))
    row = blended[32]
    steps = row[1:] - row[:-1]
    assert (steps >= -1e-4).all()  # from one window's value to the other's, never back
    assert steps.max() < 32 / 4  # a logistic of scale 2 px, not a seam of 32
    assert row[47] + row[48] == pytest.approx(2 * 47.5, abs=1e-4)  # symmetric around 47.5

    # by hand at row 32, column 40: Gaussian (sigma 8) weights of the two windows
    sigma = 64 * 0.125
    row_factor = math.exp(-((32 - 31.5) ** 2) / (2 * sigma**2))
    w0 = row_factor * math.exp(-((40 - 31.5) ** 2) / (2 * sigma**2))
    w1 = row_factor * math.exp(-((40 - 32 - 31.5) ** 2) / (2 * sigma**2))
    assert row[40].item() == pytest.approx((w0 * 31.5 + w1 * 63.5) / (w0 + w1), abs=1e-4)

    flat = sliding_window_logits(tile_mean, image, window=(64, 64), overlap=0.5, gaussian=False)
    flat = flat[0, 0]
    # equal weights: the plain mean of the two
    torch.testing.assert_close(flat[:, 32:64], torch.full((64, 32), 47.5))


def test_windows_go_through_forward_in_batches() -> None:
    seen: list[tuple[int, ...]] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    sliding_window_logits(forward, torch.zeros(2, 3, 100, 100), window=(40, 40), batch_size=4)
    # starts per axis: ceil(60 / 30) = 2 steps -> 3 positions -> 9 windows per image, 18 in all
    assert [s[0] for s in seen] == [4, 4, 4, 4, 2]
    assert all(s[1:] == (3, 40, 40) for s in seen)


def test_bad_settings_are_config_errors(pointwise: nn.Module) -> None:
    image = torch.zeros(3, 16, 16)
    with pytest.raises(ConfigError, match="inference.overlap"):
        sliding_window_logits(pointwise, image, window=(8, 8), overlap=1.0)
    with pytest.raises(ConfigError, match="inference.window"):
        sliding_window_logits(pointwise, image, window=(0, 8))
    with pytest.raises(ConfigError, match="inference.batch_size"):
        sliding_window_logits(pointwise, image, window=(8, 8), batch_size=0)
    with pytest.raises(ValueError, match="forward must map"):
        sliding_window_logits(lambda x: x[..., :4, :4], image, window=(8, 8))


def test_flip_tta_of_a_flip_equivariant_model_is_the_plain_softmax(pointwise: nn.Module) -> None:
    image = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(
            flip_tta(pointwise)(image), pointwise(image).softmax(dim=1), atol=1e-6, rtol=0
        )


def test_flip_tta_of_a_position_dependent_model_is_the_mean_of_the_flips() -> None:
    height, width = 5, 7
    ramp = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width) / 10

    def biased(x: torch.Tensor) -> torch.Tensor:  # class 1 favoured towards the bottom right
        return torch.cat([x[:, :1], x[:, :1] + ramp], dim=1)

    x = torch.randn(1, 1, height, width)
    by_hand = (
        biased(x).softmax(1)
        + biased(x.flip(-1)).softmax(1).flip(-1)
        + biased(x.flip(-2)).softmax(1).flip(-2)
        + biased(x.flip(-2).flip(-1)).softmax(1).flip(-1).flip(-2)
    ) / 4
    got = flip_tta(biased)(x)
    torch.testing.assert_close(got, by_hand, atol=1e-6, rtol=0)
    assert not torch.allclose(got, biased(x).softmax(1), atol=1e-3)  # the flips did count
    only_h = (biased(x).softmax(1) + biased(x.flip(-1)).softmax(1).flip(-1)) / 2
    torch.testing.assert_close(flip_tta(biased, flips=("h",))(x), only_h, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown flips"):
        flip_tta(biased, flips=("d",))


def test_predict_mask_whole_windowed_and_with_flips(pointwise: nn.Module) -> None:
    image = torch.randn(3, 150, 211)
    expected = whole(pointwise, image).softmax(dim=1)[0]
    plain = predict_mask(pointwise, image)
    windowed = predict_mask(pointwise, image, window=(64, 64), overlap=0.25)
    flipped = predict_mask(pointwise, image, window=(64, 64), tta=True, batch_size=2)
    for probs in (plain, windowed, flipped):
        assert probs.shape == (4, 150, 211)
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)
    small = predict_mask(pointwise, image[:, :10, :12], window=(64, 64), tta=True)
    torch.testing.assert_close(small, expected[:, :10, :12], atol=1e-5, rtol=0)
