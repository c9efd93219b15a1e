"""Checksums of downloaded files: the expected digest of a resource, and verifying files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mediscope.data.catalog import Resource
from mediscope.data.download.sizes import CHUNK
from mediscope.errors import DownloadError


def checksum_of(resource: Resource) -> tuple[str, str] | None:
    """The resource's ``(algorithm, hex digest)``, SHA-256 before MD5; None without one."""
    if resource.sha256:
        return "sha256", resource.sha256.lower()
    if resource.md5:
        return "md5", resource.md5.lower()
    return None


def has_checksum(resource: Resource) -> bool:
    """Whether the resource has an MD5 or SHA-256 to verify."""
    return checksum_of(resource) is not None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Returns the hex digest of the file at ``path`` (``"md5"``, ``"sha256"``, ...)."""
    digest = hashlib.new(algorithm)
    feed(digest, Path(path))
    return digest.hexdigest()


def feed(digest: Any, path: Path) -> None:
    """Updates ``digest`` with the bytes of the file at ``path``."""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)


def verify_present(path: Path, resource: Resource) -> bool:
    """Checks a file that is already there; a mismatch is left in place for the user."""
    expected = checksum_of(resource)
    if expected is None:
        return False
    algorithm, want = expected
    got = file_digest(path, algorithm)
    if got != want:
        raise DownloadError(
            f"{path.name} is present but its {algorithm} is {got}, expected {want}",
            where=path,
            hint="delete it, or run again with --force to download it again",
        )
    return True
