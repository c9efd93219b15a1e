"""Atomic writes: the target appears whole or not at all, with the usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mediscope.files import write_json_atomic, write_text_atomic, write_with


def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a" / "config.yaml", "x: 1\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        private = write_text_atomic(tmp_path / "private.txt", "x")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "m.json", {"a": float("nan"), "b": 1.0})
    assert target.read_text() == '{\n  "a": null,\n  "b": 1.0\n}\n'

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_with(target, fail)
    assert target.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
