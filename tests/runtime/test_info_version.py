"""The metadata layout an exported model is written in: the oldest that holds it."""

from __future__ import annotations

import json

import pytest

from mediscope.errors import ConfigError
from mediscope.runtime.info import FORMAT_VERSION, LAYOUT_2_SETTINGS, InferenceSettings, ModelInfo


def _info(**kwargs: object) -> ModelInfo:
    base: dict[str, object] = dict(
        task="classification",
        classes=["a", "b"],
        image_size=(32, 32),
        channels=3,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )
    base.update(kwargs)
    return ModelInfo(**base)  # type: ignore[arg-type]


def test_a_plain_model_is_written_in_layout_1_without_the_new_keys() -> None:
    data = json.loads(_info().to_json())
    assert data["format_version"] == 1
    assert not {"intensity", "temperature", "thresholds"} & set(data)
    assert not set(LAYOUT_2_SETTINGS) & set(data["inference"])
    assert ModelInfo.from_json(json.dumps(data)) == _info()


@pytest.mark.parametrize(
    "extra",
    [
        {"intensity": (100.0, 4000.0)},
        {"temperature": 1.7},
        {"thresholds": {"op_threshold/a": 0.3}},
        {"task": "multilabel"},
        {"inference": InferenceSettings(agnostic_nms=True)},
        {"inference": InferenceSettings(mpp=0.5)},
        {"inference": InferenceSettings(score_threshold_source="default")},
    ],
)
def test_a_model_needing_layout_2_says_so_and_round_trips(extra: dict[str, object]) -> None:
    info = _info(**extra)
    data = json.loads(info.to_json())
    assert data["format_version"] == 2 == FORMAT_VERSION
    back = ModelInfo.from_json(info.to_json())
    assert back == info and back.format_version == 2


def test_a_newer_layout_is_refused_with_the_way_out() -> None:
    data = json.loads(_info().to_json())
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ConfigError, match="newer than this mediscope reads"):
        ModelInfo.from_json(json.dumps(data))
