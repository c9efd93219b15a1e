"""The ``dicom`` format: ``ROOT/<class name>/<file>.dcm``.

Pixels are read by :func:`mediscope.data.dicom_pixels.read_dicom_pixels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mediscope.data.dicom_pixels import import_pydicom
from mediscope.data.formats.imagefolder import read_class_folders
from mediscope.data.images import is_dicom_file
from mediscope.data.samples import SampleSet
from mediscope.errors import DataError


def read_dicom(
    path: Path,
    *,
    classes: list[str] | None = None,
    task: str,
    root: Path | None = None,
    **options: Any,
) -> SampleSet:
    """Reads a folder of class folders holding DICOM files.

    Args:
        path: The root folder; each sub-folder is a class, holding ``.dcm`` files.
        classes: Class names in index order; by default the sorted folder names.
        task: Must be ``classification``.
        root: Ignored (the paths are found under ``path``).
        **options: Ignored; accepted so that every reader takes the same call.

    Raises:
        DataError: when pydicom is missing, the root is missing, holds no class folder
            or no DICOM file, or a folder is not one of ``classes``.
    """
    if task != "classification":
        raise DataError(f"the dicom format holds no {task} targets", where="data.format")
    import_pydicom(path)  # fail now, not in the first batch
    return read_class_folders(
        path,
        classes=classes,
        accept=is_dicom_file,
        empty="no DICOM files found",
        hint="expected ROOT/<class>/*.dcm",
    )
