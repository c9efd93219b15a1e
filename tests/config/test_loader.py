"""Config loading: errors name file, line, key, value and choices; --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediscope.config import parse_override_value
from mediscope.errors import ConfigError
from mediscope.tasks.validate import config_from_text, load_config

TEN_LINES = """\
task: classification
data:
  format: imagefolder
  path: data/train
  image_size: 64
model:
  name: resnet18
trainer:
  max_epochs: 3
"""


def load_text(text: str, tmp_path: Path, *overrides: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return load_config(path, overrides)


def test_ten_line_config_is_valid_with_task_defaults(tmp_path: Path) -> None:
    cfg = load_text(TEN_LINES, tmp_path)
    assert cfg.data.image_size == (64, 64)
    assert cfg.loss.name == "CrossEntropyLoss"
    assert cfg.checkpoint.monitor == "val/f1_macro"
    assert cfg.checkpoint.mode == "max"
    assert cfg.optimizer.name == "AdamW"
    assert cfg.trainer.max_epochs == 3
    assert cfg.run.dir == Path("runs")


def test_unknown_key_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    text = TEN_LINES.replace("  name: resnet18", "  name: resnet18\n  pretrianed: true")
    with pytest.raises(ConfigError) as info:
        load_text(text, tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'cfg.yaml'}:8: model.pretrianed: unknown key" in message
    assert "did you mean 'pretrained'?" in message
    assert "valid: name, pretrained, freeze" in message


def test_unknown_top_level_section(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"cfg.yaml:10: optimiser: unknown key; did you mean 'optimizer'"
    ):
        load_text(TEN_LINES + "optimiser:\n  lr: 0.1\n", tmp_path)


def test_wrong_type_names_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(TEN_LINES.replace("max_epochs: 3", "max_epochs: many"), tmp_path)
    message = str(info.value)
    assert "cfg.yaml:9: trainer.max_epochs" in message
    assert "'many'" in message and "integer" in message


def test_bad_choice_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(TEN_LINES + "logging:\n  progress: rihc\n", tmp_path)
    message = str(info.value)
    assert "logging.progress" in message and "'rihc'" in message
    assert "did you mean 'rich'?" in message


def test_unknown_model_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(TEN_LINES.replace("resnet18", "resnet19"), tmp_path)
    message = str(info.value)
    assert "cfg.yaml:7: model.name: unknown model 'resnet19'" in message
    assert "did you mean 'resnet18'?" in message
    assert "simple_cnn" in message and "timm:<name>" in message


def test_unknown_timm_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown timm model 'resnet_nope'"):
        load_text(TEN_LINES.replace("resnet18", "timm:resnet_nope"), tmp_path)
    cfg = load_text(TEN_LINES.replace("resnet18", "timm:resnet10t"), tmp_path)
    assert cfg.model.name == "timm:resnet10t"


@pytest.mark.parametrize(
    ("section", "text", "expected"),
    [
        (
            "optimizer",
            "optimizer:\n  name: Adamm\n",
            "unknown optimizer 'Adamm'; did you mean 'Adam'?",
        ),
        ("scheduler", "scheduler:\n  name: CosineLR\n", "unknown scheduler 'CosineLR'"),
        ("loss", "loss:\n  name: CrossEntropy\n", "did you mean 'CrossEntropyLoss'?"),
    ],
)
def test_unknown_registered_names(tmp_path: Path, section: str, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(TEN_LINES + text, tmp_path)
    assert f"cfg.yaml:11: {section}.name" in str(info.value)
    assert expected in str(info.value)


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"data.path: required key is missing; add 'path' under 'data'"
    ):
        load_text(TEN_LINES.replace("  path: data/train\n", ""), tmp_path)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: invalid YAML"):
        load_text("task: classification\ndata:\n  path: [unclosed\n", tmp_path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the config is empty"):
        load_text("# nothing\n", tmp_path)
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_text("- a\n- b\n", tmp_path)


def test_set_overrides_with_coercion(tmp_path: Path) -> None:
    cfg = load_text(
        TEN_LINES,
        tmp_path,
        "trainer.max_epochs=7",
        "optimizer.lr=1e-4",
        "trainer.deterministic=true",
        "data.image_size=[32,48]",
        "data.classes=a,b,c",
        "scheduler.name=CosineAnnealingLR",
        "scheduler.params.eta_min=0.00001",
        "trainer.gradient_clip_val=null",
    )
    assert cfg.trainer.max_epochs == 7
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    assert cfg.trainer.deterministic is True
    assert cfg.data.image_size == (32, 48)
    assert cfg.data.classes == ["a", "b", "c"]
    assert cfg.scheduler.params == {"eta_min": pytest.approx(1e-5)}
    assert cfg.trainer.gradient_clip_val is None


def test_set_errors_point_at_the_override(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--set: trainer.max_epoch: unknown key; did you mean 'max_epochs'"
    ):
        load_text(TEN_LINES, tmp_path, "trainer.max_epoch=5")
    with pytest.raises(ConfigError, match="has no '='"):
        load_text(TEN_LINES, tmp_path, "trainer.max_epochs")
    with pytest.raises(ConfigError, match="'task' is a value, not a section"):
        load_text(TEN_LINES, tmp_path, "task.x=1")


def test_parse_override_value() -> None:
    assert parse_override_value("3") == 3
    assert parse_override_value("0.5") == 0.5
    assert parse_override_value("false") is False
    assert parse_override_value("[1, 2]") == [1, 2]
    assert parse_override_value("1,2") == [1, 2]
    assert parse_override_value("adam") == "adam"
    assert parse_override_value("") == ""


def test_freeze_accepts_all_none_and_a_count(tmp_path: Path) -> None:
    assert load_text(TEN_LINES, tmp_path, "model.freeze=all").model.freeze == "all"
    assert load_text(TEN_LINES, tmp_path, "model.freeze=2").model.freeze == 2
    with pytest.raises(ConfigError, match="model.freeze"):
        load_text(TEN_LINES, tmp_path, "model.freeze=some")


def test_early_stopping_monitor_defaults_to_checkpoint_monitor() -> None:
    cfg = config_from_text(TEN_LINES + "  early_stopping:\n    patience: 3\n")
    assert cfg.trainer.early_stopping is not None
    assert cfg.trainer.early_stopping.monitor == "val/f1_macro"
    assert cfg.trainer.early_stopping.mode == "max"
    cfg = config_from_text(TEN_LINES + "checkpoint:\n  monitor: val/loss\n")
    assert cfg.checkpoint.mode == "min"


SEGMENTATION = """\
task: segmentation
data:
  format: masks
  path: data/lesions
  classes: [background, lesion]
model:
  name: unet
"""


def test_segmentation_defaults_and_mask_keys(tmp_path: Path) -> None:
    cfg = load_text(SEGMENTATION, tmp_path, "inference.window=128", "data.ignore_index=255")
    assert cfg.loss.name == "DiceCELoss"
    assert (cfg.checkpoint.monitor, cfg.checkpoint.mode) == ("val/dice_mean", "max")
    assert cfg.inference.window == (128, 128) and cfg.inference.overlap == 0.25
    assert cfg.data.ignore_index == 255 and cfg.data.mask_suffix == ".png"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  palette: {lesoin: [255, 0, 0]}\n", "palette names lesoin are not in data.classes"),
        ("augment:\n  crop_scale: [0.8, 0.5]\n", "augment.crop_scale: give [low, high]"),
        ("  ignore_index: 300\n", "data.ignore_index"),
    ],
)
def test_segmentation_key_errors(tmp_path: Path, extra: str, expected: str) -> None:
    if extra.startswith("  "):
        text = SEGMENTATION.replace(
            "  classes: [background, lesion]\n", "  classes: [background, lesion]\n" + extra
        )
    else:
        text = SEGMENTATION + extra
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load_text(text, tmp_path)
