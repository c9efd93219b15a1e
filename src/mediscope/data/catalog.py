"""The public datasets that ``mediscope data fetch NAME DST`` knows: where, what, how big.

Each name maps to a :class:`DatasetEntry`: the files to download (URL, checksum, size),
how to unpack them and the layout they give under ``DST``. URLs and checksums are the
ones the publishers list (zenodo records), never guesses; a checksum that is not
published is ``None`` and the download is then taken as it comes.

Adding a dataset is one :func:`register` call; ``clinical-bacteria`` (zenodo record
10526360) shows a ``folder`` entry of two archives, one unpacked into a ``subdir``, with a
``prepare`` step that arranges them.

Example:
    >>> from mediscope.data.catalog import get_dataset
    >>> get_dataset("pathmnist").resources[0].filename
    'pathmnist.npz'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from mediscope.errors import UnknownNameError
from mediscope.registry import did_you_mean

Unpack = Literal["zip", "tar"]


@dataclass(frozen=True)
class Resource:
    """One downloadable file of a dataset.

    Args:
        url: Where the publisher serves it (``MEDISCOPE_DOWNLOAD_BASE`` / ``--mirror``
            replace the scheme and host).
        filename: Name of the downloaded file.
        md5: Published MD5 hex digest, or None when the publisher gives none.
        sha256: Published SHA-256 hex digest, or None.
        size: Size in bytes when known (checked before and after the download).
        unpack: ``"zip"`` or ``"tar"`` (.tar, .tar.gz, ...) to extract it; None keeps the file.
        subdir: Folder inside the dataset folder to unpack into ("" for its root).
        strip_top: Drop the archive's single top-level folder (``NCT-CRC-HE-100K/ADI/...``
            becomes ``ADI/...``).
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    unpack: Unpack | None = None
    subdir: str = ""
    strip_top: bool = True


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset of the catalog.

    Args:
        name: The name given to ``mediscope data fetch``.
        title: A human title with the image count.
        licence: The licence the publisher states.
        homepage: Where to read about it (and download it by hand).
        target: The path under ``DST`` it lands at: a folder, or a file for ``kind="file"``.
        layout: What ``target`` holds, for users and configs.
        resources: The files to download.
        kind: ``"folder"`` (resources unpacked into ``DST/target``) or ``"file"`` (one
            resource saved as ``DST/target``).
        expected: Paths inside the folder that a complete copy has (class folders).
        kaggle: ``owner/slug`` of a Kaggle dataset fetched with the user's credentials.
        samples: Number of images, shown by ``--list`` when the byte size is unknown.
        prepare: ``"module:function"`` that turns the unpacked files into ``layout``; it is
            called as ``function(folder, log=log)`` on the temporary folder before that is
            renamed into place, so a failed preparation leaves no dataset behind.
        task: The config's ``task`` that trains on it (``multilabel`` for ChestMNIST);
            empty when the layout says it.
        unsupported: Why ``fit`` cannot train on it (the 3-D MedMNIST volumes), shown by
            ``--list``; empty when it can.
    """

    name: str
    title: str
    licence: str
    homepage: str
    target: str
    layout: str
    resources: tuple[Resource, ...] = ()
    kind: Literal["folder", "file"] = "folder"
    expected: tuple[str, ...] = ()
    kaggle: str | None = None
    samples: int | None = None
    prepare: str | None = None
    task: str = ""
    unsupported: str = ""

    @property
    def size(self) -> int | None:
        """Total download size in bytes, or None when any part is unknown."""
        sizes = [r.size for r in self.resources]
        if not sizes or any(s is None for s in sizes):
            return None
        return sum(s for s in sizes if s is not None)


_CATALOG: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Adds ``entry`` to the catalog; a duplicate name is refused."""
    if entry.name in _CATALOG:
        raise ValueError(f"dataset '{entry.name}' is already in the catalog")
    if entry.kind == "file" and (len(entry.resources) != 1 or entry.resources[0].unpack):
        raise ValueError(f"dataset '{entry.name}': a file entry has one resource, not unpacked")
    _CATALOG[entry.name] = entry
    return entry


def get_dataset(name: str) -> DatasetEntry:
    """Returns the catalog entry ``name``.

    Raises:
        UnknownNameError: ``name`` is not in the catalog (with a "did you mean").
    """
    if name not in _CATALOG:
        guess = did_you_mean(name, list(_CATALOG))
        prefix = f"did you mean '{guess}'? " if guess else ""
        raise UnknownNameError(
            f"unknown dataset '{name}'",
            hint=f"{prefix}'mediscope data fetch --list' shows the {len(_CATALOG)} names",
        )
    return _CATALOG[name]


def dataset_names() -> list[str]:
    """All dataset names, in catalog order."""
    return list(_CATALOG)


def datasets() -> Iterator[DatasetEntry]:
    """All catalog entries, in catalog order."""
    return iter(list(_CATALOG.values()))


# --- Colorectal histology (study S3): Kather et al. 2019, zenodo record 1214456 -------------
# MD5s and byte sizes as listed on the zenodo record (v0.1). NCT-CRC-HE-100K.zip is the
# Macenko-normalised set; its unnormalised twin NCT-CRC-HE-100K-NONORM.zip has another MD5.
_KATHER = "https://zenodo.org/records/1214456"
_KATHER_CLASSES = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")

register(
    DatasetEntry(
        name="nct-crc-he-100k",
        title="NCT-CRC-HE-100K: 100,000 H&E colorectal patches, 224 px, 9 tissue classes",
        licence="CC BY 4.0",
        homepage=_KATHER,
        target="nct-crc-he-100k",
        layout="imagefolder: nct-crc-he-100k/<CLASS>/*.tif, CLASS in " + " ".join(_KATHER_CLASSES),
        resources=(
            Resource(
                url=f"{_KATHER}/files/NCT-CRC-HE-100K.zip?download=1",
                filename="NCT-CRC-HE-100K.zip",
                md5="6fd702d11df6292bc054397ae038a464",
                size=11_690_284_003,
                unpack="zip",
            ),
        ),
        expected=_KATHER_CLASSES,
        samples=100_000,
    )
)
register(
    DatasetEntry(
        name="crc-val-he-7k",
        title="CRC-VAL-HE-7K: 7,180 H&E colorectal patches (50 other patients), 9 classes",
        licence="CC BY 4.0",
        homepage=_KATHER,
        target="crc-val-he-7k",
        layout="imagefolder: crc-val-he-7k/<CLASS>/*.tif, CLASS in " + " ".join(_KATHER_CLASSES),
        resources=(
            Resource(
                url=f"{_KATHER}/files/CRC-VAL-HE-7K.zip?download=1",
                filename="CRC-VAL-HE-7K.zip",
                md5="2fd1651b4f94ebd818ebf90ad2b6ce06",
                size=800_276_929,
                unpack="zip",
            ),
        ),
        expected=_KATHER_CLASSES,
        samples=7_180,
    )
)

# --- Chest X-ray (study S2): the COVID-19 Radiography Database on Kaggle --------------------
# Kaggle serves it only to signed-in users and publishes no checksum.
_COVID_CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
register(
    DatasetEntry(
        name="covid19-radiography",
        title="COVID-19 Radiography Database: 21,165 chest X-rays, 299 px, with lung masks",
        licence="see Kaggle page",  # research use; cite Chowdhury 2020 and Rahman 2021
        homepage="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
        target="covid19-radiography",
        layout="covid19-radiography/<CLASS>/images/*.png (+ masks/), CLASS in "
        + ", ".join(_COVID_CLASSES),
        resources=(
            Resource(
                url="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
                filename="covid19-radiography-database.zip",
                unpack="zip",
            ),
        ),
        expected=_COVID_CLASSES,
        kaggle="tawsifurrahman/covid19-radiography-database",
        samples=21_165,
    )
)

# --- Gram-stained bacteria (study S1): Wang et al. 2024, zenodo record 10526360 -------------
# The archive names are the folder names of the dataset's README (RawImageDataSet,
# DeepDataSet with 640DataSet / DetectionDataSet / SegmentationDataSet); they could not be
# checked against the record's file list here (no network), and the record's MD5s and sizes
# are not copied: md5 and size stay None until someone checks them on the record page.
# If zenodo names the files otherwise, the fetch fails with HTTP 404 naming the URL; put
# the downloaded archives in DST under these names (or fix them here) and fetch again.
_BACTERIA = "https://zenodo.org/records/10526360"
register(
    DatasetEntry(
        name="clinical-bacteria",
        title="Clinical Bacteria DataSet: Gram-stained smears, 640 px crops with 11,824 boxes "
        "(G-cocci, G+cocci, G-bacilli, G+bacilli) + 1,705 raw 4912 x 3684 images (~19 GB)",
        licence="see zenodo record",
        homepage=_BACTERIA,
        target="clinical-bacteria",
        layout="yolo: clinical-bacteria/data.yaml + images/{train,val,test}/*.jpg + "
        "labels/{train,val,test}/*.txt (0 G-cocci, 1 G+cocci, 2 G-bacilli, 3 G+bacilli); "
        "raw/ the full-size images for tiled inference",
        resources=(
            Resource(
                url=f"{_BACTERIA}/files/DeepDataSet.zip?download=1",
                filename="DeepDataSet.zip",
                md5=None,  # not checked against the record (see above)
                unpack="zip",
            ),
            Resource(
                url=f"{_BACTERIA}/files/RawImageDataSet.zip?download=1",
                filename="RawImageDataSet.zip",
                md5=None,  # not checked against the record (see above)
                unpack="zip",
                subdir="raw",
            ),
        ),
        expected=("data.yaml", "images", "labels"),
        samples=1_705,
        prepare="mediscope.data.prepare.clinical_bacteria:prepare_fetched",
    )
)

# --- Oxford-IIIT Pet (study S5): Parkhi et al. 2012 -------------------------------------------
# URLs and MD5s as listed by torchvision's OxfordIIITPet dataset class; byte sizes from the
# TensorFlow Datasets checksum list of the same two files. The archives hold images/ and
# annotations/ (trimaps, list.txt, trainval.txt, test.txt); the preparation step turns them
# into background / cat / dog masks in the MMSeg layout, 256 x 256.
_PETS = "https://www.robots.ox.ac.uk/~vgg/data/pets"
_PETS_DIRS = tuple(f"{k}/{s}" for k in ("img", "labels") for s in ("train", "val", "test"))
register(
    DatasetEntry(
        name="oxford-pets",
        title="Oxford-IIIT Pet: 7,349 cat and dog photos as background / cat / dog masks, 256 px",
        licence="CC BY-SA 4.0",
        homepage=f"{_PETS}/",
        target="oxford-pets",
        layout="masks (MMSeg): oxford-pets/img/{train,val,test}/*.jpg + labels/{train,val,test}/"
        "*.png; 0 background, 1 cat, 2 dog, 255 trimap border (ignore_index)",
        resources=(
            Resource(
                url=f"{_PETS}/data/images.tar.gz",
                filename="oxford-pets-images.tar.gz",
                md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                size=791_918_971,
                unpack="tar",
                strip_top=False,  # keep images/ beside annotations/
            ),
            Resource(
                url=f"{_PETS}/data/annotations.tar.gz",
                filename="oxford-pets-annotations.tar.gz",
                md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                size=19_173_078,
                unpack="tar",
                strip_top=False,
            ),
        ),
        expected=_PETS_DIRS,
        samples=7_349,
        prepare="mediscope.data.prepare.oxford_pets:prepare_fetched",
    )
)

# --- MedMNIST v2/v3 (zenodo record 10519652) -----------------------------------------------
# URLs and MD5s as published in the INFO table of the medmnist package 3.0.2 (copied here
# so that mediscope does not depend on it). Name, licence, image count, {side: md5}; the
# 28 px file has no suffix, larger ones are <name>_<side>.npz.
_MEDMNIST_RECORD = "https://zenodo.org/records/10519652"
_MEDMNIST: tuple[tuple[str, str, int, dict[int, str]], ...] = (
    ("pathmnist", "CC BY 4.0", 107_180, {
        28: "a8b06965200029087d5bd730944a56c1", 64: "55aa9c1e0525abe5a6b9d8343a507616",
        128: "ac42d08fb904d92c244187169d1fd1d9", 224: "2c51a510bcdc9cf8ddb2af93af1eadec"}),
    ("chestmnist", "CC BY 4.0", 112_120, {
        28: "02c8a6516a18b556561a56cbdd36c4a8", 64: "9de6cd0b934ebb5b7426cfba5efbae16",
        128: "db107e5590b27930b62dbaf558aebee3", 224: "45bd33e6f06c3e8cdb481c74a89152aa"}),
    ("dermamnist", "CC BY-NC 4.0", 10_015, {
        28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
        128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"}),
    ("octmnist", "CC BY 4.0", 109_309, {
        28: "c68d92d5b585d8d81f7112f81e2d0842", 64: "e229e9440236b774d9f0dfef9d07bdaf",
        128: "0a97e76651ace45c5d943ee3f65b63ae", 224: "abc493b6d529d5de7569faaef2773ba3"}),
    ("pneumoniamnist", "CC BY 4.0", 5_856, {
        28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
        128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"}),
    ("retinamnist", "CC BY 4.0", 1_600, {
        28: "bd4c0672f1bba3e3a89f0e4e876791e4", 64: "afda852cc34dcda56f86ad2b2457dbcc",
        128: "e48e916a24454daf90583d4e6efb1a18", 224: "eae7e3b6f3fcbda4ae613ebdcbe35348"}),
    ("breastmnist", "CC BY 4.0", 780, {
        28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
        128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"}),
    ("bloodmnist", "CC BY 4.0", 17_092, {
        28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
        128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"}),
    ("tissuemnist", "CC BY 4.0", 236_386, {
        28: "ebe78ee8b05294063de985d821c1c34b", 64: "123ece2eba09d0aa5d698fda57103344",
        128: "61b955355d7425a89687b06cca3ce0c2", 224: "b077128c4a949f0a4eb01517f9037b9c"}),
    ("organamnist", "CC BY 4.0", 58_830, {
        28: "68e3f8846a6bd62f0c9bf841c0d9eacc", 64: "2dcccc29b88e6da5a01161ef20cda288",
        128: "eeae80d0a227a8d099027e1b3cfd3b60", 224: "50747347e05c87dd3aaf92c49f9f3170"}),
    ("organcmnist", "CC BY 4.0", 23_583, {
        28: "b9ceb9546e10131b32923c5bbeaea2b1", 64: "3ce34a8724ea6f548e6db4744d03b6a9",
        128: "773c1f009daa3fe5d9a2a201b2a7ed94", 224: "050f5e875dc056f6768abf94ec9995d1"}),
    ("organsmnist", "CC BY 4.0", 25_211, {
        28: "9ab87b696fb54e2a387ebe992d6ed5f1", 64: "53a6d115339d874c25e309a994ff46d3",
        128: "ded0c5fa01a95dc4978b956f613e9b8e", 224: "b354719e553fbbb2513d5533f52a4cb1"}),
    ("organmnist3d", "CC BY 4.0", 1_742, {
        28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"}),
    ("nodulemnist3d", "CC BY 4.0", 1_633, {
        28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}),
    ("adrenalmnist3d", "CC BY 4.0", 1_584, {
        28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"}),
    ("fracturemnist3d", "CC BY 4.0", 1_370, {
        28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"}),
    ("vesselmnist3d", "CC BY 4.0", 1_908, {
        28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}),
    ("synapsemnist3d", "CC BY 4.0", 1_759, {
        28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}),
)  # fmt: skip


def _medmnist_entry(base: str, licence: str, samples: int, side: int, md5: str) -> DatasetEntry:
    name = base if side == 28 else f"{base}_{side}"
    volume = "3d" in base
    shape = f"{side}^3 voxels" if volume else f"{side} x {side} px"
    return DatasetEntry(
        name=name,
        title=f"MedMNIST {base}: {samples:,} {'volumes' if volume else 'images'} of {shape}",
        licence=licence,
        homepage="https://medmnist.com",
        target=f"{name}.npz",
        layout=f"{name}.npz: train/val/test_images and _labels arrays"
        + (" (N, 14) 0/1, one column per finding" if base in _MULTILABEL else ""),
        resources=(
            Resource(
                url=f"{_MEDMNIST_RECORD}/files/{name}.npz?download=1",
                filename=f"{name}.npz",
                md5=md5,
            ),
        ),
        kind="file",
        samples=samples,
        task="multilabel" if base in _MULTILABEL else "classification",
        unsupported="3-D volumes: fit trains on 2-D images only" if volume else "",
    )


#: MedMNIST sets with several labels per image (``task: multilabel``).
_MULTILABEL = ("chestmnist",)

for _base, _licence, _samples, _md5s in _MEDMNIST:
    for _side, _md5 in _md5s.items():
        register(_medmnist_entry(_base, _licence, _samples, _side, _md5))
