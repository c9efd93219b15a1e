"""The dicom format and reading DICOM pixels: rescale, window, MONOCHROME1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediscope.data.dicom_pixels import read_dicom_pixels
from mediscope.data.formats.dicom import read_dicom
from mediscope.data.images import read_image
from mediscope.errors import DataError
from mediscope.registry import FORMATS

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid  # noqa: E402


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
) -> Path:
    """Writes a small uncompressed grayscale DICOM file of ``stored`` (int16 / uint16)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom 3
    except TypeError:  # pydicom 2
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


# Stored values of a CT slice; with intercept -1024 they are Hounsfield units.
STORED = np.array([[0, 864, 964], [1064, 1264, 2000]], dtype=np.uint16)


def test_rescale_then_file_window(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", STORED, slope=1, intercept=-1024, window=(40, 400))
    # HU -1024, -160, -60, 40, 240, 976 in the window [-160, 240].
    assert read_dicom_pixels(path).tolist() == [[0, 0, 64], [128, 255, 255]]
    image = read_image(path)
    assert image.shape == (2, 3, 3) and image[:, :, 0].tolist() == [[0, 0, 64], [128, 255, 255]]
    assert np.array_equal(image[:, :, 0], image[:, :, 2])
    assert read_image(path, channels=1)[:, :, 0].tolist() == [[0, 0, 64], [128, 255, 255]]


def test_given_window_replaces_the_files(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", STORED, slope=2, intercept=-2048, window=(40, 400))
    # HU = 2 * stored - 2048: -2048, -320, -120, 80, 480, 1952; window [-1000, 1000].
    expected = np.clip((2.0 * STORED - 2048 + 1000) / 2000, 0, 1) * 255
    assert expected.round().tolist() == [[0, 87, 112], [138, 189, 255]]
    pixels = read_image(tmp_path / "ct.dcm", channels=1, window=(0, 2000))[:, :, 0]
    assert pixels.tolist() == expected.round().tolist()
    with pytest.raises(DataError, match="window: window width must be positive, got 0.0"):
        read_image(path, window=(40, 0))


def test_without_window_the_range_is_used(tmp_path: Path) -> None:
    signed = np.array([[-1000, -500], [0, 1000]], dtype=np.int16)
    path = write_dicom(tmp_path / "signed.dcm", signed)
    assert read_dicom_pixels(path).tolist() == [[0, 64], [128, 255]]


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    plain = write_dicom(tmp_path / "m2.dcm", STORED, window=(1000, 2000))
    inverted = write_dicom(
        tmp_path / "m1.dcm", STORED, window=(1000, 2000), photometric="MONOCHROME1"
    )
    assert np.array_equal(read_dicom_pixels(inverted), 255 - read_dicom_pixels(plain))
    assert read_dicom_pixels(inverted)[0, 0] == 255  # stored 0 is white


def test_dicom_folder_format(tmp_path: Path) -> None:
    for cls, n in (("normal", 2), ("pneumonia", 3)):
        for i in range(n):
            write_dicom(tmp_path / "data" / cls / f"{i}.dcm", STORED + i)
    Image.new("L", (2, 2)).save(tmp_path / "data" / "normal" / "preview.png")  # not DICOM
    found = FORMATS.get("dicom")(tmp_path / "data", classes=None, task="classification")
    assert found.classes == ["normal", "pneumonia"]
    assert found.labels().tolist() == [0, 0, 1, 1, 1]
    assert found.ids() == [
        "normal/0.dcm",
        "normal/1.dcm",
        "pneumonia/0.dcm",
        "pneumonia/1.dcm",
        "pneumonia/2.dcm",
    ]
    with pytest.raises(
        DataError, match="folder 'pneumonia' is not one of data.classes; did you mean 'pneumonie'"
    ):
        read_dicom(tmp_path / "data", classes=["normal", "pneumonie"], task="classification")
    (tmp_path / "pngs" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"pngs: no DICOM files found"):
        read_dicom(tmp_path / "pngs", task="classification")


def test_missing_pydicom_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dicom(tmp_path / "a" / "x.dcm", STORED)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now fails
    hint = r"reading DICOM needs pydicom; pip install 'mediscope\[dicom\]'"
    with pytest.raises(DataError, match=rf"x.dcm: {hint}"):
        read_image(path)
    with pytest.raises(DataError, match=hint):
        read_dicom(tmp_path, task="classification")


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone.dcm: image not found"):
        read_image(tmp_path / "gone.dcm")
    (tmp_path / "text.dcm").write_text("not DICOM")
    with pytest.raises(DataError, match=r"text.dcm: cannot read the DICOM file"):
        read_image(tmp_path / "text.dcm")
    frames = write_dicom(tmp_path / "cine.dcm", np.stack([STORED, STORED]), frames=2)
    with pytest.raises(DataError, match=r"cine.dcm: the DICOM file holds 2 frames"):
        read_image(frames)
    with pytest.raises(DataError, match="the dicom format holds no segmentation targets"):
        read_dicom(tmp_path, task="segmentation")
