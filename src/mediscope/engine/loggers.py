"""Run loggers: metrics.csv and TensorBoard in the run folder, and experiment trackers.

``logging.loggers`` names them. The trackers, W&B (``wandb``), MLflow (``mlflow``) and
ClearML (``clearml``), go through Lightning's logger interface and never reach for a
server that nobody configured:

- W&B runs offline unless ``WANDB_API_KEY`` or ``WANDB_MODE`` is set (or
  ``logging.offline: false``); the offline run is ``<run>/wandb/offline-run-*``
  (``wandb sync`` uploads it later).
- MLflow logs to ``logging.mlflow_uri``, else ``MLFLOW_TRACKING_URI``, else the local file
  store ``<run.dir>/mlruns`` shared by all runs of that folder (``mlflow ui
  --backend-store-uri runs/mlruns``).
- ClearML runs offline unless ``CLEARML_API_HOST`` is set or a ``clearml.conf`` exists
  (or ``logging.offline: false``); the offline task is ``<run>/clearml/offline/``
  (``clearml-task --import-offline-session`` uploads it later).

Each tracker receives the resolved config as hyperparameters (dotted keys such as
``optimizer.lr``) and every metric Lightning logs per epoch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightning as L
from lightning.fabric.utilities.logger import _convert_params
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from mediscope.config.schema import Config
from mediscope.engine.callbacks import RunCSVLogger
from mediscope.errors import ConfigError

#: The Python package each tracker needs.
TRACKER_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow", "clearml": "clearml"}
TRACKING_INSTALL = "install it with: pip install 'mediscope[tracking]'"


def check_loggers(config: Config) -> None:
    """Fails early when a configured tracker's package is not installed.

    Raises:
        ConfigError: naming ``logging.loggers`` and the pip command.
    """
    for name in config.logging.loggers:
        package = TRACKER_PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            source = getattr(config, "_source", None)
            place = source.where(("logging", "loggers")) if source is not None else None
            where = f"{place}: logging.loggers" if place else "logging.loggers"
            raise ConfigError(
                f"the {name} logger needs the '{package}' package, which is not installed",
                where=where,
                hint=f"{TRACKING_INSTALL}, or remove {name} from the list",
            )


def build_loggers(
    config: Config, run_dir: Path, *, resume_epoch: int | None = None
) -> list[Logger]:
    """The loggers ``logging.loggers`` names, in that order, writing for ``run_dir``.

    Args:
        config: The validated config.
        run_dir: The run folder.
        resume_epoch: The first epoch of a resumed run (metrics.csv keeps earlier rows).

    Returns:
        Lightning loggers; trackers start their run lazily, at the first value logged.
    """
    check_loggers(config)
    loggers: list[Logger] = []
    for name in config.logging.loggers:
        if name == "csv":
            loggers.append(RunCSVLogger(run_dir, resume_epoch=resume_epoch))
        elif name == "tensorboard":
            loggers.append(
                TensorBoardLogger(
                    save_dir=str(run_dir), name="", version="tensorboard", default_hp_metric=False
                )
            )
        elif name == "wandb":
            loggers.append(wandb_logger(config, run_dir))
        elif name == "mlflow":
            loggers.append(mlflow_logger(config, run_dir))
        elif name == "clearml":
            loggers.append(clearml_logger(config, run_dir))
    return loggers


def tracker_project(config: Config) -> str:
    """The tracker project (W&B project, MLflow experiment, ClearML project)."""
    return config.logging.project or config.run.name


def tracker_run_name(config: Config, run_dir: Path) -> str:
    """The run's name in a tracker: its folder below ``run.dir``, e.g. ``tiny/20250101-120000``."""
    try:
        return run_dir.resolve().relative_to(config.run.dir.resolve()).as_posix()
    except ValueError:
        return "/".join(run_dir.resolve().parts[-2:])


def config_params(config: Config) -> dict[str, Any]:
    """The resolved config as flat hyperparameters with dotted keys (``optimizer.lr``).

    Lists and empty sections become their text, so every value is a scalar.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list | tuple | dict):
            flat[prefix] = str(list(value) if not isinstance(value, dict) else value)
        else:
            flat[prefix] = "none" if value is None else value

    walk("", config.model_dump(mode="json"))
    return flat


class LogConfig(L.Callback):
    """Sends the resolved config to every logger as hyperparameters when fitting starts.

    W&B gets it nested (its config panel groups sections); the others get dotted keys.
    """

    def __init__(self, config: Config) -> None:
        self.flat = config_params(config)
        self.nested = config.model_dump(mode="json")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.nested if isinstance(logger, WandbLogger) else self.flat)


# -- W&B ------------------------------------------------------------------------------


def wandb_offline(config: Config) -> bool:
    """Whether W&B runs offline: ``logging.offline``, or (auto) when no server is set."""
    if config.logging.offline != "auto":
        return bool(config.logging.offline)
    return not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"))


class RunWandbLogger(WandbLogger):
    """Lightning's W&B logger that ends its W&B run when training ends.

    Without this, the next fit in the same process (a study, k-fold) would log into the
    previous run.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lightning always passes anonymous=None, which W&B warns about at every run.
        self._wandb_init.pop("anonymous", None)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Uploads what Lightning uploads, then finishes the W&B run."""
        super().finalize(status)
        if self._experiment is not None and hasattr(self._experiment, "finish"):
            self._experiment.finish(exit_code=0 if status in ("success", "finished") else 1)


def wandb_logger(config: Config, run_dir: Path) -> Logger:
    """A W&B logger writing under ``<run>/wandb``; offline unless a server is configured."""
    import wandb

    extra: dict[str, Any] = {}
    if wandb_offline(config):
        # W&B's own mode setting, not the logger's offline flag, which would switch
        # every later W&B run of the process offline through the environment. Quiet:
        # no history table at the end of every run.
        extra["mode"] = "offline"
        extra["settings"] = wandb.Settings(quiet=True)
    elif config.logging.offline is False and not os.environ.get("WANDB_MODE"):
        extra["mode"] = "online"
    return RunWandbLogger(
        project=tracker_project(config),
        name=tracker_run_name(config, run_dir),
        save_dir=str(run_dir),
        **extra,
    )


# -- MLflow ---------------------------------------------------------------------------


def mlflow_uri(config: Config) -> str:
    """``logging.mlflow_uri``, else ``MLFLOW_TRACKING_URI``, else ``<run.dir>/mlruns``."""
    uri = config.logging.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return (config.run.dir / "mlruns").resolve().as_uri()


def _is_file_store(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # a path, file:, or a drive letter


def mlflow_logger(config: Config, run_dir: Path) -> Logger:
    """An MLflow logger; one MLflow run per mediscope run, tagged with its folder."""
    uri = mlflow_uri(config)
    if _is_file_store(uri):
        # MLflow 3 refuses its file store unless asked; mlflow-skinny has no other
        # local store.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # "Experiment ... not found. Creating it." on every new project says nothing.
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)
    return MLFlowLogger(
        experiment_name=tracker_project(config),
        run_name=tracker_run_name(config, run_dir),
        tracking_uri=uri,
        tags={"mediscope.run_dir": str(run_dir.resolve())},
    )


# -- ClearML --------------------------------------------------------------------------


def clearml_offline(config: Config) -> bool:
    """Whether ClearML runs offline: ``logging.offline``, or (auto) when no server is set."""
    if config.logging.offline != "auto":
        return bool(config.logging.offline)
    if os.environ.get("CLEARML_API_HOST") or os.environ.get("CLEARML_CONFIG_FILE"):
        return False
    home = Path.home()
    return not any((home / name).is_file() for name in ("clearml.conf", "trains.conf"))


def clearml_logger(config: Config, run_dir: Path) -> Logger:
    """A ClearML logger; offline (task files in ``<run>/clearml``) unless a server is set."""
    return ClearMLLogger(
        project=tracker_project(config),
        task_name=tracker_run_name(config, run_dir),
        offline=clearml_offline(config),
        offline_dir=run_dir / "clearml",
    )


def scalar_title(key: str) -> tuple[str, str]:
    """A ClearML (title, series) for a metric: ``val/f1_macro`` → (``f1_macro``, ``val``).

    Train and validation values of one metric then share a plot.
    """
    split, sep, rest = key.partition("/")
    if sep and split in ("train", "val", "test"):
        return rest, split
    return key, key


class ClearMLLogger(Logger):
    """Reports hyperparameters and scalars to a ClearML task.

    Lightning ships no ClearML logger; this one creates the task at the first value it
    logs and closes it when training ends. Framework auto-logging is off (this logger
    reports everything), and so, offline, are repository detection, resource monitoring
    and console capture, which would otherwise look for servers and processes.

    Args:
        project: The ClearML project.
        task_name: The task's name.
        offline: Keep the task in local files (``Task.set_offline``).
        offline_dir: Where the offline task goes (unless ``CLEARML_CACHE_DIR`` says).
    """

    def __init__(
        self, *, project: str, task_name: str, offline: bool, offline_dir: Path | None = None
    ) -> None:
        super().__init__()
        self._project = project
        self._task_name = task_name
        self._offline = offline
        self._offline_dir = offline_dir
        self._task: Any = None

    @property
    def name(self) -> str:
        """The ClearML project."""
        return self._project

    @property
    def version(self) -> str:
        """The task's name."""
        return self._task_name

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``clearml.Task``, created on first use."""
        if self._task is None:
            self._task = self._init_task()
        return self._task

    def _init_task(self) -> Any:
        from clearml import Task

        Task.set_offline(offline_mode=self._offline)
        frameworks: dict[str, Any] = dict.fromkeys(_CLEARML_FRAMEWORKS, False)
        options: dict[str, Any] = {}
        if self._offline:
            frameworks["detect_repository"] = False  # also skips its update check online
            options = {"auto_resource_monitoring": False, "auto_connect_streams": False}
            # The reporter subprocess only writes a local file offline, but waiting for it
            # makes closing the task take about ten seconds.
            if hasattr(Task, "_report_subprocess_enabled"):
                Task._report_subprocess_enabled = False  # type: ignore[assignment]
        with _cache_dir(self._offline_dir if self._offline else None):
            return Task.init(
                project_name=self._project,
                task_name=self._task_name,
                reuse_last_task_id=False,
                auto_connect_frameworks=frameworks,
                auto_connect_arg_parser=False,
                **options,
            )

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Connects ``params`` to the task as its ``config`` hyperparameter section."""
        values = _convert_params(params)
        self.experiment.connect(
            {
                str(k): v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in values.items()
            },
            name="config",
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Reports each metric as a scalar at iteration ``step``."""
        report = self.experiment.get_logger()
        for key, value in metrics.items():
            if key == "epoch":
                continue
            title, series = scalar_title(key)
            report.report_scalar(
                title=title, series=series, value=float(value), iteration=step or 0
            )

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Closes the task (offline: writes the offline zip)."""
        if self._task is None:
            return
        if status not in ("success", "finished") and not self._offline:
            self._task.mark_failed(ignore_errors=True, status_reason=f"training {status}")
        self._task.close()
        self._task = None


_CLEARML_FRAMEWORKS = (
    "matplotlib",
    "tensorflow",
    "tensorboard",
    "pytorch",
    "xgboost",
    "scikit",
    "fastai",
    "lightgbm",
    "hydra",
    "tfdefines",
    "joblib",
    "megengine",
    "catboost",
    "gradio",
    "jsonargparse",
)


@contextmanager
def _cache_dir(folder: Path | None) -> Iterator[None]:
    """Points ClearML's cache (where offline tasks go) at ``folder`` while a task starts."""
    if folder is None or os.environ.get("CLEARML_CACHE_DIR"):
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["CLEARML_CACHE_DIR"] = str(folder.resolve())
    try:
        yield
    finally:
        os.environ.pop("CLEARML_CACHE_DIR", None)
