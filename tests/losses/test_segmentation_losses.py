"""Segmentation losses against values computed by hand, ignore_index, ComboLoss, the
builder's errors, and pixel-frequency class weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mediscope.data.masks import count_mask_pixels
from mediscope.errors import ConfigError
from mediscope.losses import loss_names
from mediscope.losses.classification import FocalLoss
from mediscope.losses.segmentation import (
    SEGMENTATION_LOSSES,
    ComboLoss,
    DiceCELoss,
    DiceLoss,
    SegmentationBCELoss,
    TverskyLoss,
    build_segmentation_loss,
    pixel_class_weights,
)
from mediscope.registry import LOSSES

LN3 = math.log(3.0)
# One image, two classes, 2 x 2 pixels. Class 0's logit is 0 everywhere, so class 1's
# probability is sigmoid(class 1's logit): ln 3 -> 3/4, 0 -> 1/2, -ln 3 -> 1/4.
#   p1 = [[3/4, 1/2], [1/4, 1/4]]   p0 = [[1/4, 1/2], [3/4, 3/4]]
#   y  = [[1,   0  ], [0,   1  ]]
LOGITS = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[LN3, 0.0], [-LN3, -LN3]]]])
TARGET = torch.tensor([[[1, 0], [0, 1]]])
# Soft counts per class (sums over the four pixels):
#   class 1: TP = 3/4 + 1/4 = 1,  FP = sum p1 - TP = 7/4 - 1 = 3/4,  FN = 2 - 1 = 1
#   class 0: TP = 1/2 + 3/4 = 5/4, FP = 9/4 - 5/4 = 1,             FN = 2 - 5/4 = 3/4
# Dice with smooth s: (2 TP + 2 s) / (2 TP + FP + FN + 2 s); with s = 1:
DICE_1 = (2 * 1 + 2) / (2 * 1 + 0.75 + 1 + 2)  # 4 / 5.75
DICE_0 = (2 * 1.25 + 2) / (2 * 1.25 + 1 + 0.75 + 2)  # 4.5 / 6.25 = 0.72


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.clone().requires_grad_(True)


def test_dice_by_hand() -> None:
    assert DiceLoss()(LOGITS, TARGET).item() == pytest.approx(1 - (DICE_0 + DICE_1) / 2)
    # Without smoothing: plain soft Dice 2 TP / (2 TP + FP + FN).
    plain_1, plain_0 = 2 / (2 + 0.75 + 1), 2.5 / (2.5 + 1 + 0.75)
    assert DiceLoss(smooth=0.0)(LOGITS, TARGET).item() == pytest.approx(1 - (plain_0 + plain_1) / 2)
    assert DiceLoss(include_background=False)(LOGITS, TARGET).item() == pytest.approx(1 - DICE_1)
    weighted = (1 * (1 - DICE_0) + 3 * (1 - DICE_1)) / 4
    assert DiceLoss(weight=[1.0, 3.0])(LOGITS, TARGET).item() == pytest.approx(weighted)
    per_class = DiceLoss(reduction="none")(LOGITS, TARGET)
    assert per_class.tolist() == pytest.approx([1 - DICE_0, 1 - DICE_1])
    assert DiceLoss(reduction="sum")(LOGITS, TARGET).item() == pytest.approx(2 - DICE_0 - DICE_1)


def test_tversky_by_hand_and_equal_to_dice_at_one_half() -> None:
    # TP / (TP + 0.3 FP + 0.7 FN), smooth 0:
    class_1 = 1 / (1 + 0.3 * 0.75 + 0.7 * 1)  # 1 / 1.925
    class_0 = 1.25 / (1.25 + 0.3 * 1 + 0.7 * 0.75)  # 1.25 / 2.075
    loss = TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(LOGITS, TARGET)
    assert loss.item() == pytest.approx(1 - (class_0 + class_1) / 2)
    # beta > alpha: missing object pixels costs more than the same number of extra ones.
    swapped = TverskyLoss(alpha=0.7, beta=0.3, smooth=0.0)(LOGITS, TARGET)
    assert swapped.item() != pytest.approx(loss.item())
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 5, 6))
    for smooth in (0.0, 1.0, 5.0):
        assert TverskyLoss(alpha=0.5, beta=0.5, smooth=smooth)(logits, target).item() == (
            pytest.approx(DiceLoss(smooth=smooth)(logits, target).item())
        )


def test_absent_class_gives_no_nan() -> None:
    # Class 2 is in neither target nor (almost) the prediction: it scores ~1, not NaN.
    logits = torch.tensor([[[[5.0]], [[0.0]], [[-30.0]]]])
    target = torch.tensor([[[0]]])
    loss = DiceLoss(reduction="none")(logits, target)
    assert torch.isfinite(loss).all()
    assert loss[2].item() == pytest.approx(0.0, abs=1e-6)


def test_focal_on_masks_by_hand_with_ignore_index() -> None:
    # p_t per pixel: 3/4, 1/2, 3/4, 1/4; focal term (1 - p_t)^2 * -ln p_t, gamma 2.
    terms = [
        (1 / 4) ** 2 * math.log(4 / 3),
        (1 / 2) ** 2 * math.log(2),
        (1 / 4) ** 2 * math.log(4 / 3),
        (3 / 4) ** 2 * math.log(4),
    ]
    assert FocalLoss(gamma=2.0)(LOGITS, TARGET).item() == pytest.approx(sum(terms) / 4)
    ignored = TARGET.clone()
    ignored[0, 1, 1] = 255  # the last pixel
    focal = FocalLoss(gamma=2.0, ignore_index=255)
    assert focal(LOGITS, ignored).item() == pytest.approx(sum(terms[:3]) / 3)
    # alpha per class: pixel classes 1, 0, 0, 1.
    alpha = FocalLoss(gamma=2.0, alpha=[0.25, 1.0])(LOGITS, TARGET).item()
    expected = (terms[0] + 0.25 * terms[1] + 0.25 * terms[2] + terms[3]) / 4
    assert alpha == pytest.approx(expected)
    assert "segmentation" in LOSSES.entry("FocalLoss").tags["tasks"]


@pytest.mark.parametrize(
    "name",
    ["DiceLoss", "TverskyLoss", "FocalLoss", "CrossEntropyLoss", "BCEWithLogitsLoss"],
)
def test_ignored_pixels_change_nothing(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, :2] = 255
    target[1, 3, 1] = 255
    loss = build_segmentation_loss(
        name, params={}, class_weights=None, ignore_index=255, num_classes=3
    )
    changed = logits.clone()
    changed[0, :, :2] = torch.randn(3, 2, 5) * 10
    changed[1, :, 3, 1] = torch.tensor([9.0, -9.0, 3.0])
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item())
    # ...and no gradient reaches them.
    leaf = _copy(logits)
    loss(leaf, target).backward()
    assert leaf.grad is not None
    assert leaf.grad[0, :, :2].abs().max().item() == 0.0
    assert leaf.grad[0, :, 2:].abs().max().item() > 0.0


def test_ignored_pixels_are_the_same_as_dropped_pixels() -> None:
    # The last pixel ignored equals the 1 x 3 image of the other three pixels.
    ignored = TARGET.clone()
    ignored[0, 1, 1] = 255
    kept_logits = LOGITS.reshape(1, 2, 1, 4)[..., :3]
    kept_target = TARGET.reshape(1, 1, 4)[..., :3]
    for loss_class in (DiceLoss, TverskyLoss):
        with_ignore = loss_class(ignore_index=255)(LOGITS, ignored)
        assert with_ignore.item() == pytest.approx(loss_class()(kept_logits, kept_target).item())


def test_gradients_flow_through_dice_and_tversky() -> None:
    target = torch.randint(0, 3, (2, 6, 6))
    for loss in (DiceLoss(), TverskyLoss(alpha=0.3, beta=0.7), DiceLoss(weight=[0, 1, 2])):
        logits = _copy(torch.randn(2, 3, 6, 6))
        value = loss(logits, target)
        value.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        assert logits.grad.abs().sum().item() > 0
        # A step against the gradient lowers the loss.
        with torch.no_grad():
            assert loss(logits - 50 * logits.grad, target).item() < value.item()


def test_half_precision_sums_do_not_overflow() -> None:
    # 90,000 pixels: float16 sums would pass 65,504 and become inf.
    logits = torch.zeros(1, 2, 300, 300, dtype=torch.float16)
    target = torch.ones(1, 300, 300, dtype=torch.long)
    assert torch.isfinite(DiceLoss()(logits, target))


def test_bce_uses_one_hot_channels_by_hand() -> None:
    # Pixel [0, 0]: class 1, logits (0, ln 3): channel 0 y = 0 -> -ln(1 - 1/2) = ln 2,
    # channel 1 y = 1 -> -ln(3/4). Keep only that pixel.
    target = torch.full((1, 2, 2), 255)
    target[0, 0, 0] = 1
    bce = SegmentationBCELoss(ignore_index=255)
    assert bce(LOGITS, target).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    weighted = SegmentationBCELoss(ignore_index=255, pos_weight=[1.0, 2.0])
    assert weighted(LOGITS, target).item() == pytest.approx((math.log(2) + 2 * math.log(4 / 3)) / 2)
    # Without ignored pixels: torch's BCE against the one-hot target.
    onehot = F.one_hot(TARGET, 2).permute(0, 3, 1, 2).float()
    assert SegmentationBCELoss()(LOGITS, TARGET).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(LOGITS, onehot).item()
    )


def test_class_weights_change_cross_entropy_as_expected() -> None:
    # Per-pixel CE: -ln 3/4, -ln 1/2, -ln 3/4, -ln 1/4; classes 1, 0, 0, 1; weights (1, 3).
    # torch's weighted mean divides by the summed weights of the pixels: 3 + 1 + 1 + 3.
    ce = build_segmentation_loss(
        "CrossEntropyLoss",
        params={},
        class_weights=torch.tensor([1.0, 3.0]),
        ignore_index=None,
        num_classes=2,
    )
    expected = (3 * math.log(4 / 3) + math.log(2) + math.log(4 / 3) + 3 * math.log(4)) / 8
    assert ce(LOGITS, TARGET).item() == pytest.approx(expected)
    plain = (math.log(4 / 3) + math.log(2) + math.log(4 / 3) + math.log(4)) / 4
    assert expected > plain  # the badly predicted class-1 pixel counts three times


def test_class_weights_reach_every_term() -> None:
    weights = torch.tensor([0.5, 1.5])
    combo = build_segmentation_loss(
        "ComboLoss",
        params={"ce": 1, "focal": 1, "dice": 1, "tversky": 1, "bce": 1},
        class_weights=weights,
        ignore_index=255,
        num_classes=2,
    )
    assert isinstance(combo, ComboLoss)
    ce, focal, dice, tversky, bce = combo.losses
    assert torch.equal(ce.weight, weights) and ce.ignore_index == 255
    assert torch.equal(focal.alpha, weights) and focal.ignore_index == 255
    assert torch.equal(dice.weight, weights) and torch.equal(tversky.weight, weights)
    assert torch.equal(bce.pos_weight, weights) and bce.ignore_index == 255
    # A loss's own per-class keyword wins over the class weights.
    own = build_segmentation_loss(
        "DiceLoss",
        params={"weight": [2, 1]},
        class_weights=weights,
        ignore_index=None,
        num_classes=2,
    )
    assert own.weight.tolist() == [2.0, 1.0]


def test_combo_is_the_weighted_sum_of_its_terms() -> None:
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    s5 = build_segmentation_loss(
        "ComboLoss",
        params={"ce": 1, "dice": 3},
        class_weights=None,
        ignore_index=None,
        num_classes=3,
    )
    expected = F.cross_entropy(logits, target) + 3 * DiceLoss()(logits, target)
    assert s5(logits, target).item() == pytest.approx(expected.item())
    s4 = ComboLoss(terms={"FocalLoss": 1.0, "dice": 1.0})
    expected = FocalLoss()(logits, target) + DiceLoss()(logits, target)
    assert s4(logits, target).item() == pytest.approx(expected.item())
    values = s4.term_values(logits, target)
    assert set(values) == {"FocalLoss", "DiceLoss"}
    keyed = build_segmentation_loss(
        "ComboLoss",
        params={"ce": 0.5, "tversky": {"weight": 2, "alpha": 0.3, "beta": 0.7}},
        class_weights=None,
        ignore_index=None,
        num_classes=3,
    )
    expected = 0.5 * F.cross_entropy(logits, target) + 2 * TverskyLoss(alpha=0.3, beta=0.7)(
        logits, target
    )
    assert keyed(logits, target).item() == pytest.approx(expected.item())
    default = build_segmentation_loss(
        "DiceCELoss", params={}, class_weights=None, ignore_index=None, num_classes=3
    )
    assert isinstance(default, DiceCELoss)
    expected = F.cross_entropy(logits, target) + DiceLoss()(logits, target)
    assert default(logits, target).item() == pytest.approx(expected.item())
    heavier = build_segmentation_loss(
        "DiceCELoss", params={"dice": 2}, class_weights=None, ignore_index=None, num_classes=3
    )
    assert heavier.weights == [1.0, 2.0]


def test_builder_errors_name_the_problem() -> None:
    def build(name: str, params: dict, **kw: object) -> object:
        args: dict = {"class_weights": None, "ignore_index": None, "num_classes": 2, **kw}
        return build_segmentation_loss(name, params=params, **args)

    with pytest.raises(ConfigError, match="did you mean 'dice'") as info:
        build("ComboLoss", {"ce": 1, "dcie": 3})
    assert info.value.where == "loss.params" and "tversky" in str(info.value)
    with pytest.raises(ConfigError, match="does not fit segmentation") as info:
        build("NLLLoss", {})
    assert info.value.where == "loss.name" and "DiceLoss" in str(info.value)
    with pytest.raises(ConfigError, match="did you mean 'DiceLoss'"):
        build("DiceLos", {})
    with pytest.raises(ConfigError, match="DiceLoss has no keyword 'smoth'") as info:
        build("DiceLoss", {"smoth": 1})
    assert "did you mean 'smooth'" in str(info.value)
    with pytest.raises(ConfigError, match="TverskyLoss has no keyword 'gama'") as info:
        build("ComboLoss", {"tversky": {"weight": 1, "gama": 2}})
    assert info.value.where == "loss.params.tversky"
    with pytest.raises(ConfigError, match="not a number"):
        build("ComboLoss", {"ce": "a lot"})
    with pytest.raises(ConfigError, match="CrossEntropyLoss is given twice"):
        build("ComboLoss", {"ce": 1, "CrossEntropyLoss": 2})
    with pytest.raises(ConfigError, match="needs its terms"):
        build("ComboLoss", {})
    with pytest.raises(ConfigError, match="DiceCELoss has no keyword 'focal'"):
        build("DiceCELoss", {"focal": 1})
    with pytest.raises(ConfigError, match="3 class weights for 2 classes"):
        build("DiceLoss", {}, class_weights=torch.ones(3))
    with pytest.raises(ConfigError, match="weight has 3 values for 2 classes"):
        build("CrossEntropyLoss", {"weight": [1, 2, 3]})
    with pytest.raises(ConfigError, match="TverskyLoss: alpha, beta and smooth"):
        build("TverskyLoss", {"alpha": -1})
    with pytest.raises(ConfigError, match="reduction"):
        build("DiceLoss", {"reduction": "max"})


def test_registry_lists_the_segmentation_losses() -> None:
    names = loss_names("segmentation")
    assert set(SEGMENTATION_LOSSES) <= set(names)
    assert "NLLLoss" not in names and "NLLLoss" in loss_names("classification")
    assert "DiceLoss" not in loss_names("classification")
    assert LOSSES.get("DiceCELoss") is DiceCELoss
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 4, 4))
    for name in SEGMENTATION_LOSSES:
        params = {"dice": 1} if name == "ComboLoss" else {}
        loss = build_segmentation_loss(
            name,
            params=params,
            class_weights=torch.tensor([0.5, 1.5]),
            ignore_index=255,
            num_classes=2,
        )
        assert torch.isfinite(loss(logits, target)), name


def test_pixel_class_weights_exact_values() -> None:
    counts = [900, 100, 0]
    # inverse: 1/0.9 : 1/0.1 = 1 : 9, mean 1 over the two present classes -> 0.2, 1.8.
    assert pixel_class_weights(counts, "inverse").tolist() == pytest.approx([0.2, 1.8, 0.0])
    # balanced: 1000 / (2 x 900) : 1000 / (2 x 100) is also 1 : 9.
    assert pixel_class_weights(counts, "balanced").tolist() == pytest.approx([0.2, 1.8, 0.0])
    # inverse_sqrt: 1/sqrt(0.9) : 1/sqrt(0.1) = 1 : 3 -> 0.5, 1.5.
    weights = pixel_class_weights(np.array(counts), "inverse_sqrt")
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([0.5, 1.5, 0.0])
    assert pixel_class_weights([5, 5, 5], "inverse").tolist() == pytest.approx([1, 1, 1])
    assert pixel_class_weights([0, 0], "inverse").tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="did you mean 'inverse'"):
        pixel_class_weights(counts, "invers")  # type: ignore[arg-type]


def test_count_mask_pixels() -> None:
    masks = [
        np.array([[0, 0, 1], [255, 2, 2]], dtype=np.uint8),
        np.array([[1, 1], [0, 255]], dtype=np.uint8),
    ]
    counts = count_mask_pixels(masks, num_classes=3, ignore_index=255)
    assert counts.tolist() == [3, 3, 2]
    assert count_mask_pixels([np.array([[0, 7]])], num_classes=2).tolist() == [1, 0]
