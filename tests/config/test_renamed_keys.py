"""Renamed config keys: the old name still loads, with a deprecation warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mediscope.config.schema import WINDOW_RENAMED
from mediscope.errors import ConfigError
from mediscope.tasks.validate import load_config

CONFIG = """\
task: classification
data:
  path: data/train
{extra}model:
  name: resnet18
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG.format(extra=extra))
    return path


def test_old_window_key_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = load_config(write(tmp_path, "  dicom_window: [40, 400]\n"))
    with caplog.at_level(logging.WARNING), pytest.warns(DeprecationWarning, match="dicom_window"):
        old = load_config(write(tmp_path, "  window: [40, 400]\n"))
    assert WINDOW_RENAMED in caplog.text
    assert old.data.dicom_window == (40.0, 400.0)
    assert old.model_dump() == new.model_dump()


def test_old_window_key_as_override(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="data.window is renamed"):
        config = load_config(write(tmp_path, ""), ["data.window=[40,400]"])
    assert config.data.dicom_window == (40.0, 400.0)


def test_an_empty_old_window_key_is_taken_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """Run folders written before the rename hold ``window: null``."""
    config = load_config(write(tmp_path, "  window: null\n"))
    assert config.data.dicom_window is None
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
    assert WINDOW_RENAMED not in caplog.text


def test_both_window_keys_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "  window: [40, 400]\n  dicom_window: [40, 400]\n"))
    message = str(info.value)
    assert "\n" not in message
    assert "data.window is the old name of data.dicom_window" in message
