"""Training a task as its config says: run folder, Trainer, stops and NaN losses.

:func:`train` reads and splits the data and builds the task before it creates the run
folder (bad input leaves nothing behind), writes the run's records, trains, and turns
Ctrl-C, SIGTERM and a non-finite loss into one-line errors that say what is left.
Evaluation and reports come after it (:func:`mediscope.api.fit`).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException

from mediscope.config.loader import dump_config, locate, parse_config_dict
from mediscope.config.schema import Config
from mediscope.data.datamodule import SPLIT_FILE, MediscopeDataModule
from mediscope.engine.checkpoints import checkpoint_epoch, read_checkpoint
from mediscope.engine.distributed import (
    DistributedRun,
    is_launch_zero,
    lightning_sigterm,
    spans_processes,
)
from mediscope.engine.environment import environment_info
from mediscope.engine.loggers import check_loggers
from mediscope.engine.run_dir import (
    CHECKPOINTS,
    LAST,
    check_run_dir,
    create_run_dir,
    remove_leftovers,
    resolve_checkpoint,
    run_dir_of,
    space_needed,
)
from mediscope.engine.trainer import build_trainer, check_accelerator, quiet_lightning
from mediscope.errors import (
    ConfigError,
    InterruptedRun,
    MediscopeError,
    NonFiniteLossError,
    RunDirError,
    Terminated,
    TerminatedRun,
)
from mediscope.files import write_json_atomic, write_text_atomic
from mediscope.models.pretrained import load_weights_file
from mediscope.tasks import BaseTask, build_task, data_module


@dataclass
class Trained:
    """What :func:`train` leaves: the run folder, the Trainer and the data."""

    run_dir: Path
    trainer: L.Trainer
    datamodule: MediscopeDataModule
    resumed_from: Path | None


#: The keys of a config that may differ from the run's own when it is resumed (a key, or
#: a whole section): ``trainer.max_epochs`` (to train longer), the machine it runs on
#: (``trainer.accelerator``, ``data.num_workers`` and the loader's options), and what
#: only logs, evaluates or reports the run. Everything else decides what the checkpoint's
#: epochs trained and what the next ones train, so a resume must keep it as the run's
#: ``config.yaml`` says.
RESUME_MAY_DIFFER: tuple[str, ...] = (
    "trainer.max_epochs",
    "trainer.accelerator",
    "trainer.compile",
    "trainer.log_every_n_steps",
    "trainer.test_after_fit",
    "trainer.limit_test_batches",
    "data.num_workers",
    "data.persistent_workers",
    "data.pin_memory",
    "data.prefetch_factor",
    "data.test_path",
    "data.max_pixels",
    "logging",
    "report",
    "inference",
)

#: How many differing keys a refused resume names.
_SHOWN_DIFFERENCES = 6


def check_resume_config(config: Config, run_dir: Path) -> None:
    """Refuses to resume ``run_dir`` with a config other than the one it was made with.

    The rule: the resolved ``config`` (every default written out) must equal the run's
    ``config.yaml`` in every key except those of :data:`RESUME_MAY_DIFFER`. Checked
    before anything is read or written, so that a refused resume leaves the run as it was.

    Raises:
        ConfigError: naming the run folder and the keys that differ (the run's value,
            then this config's).
        RunDirError: the run's ``config.yaml`` cannot be read.
    """
    saved_file = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(saved_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(
            f"cannot read the run's config ({type(exc).__name__})",
            where=saved_file,
            hint="resume a run folder that mediscope wrote, or start a new run",
        ) from None
    theirs = _flat(_resolved(saved))
    _adopt_percentile_window(config, theirs)
    ours = _flat(config.model_dump(mode="json"))
    differ = [
        f"{key} {_shown(theirs, key)} -> {_shown(ours, key)}"
        for key in [*ours, *(k for k in theirs if k not in ours)]
        if theirs.get(key, _ABSENT) != ours.get(key, _ABSENT)
        and not any(key == k or key.startswith(k + ".") for k in RESUME_MAY_DIFFER)
    ]
    if differ:
        more = len(differ) - _SHOWN_DIFFERENCES
        shown = ", ".join(differ[:_SHOWN_DIFFERENCES]) + (f" and {more} more" if more > 0 else "")
        raise ConfigError(
            f"--resume of a run made with another config (the run's value -> this "
            f"config's): {shown}",
            where=run_dir,
            hint=f"resume with that run's config ({saved_file}) or start a new run; only "
            "trainer.max_epochs and settings that do not change the training (logging, "
            "report, inference, data.num_workers, ...) may differ",
        )


_ABSENT = object()


def _adopt_percentile_window(config: Config, saved: dict[str, Any]) -> None:
    """``data.intensity: percentile`` without min and max takes the window the run
    computed when it started (its config.yaml's), as it is computed once per run."""
    intensity = config.data.intensity
    if intensity.mode != "percentile" or intensity.window() is not None:
        return
    lo, hi = saved.get("data.intensity.min"), saved.get("data.intensity.max")
    same = all(saved.get(f"data.intensity.{k}") == getattr(intensity, k) for k in ("low", "high"))
    if isinstance(lo, int | float) and isinstance(hi, int | float) and same:
        config.data.intensity = intensity.model_copy(update={"min": lo, "max": hi})


def _resolved(saved: Any) -> dict[str, Any]:
    """A run's saved config with every default written out, as the schema reads it (a
    config written by another version keeps its own keys)."""
    if not isinstance(saved, dict):
        return {}
    try:
        return parse_config_dict(saved).model_dump(mode="json")
    except MediscopeError:
        return saved


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}`` (lists are values, an empty dict has no keys)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _shown(flat: dict[str, Any], key: str) -> str:
    value = flat.get(key, _ABSENT)
    return "(not set)" if value is _ABSENT else repr(value)


def _resume_point(config: Config, resume: str | Path) -> tuple[Path, int, Path | None]:
    """The checkpoint to resume, its first epoch to train and its run folder (checked to
    have been made with a compatible config)."""
    ckpt_path = resolve_checkpoint(resume, base=config.run.dir, name=config.run.name)
    run_dir = run_dir_of(ckpt_path)
    if run_dir is not None:
        check_resume_config(config, run_dir)
    data = read_checkpoint(ckpt_path)
    resume_epoch = int(data.get("epoch", -1)) + 1
    if resume_epoch >= config.trainer.max_epochs:
        raise ConfigError(
            f"the checkpoint already finished epoch {resume_epoch - 1} of "
            f"max_epochs={config.trainer.max_epochs}",
            where=ckpt_path,
            hint=f"raise it, e.g. --set trainer.max_epochs={config.trainer.max_epochs * 2}",
        )
    return ckpt_path, resume_epoch, run_dir


def train(
    config: Config,
    *,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    callbacks: list[L.Callback] | None = None,
    run_dir: Path | None = None,
    read_test: bool = False,
) -> Trained:
    """Trains a model as the (validated) config says; see :func:`mediscope.api.fit`.

    With ``read_test``, ``data.test_path`` (when set) is read before anything is written,
    so that test data that cannot be read fails before the training, not after it.

    Raises:
        InterruptedRun: Ctrl-C stopped it (``TerminatedRun``: SIGTERM).
        NonFiniteLossError: the training loss became NaN or infinite.
        RunDirError: the run folder cannot be written, or its disk is full.
    """
    quiet_lightning()
    check_accelerator(config)
    ckpt_path: Path | None = None
    resume_epoch: int | None = None
    if resume is not None:
        if weights is not None:
            raise ConfigError("--resume and --weights exclude each other", where="command line")
        ckpt_path, resume_epoch, run_dir = _resume_point(config, resume)
    split_file = run_dir / SPLIT_FILE if run_dir is not None else None

    # Read, split and build everything before creating the run folder, so that bad
    # input leaves nothing behind.
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = data_module(config, split_file=split_file, reuse_split=True)
    task = build_task(
        config,
        datamodule.classes,
        class_counts=datamodule.train_class_counts(),
        normalization=datamodule.normalization_stats(),
    )
    check_loggers(config)
    if read_test and config.data.test_path is not None:
        datamodule.test_set()
    if weights is not None:
        load_weights_file(task.model, Path(weights))

    if config.trainer.compile:
        compile_model(task, config)
    if not is_launch_zero():
        # Another process of a DDP run: process 0 makes and writes the run folder.
        trainer, run_dir = _train_share(
            config, task, datamodule, run_dir, ckpt_path, resume_epoch, callbacks
        )
        return Trained(run_dir, trainer, datamodule, ckpt_path)
    created = run_dir is None
    run_dir = _prepare_run_dir(config, run_dir, need_bytes=space_needed(_state_bytes(task)))
    try:
        trainer = _train(
            config, task, datamodule, run_dir, ckpt_path, resume_epoch, callbacks, created
        )
    except BaseException:
        # A new run folder in which no epoch finished holds nothing to resume or read:
        # a stop or an error before the first checkpoint leaves nothing behind.
        if created and not (run_dir / CHECKPOINTS / LAST).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return Trained(run_dir, trainer, datamodule, ckpt_path)


def _train_share(
    config: Config,
    task: BaseTask,
    datamodule: MediscopeDataModule,
    run_dir: Path | None,
    ckpt_path: Path | None,
    resume_epoch: int | None,
    callbacks: list[L.Callback] | None,
) -> tuple[L.Trainer, Path]:
    """Trains the share of a process other than 0 of a DDP run, writing nothing.

    Its run folder is process 0's (sent at setup); until then a path that nothing
    writes to stands for it.
    """
    shared = DistributedRun(run_dir or config.run.dir / config.run.name)
    trainer = build_trainer(
        config,
        shared.run_dir,
        resume_epoch=resume_epoch,
        progress_keys=["train/loss", "val/loss", config.checkpoint.monitor],
        extra_callbacks=[shared, *(callbacks or [])],
    )
    _fit_or_explain(trainer, task, datamodule, ckpt_path, config, shared.run_dir, created=False)
    return trainer, shared.run_dir


def _fit(
    trainer: L.Trainer,
    task: BaseTask,
    datamodule: MediscopeDataModule,
    ckpt_path: Path | None,
) -> None:
    """``trainer.fit``, with SIGTERM left to Lightning when several processes train."""
    with lightning_sigterm(spans_processes(trainer)):
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except Exception as exc:
            if _is_compile_error(exc):
                raise _compile_failed(exc) from None
            raise


def _train(
    config: Config,
    task: BaseTask,
    datamodule: MediscopeDataModule,
    run_dir: Path,
    ckpt_path: Path | None,
    resume_epoch: int | None,
    callbacks: list[L.Callback] | None,
    created: bool,
) -> L.Trainer:
    """Writes the run's records and trains; turns stops and NaN losses into one-liners."""
    write_text_atomic(run_dir / "config.yaml", dump_config(config))
    write_json_atomic(run_dir / "environment.json", environment_info(config.seed))
    if resume_epoch is None or not (run_dir / SPLIT_FILE).is_file():
        datamodule.write_split(run_dir / SPLIT_FILE)
    shared = DistributedRun(run_dir)
    trainer = build_trainer(
        config,
        run_dir,
        resume_epoch=resume_epoch,
        progress_keys=["train/loss", "val/loss", config.checkpoint.monitor],
        extra_callbacks=[shared, *(callbacks or [])],
    )
    _fit_or_explain(trainer, task, datamodule, ckpt_path, config, run_dir, created=created)
    return trainer


def _fit_or_explain(
    trainer: L.Trainer,
    task: BaseTask,
    datamodule: MediscopeDataModule,
    ckpt_path: Path | None,
    config: Config,
    run_dir: Path,
    *,
    created: bool,
) -> None:
    """Fits, turning a NaN loss, a misconfiguration, Ctrl-C and SIGTERM into one-liners."""
    try:
        _fit(trainer, task, datamodule, ckpt_path)
    except NonFiniteLossError as exc:
        raise _non_finite(exc, config, run_dir, created=created) from None
    except MediscopeError:
        raise
    except MisconfigurationException as exc:
        raise _misconfigured(exc, config) from None
    except BaseException as exc:
        # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1), and SIGTERM
        # into a SystemExit at the next step.
        by = _stopped_by(exc, trainer)
        if by is None:
            raise
        raise _interrupted(run_dir, trainer, by, created=created) from None
    if trainer.interrupted:
        by = "SIGTERM" if trainer.received_sigterm else "Ctrl-C"
        raise _interrupted(run_dir, trainer, by, created=created)


def compile_model(task: BaseTask, config: Config) -> None:
    """Compiles the task's network in place (``trainer.compile``: torch.compile); its
    weights keep their names, so checkpoints are those of the plain network.

    Raises:
        ConfigError: torch.compile needs a C compiler on a CPU and finds none.
    """
    accelerator = config.trainer.accelerator
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        compiler = os.environ.get("CXX") or "g++"
        if not any(shutil.which(c) for c in (compiler, "g++", "clang++", "c++")):
            raise locate(
                ConfigError(
                    "torch.compile needs a C++ compiler on a CPU and finds none (g++ or "
                    "clang++, or CXX)",
                    where="trainer.compile",
                    hint="install one (e.g. apt install g++), or set trainer.compile: false",
                ),
                config,
            )
    task.model.compile()


def _is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile (Dynamo or its backend)."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _compile_failed(exc: BaseException) -> ConfigError:
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return ConfigError(
        f"torch.compile failed on this model: {first.strip()[:300]}",
        where="trainer.compile",
        hint="set trainer.compile: false (the model trains the same, only slower)",
    )


def _state_bytes(task: BaseTask) -> int:
    """Bytes of the task's weights and buffers (one copy, as a checkpoint holds them)."""
    tensors = [*task.parameters(), *task.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _prepare_run_dir(config: Config, run_dir: Path | None, *, need_bytes: int) -> Path:
    """A new run folder, or the given one (resumed or chosen), checked to be writable."""
    if run_dir is None:
        return create_run_dir(config.run.dir, config.run.name, need_bytes=need_bytes)
    try:
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create the run folder ({exc.strerror or exc})",
            where=run_dir,
            hint="check its permissions, or choose another folder",
        ) from None
    check_run_dir(run_dir, need_bytes=need_bytes)
    remove_leftovers(run_dir)  # temporary files of a killed run
    return run_dir


def _misconfigured(exc: MisconfigurationException, config: Config) -> MediscopeError:
    """A trainer setting Lightning refuses once it sees the data (e.g. a
    ``limit_train_batches`` share of less than one batch), as a one-line config error."""
    text = " ".join(str(exc).split())
    named = re.search(r"limit_(train|val|test)_batches", text)
    key = f"trainer.{named.group(0)}" if named else "trainer"
    hint = "or give a number of batches, e.g. 1" if named else "check the trainer section"
    return locate(ConfigError(text, where=key, hint=hint), config)


def _stopped_by(exc: BaseException, trainer: L.Trainer) -> str | None:
    """``SIGTERM`` or ``Ctrl-C`` when ``exc`` ends a stopped training, else None."""
    if isinstance(exc, Terminated) or trainer.received_sigterm:
        return "SIGTERM"
    if isinstance(exc, KeyboardInterrupt | SystemExit) and trainer.interrupted:
        return "Ctrl-C"
    return None


def _interrupted(run_dir: Path, trainer: L.Trainer, by: str, *, created: bool) -> InterruptedRun:
    """The one-line error of a stopped training: where the run is, what it holds."""
    kind = TerminatedRun if by == "SIGTERM" else InterruptedRun
    done = checkpoint_epoch(run_dir / CHECKPOINTS / LAST)
    stopped = f"training stopped by {by} in epoch {trainer.current_epoch}"
    if done is None:
        gone = ", and the new run folder was removed" if created else ""
        error = kind(
            f"{stopped}, before any epoch finished: there is no checkpoint to resume{gone}",
            where=None if created else run_dir,
            hint="start the run again",
        )
    else:
        error = kind(
            f"{stopped}; checkpoints/{LAST} holds epoch {done}, the last finished one",
            where=run_dir,
            hint=f"continue with --resume {run_dir}",
        )
        error.resumable = True
    error.run_dir = run_dir
    return error


def _non_finite(
    exc: NonFiniteLossError, config: Config, run_dir: Path, *, created: bool
) -> NonFiniteLossError:
    """The NaN-loss error with the last good checkpoint and what to change."""
    last = run_dir / CHECKPOINTS / LAST
    done = checkpoint_epoch(last)
    remedy = (
        f"lower optimizer.lr (now {config.optimizer.lr:g}), set trainer.gradient_clip_val "
        "or check the data for NaN values"
    )
    if done is None:
        gone = " (the new run folder was removed)" if created else ""
        error = NonFiniteLossError(
            f"{exc.message}; no epoch had finished, so there is no checkpoint{gone}",
            hint=f"{remedy}, and start again",
        )
    else:
        error = NonFiniteLossError(
            f"{exc.message}; the last good checkpoint is {last} (epoch {done})",
            hint=f"{remedy}; then start again, or from these weights with --weights {last}",
        )
    error.epoch, error.step, error.batch = exc.epoch, exc.step, exc.batch
    return error


def evaluation_interrupted(run_dir: Path, exc: KeyboardInterrupt) -> InterruptedRun:
    """The one-line error of a stop after training, while the best checkpoint is evaluated."""
    kind = TerminatedRun if isinstance(exc, Terminated) else InterruptedRun
    by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    error = kind(
        f"training finished, but its evaluation was stopped by {by}",
        where=run_dir,
        hint=f"evaluate its best checkpoint with 'mediscope validate {run_dir}' (and "
        f"'mediscope test {run_dir}')",
    )
    error.run_dir = run_dir
    return error


def best_of(best: Path | None, monitor: str) -> tuple[int | None, float | None]:
    """The epoch of checkpoint ``best`` and its ``monitor`` score (None when unknown)."""
    if best is None:
        return None, None
    data = read_checkpoint(best)
    for state in data.get("callbacks", {}).values():
        if isinstance(state, dict) and state.get("monitor") == monitor:
            score = state.get("best_model_score")
            value = float(score) if score is not None else None
            return int(data.get("epoch", -1)), value
    return int(data.get("epoch", -1)), None
