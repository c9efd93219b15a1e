"""Kaggle datasets: downloaded with the user's own credentials and the optional ``kaggle``
package."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediscope.data.catalog import DatasetEntry, Resource
from mediscope.errors import DownloadError

if TYPE_CHECKING:
    from mediscope.data.download.datasets import Job


def kaggle_download(entry: DatasetEntry, resource: Resource, archive: Path, job: Job) -> None:
    """Downloads a Kaggle dataset's zip with the user's own credentials."""
    assert entry.kaggle is not None
    _kaggle_ready(entry, job.dst / entry.target)
    job.log(f"downloading {entry.kaggle} from Kaggle with your credentials")
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".kaggle", dir=archive.parent))
    try:
        api = _kaggle_api()
        api.dataset_download_files(entry.kaggle, path=str(tmp), unzip=False, quiet=not job.progress)
        zips = sorted(tmp.glob("*.zip"))
        if not zips:
            raise DownloadError(f"Kaggle returned no archive for {entry.kaggle}")
        os.replace(zips[0], archive)
    except DownloadError:
        raise
    except (Exception, SystemExit) as exc:  # kaggle exits the process on a failed sign-in
        raise DownloadError(
            f"the Kaggle download of {entry.kaggle} failed: {exc or type(exc).__name__}",
            hint=_manual_hint(entry, job.dst / entry.target),
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kaggle_ready(entry: DatasetEntry, target: Path) -> None:
    if not _kaggle_installed():
        problem = "the 'kaggle' package is not installed"
    elif not _kaggle_credentials():
        problem = "no Kaggle credentials were found"
    else:
        return
    raise DownloadError(
        f"'{entry.name}' comes from Kaggle and {problem}",
        hint="pip install kaggle and put your API token in ~/.kaggle/kaggle.json (or set "
        f"KAGGLE_USERNAME and KAGGLE_KEY); or {_manual_hint(entry, target)}",
    )


def _manual_hint(entry: DatasetEntry, target: Path) -> str:
    return f"download it by hand from {entry.homepage} and unpack it to {target}"


def _kaggle_installed() -> bool:
    return importlib.util.find_spec("kaggle") is not None


def _kaggle_credentials() -> bool:
    """Whether the places the kaggle client reads hold a token (without importing it)."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    home = Path.home()
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    folders += [home / ".kaggle", xdg / "kaggle"]
    return any((f / name).is_file() for f in folders for name in ("kaggle.json", "access_token"))


def _kaggle_api() -> Any:
    """A signed-in ``KaggleApi``; imported here so that mediscope never needs kaggle."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    return api
