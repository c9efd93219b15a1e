"""Dataset downloads: streamed, resumable, checksummed, and unpacked atomically.

``fetch("pathmnist", "data")`` downloads ``data/pathmnist.npz``; ``fetch("crc-val-he-7k",
"data")`` unpacks its archive into ``data/crc-val-he-7k/<CLASS>/``. The rules:

- Never hang: a connect timeout (10 s) and a read timeout (60 s) on every socket; a host
  that cannot be reached fails at once with what to do on an offline machine.
- Resume: bytes arrive in ``<file>.part``; a later run asks for the rest with an HTTP
  ``Range`` request, and starts from scratch when the server ignores it or the joined
  file fails its checksum.
- Verify: a checksum mismatch deletes the file and names both sums.
- Unpack into a temporary sibling folder, then rename it into place: a crash or a bad
  archive never leaves a half-extracted dataset, and members that would land outside
  the folder (``../``, absolute paths, links) are refused. An entry's ``prepare`` step
  (e.g. trimaps to masks) runs in that temporary folder too.
- Idempotent: a present, verified dataset is not downloaded again.
- ``MEDISCOPE_DOWNLOAD_BASE`` (or ``mirror=``) replaces the scheme and host of every URL,
  for a lab mirror, and for tests against a local server.
"""

from __future__ import annotations

from mediscope.data.download.archives import extract
from mediscope.data.download.checksums import file_digest
from mediscope.data.download.datasets import ENV_BASE, MARKER, FetchResult, fetch, fetch_entry
from mediscope.data.download.http import Timeouts, apply_mirror, download
from mediscope.data.download.sizes import human_size

__all__ = [
    "ENV_BASE",
    "MARKER",
    "FetchResult",
    "Timeouts",
    "apply_mirror",
    "download",
    "extract",
    "fetch",
    "fetch_entry",
    "file_digest",
    "human_size",
]
