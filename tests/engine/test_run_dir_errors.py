"""An unwritable run folder or a full disk fails before training with one clear line and
leaves nothing behind; a full disk while saving a checkpoint keeps the previous one."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config
from mediscope.api import fit
from mediscope.engine import checkpoints, run_dir
from mediscope.engine.checkpoints import AtomicCheckpointIO, save_checkpoint_file
from mediscope.engine.run_dir import check_run_dir, create_run_dir
from mediscope.errors import RunDirError
from mediscope.tasks.validate import config_from_dict

Usage = namedtuple("Usage", "total used free")


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_run_dir_under_a_file_fails_before_anything_is_written(
    tiny_crops: Path, tmp_path: Path, write_config: Any, cli: Any
) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the run folder should be\n")
    cfg = write_config(tiny_config(tiny_crops, blocker / "deeper"), "cfg.yaml")
    result = cli("fit", cfg)
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: {blocker / 'deeper' / 'tiny'}: cannot create the run folder")
    assert "--set run.dir=PATH" in line
    assert tree(tmp_path) == ["cfg.yaml", "runs"]


def _read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``folder`` unwritable; as root (whom chmod does not stop) by refusing to create
    files and folders in it."""
    folder.chmod(0o500)
    probe = folder / ".probe"
    try:
        probe.touch()
    except PermissionError:
        return
    probe.unlink()
    real_open, real_mkdir = os.open, Path.mkdir

    def refuse(path: Any) -> None:
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if not self.exists():
            refuse(self)
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(run_dir.os, "open", fake_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)


def test_a_read_only_run_dir(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    _read_only(runs / "tiny", monkeypatch)
    try:
        with pytest.raises(RunDirError) as caught:
            fit(config_from_dict(tiny_config(tiny_crops, runs)))
        assert "cannot create the run folder (Permission denied)" in str(caught.value)
        assert str(runs / "tiny") in str(caught.value)
        assert tree(runs) == ["tiny"]
    finally:
        (runs / "tiny").chmod(0o700)


def test_a_resumed_run_in_a_folder_that_became_read_only(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1})
    run = fit(config_from_dict(raw)).run_dir
    before = tree(run)
    _read_only(run, monkeypatch)
    raw["trainer"]["max_epochs"] = 2
    try:
        with pytest.raises(RunDirError, match="the run folder is not writable") as caught:
            fit(config_from_dict(raw), resume="last")
        assert caught.value.where == str(run)
        assert tree(run) == before
    finally:
        run.chmod(0o700)


def test_too_little_free_space(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_config: Any, cli: Any
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 8192, 8192))
    cfg = write_config(tiny_config(tiny_crops, tmp_path / "runs" / "new"), "cfg.yaml")
    result = cli("fit", cfg)
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'runs' / 'new' / 'tiny'}/")
    assert ": only 8.0 KB free on its disk, and the checkpoints and reports need about " in line
    assert line.endswith(
        "free disk space, or choose a folder on a larger disk with --set run.dir=PATH"
    )
    assert tree(tmp_path) == ["cfg.yaml"]  # the folders it created are gone again


def test_create_run_dir_checks_space_for_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need = run_dir.space_needed(10 * 2**20)
    assert need == 30 * 2**20 + run_dir.SPACE_MARGIN
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, need - 1))
    with pytest.raises(RunDirError, match=r"only 80\.0 MB free .* need about 80\.0 MB"):
        create_run_dir(tmp_path, "x", need_bytes=need)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, need))
    run = create_run_dir(tmp_path, "x", need_bytes=need)
    assert tree(run) == ["checkpoints"]  # the probe file is gone
    check_run_dir(run, need_bytes=need)
    assert tree(run) == ["checkpoints"]


def test_a_failed_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def half_then_fail(obj: Any, file: Any) -> None:
        file.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(RunDirError) as caught:
        save_checkpoint_file({"epoch": 2, "w": torch.zeros(3)}, path, save=half_then_fail)
    assert str(caught.value).startswith(f"{path}: no space left on the device while writing it;")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]

    def interrupted(obj: Any, file: Any) -> None:
        file.write(b"PK")
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_file({"epoch": 2}, path, save=interrupted)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]
    loaded = AtomicCheckpointIO().load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(3))


def test_a_full_disk_during_training(
    tiny_crops: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_config: Any,
    cli: Any,
) -> None:
    saves: list[str] = []
    real_save = torch.save

    def save(obj: Any, file: Any) -> None:
        name = Path(file.name).name
        if obj.get("epoch") == 1:  # the disk fills up at the end of the second epoch
            file.write(b"PK\x03\x04")
            saves.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, file)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    raw = tiny_config(
        tiny_crops, tmp_path / "runs", trainer={"max_epochs": 3}, checkpoint={"every_n_epochs": 1}
    )
    result = cli("fit", write_config(raw, "cfg.yaml"))
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    (run,) = (tmp_path / "runs" / "tiny").iterdir()
    folder = run / "checkpoints"
    assert line.startswith(f"error: {folder}/")
    assert ": no space left on the device while writing it; free disk space" in line
    assert line.endswith(f"then continue the run with --resume {run}")
    assert len(saves) == 1
    # epoch 0's checkpoints are whole, and no temporary file is left
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "epoch=000.ckpt", "last.ckpt"]
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(folder / name, weights_only=True)["epoch"] == 0


def test_a_resumed_run_removes_the_temporary_files_of_a_killed_one(
    tiny_crops: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 1})
    run = fit(config_from_dict(raw)).run_dir
    before = tree(run)
    leftovers = [
        run / "checkpoints" / ".last.ckpt.pending",
        run / "checkpoints" / ".best.ckpt.k2j4x1.tmp",
        run / ".metrics.csv.a8d0q_.tmp",
        run / "plots" / ".training_curves.png.zz91m3.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    assert sorted(run_dir.remove_leftovers(run)) == sorted(leftovers)
    assert tree(run) == before


@pytest.mark.parametrize("epoch", [0, 1])
def test_an_error_while_training_removes_a_new_run_folder_without_checkpoint(
    tiny_crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epoch: int
) -> None:
    from mediscope.errors import DataError
    from mediscope.tasks import TASKS

    cls = TASKS.get("classification").module
    original = cls.training_step

    def training_step(self: Any, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == epoch and batch_idx == 1:  # e.g. an image that cannot be read
            raise DataError("cannot read the image", where="broken.png", hint="replace it")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(cls, "training_step", training_step)
    raw = tiny_config(tiny_crops, tmp_path / "runs", trainer={"max_epochs": 2})
    with pytest.raises(DataError, match="^broken.png: cannot read the image; replace it$"):
        fit(config_from_dict(raw))
    runs = list((tmp_path / "runs" / "tiny").iterdir())
    if epoch == 0:
        assert runs == []  # nothing to resume in it
    else:
        (run,) = runs  # epoch 0 finished: the run is kept, and resumable
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
