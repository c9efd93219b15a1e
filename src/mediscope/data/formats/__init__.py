"""Dataset formats by name: ``mediscope list formats``.

A format is a reader ``read(path, *, classes, task, root) -> SampleSet``; detection
readers take ``on_bad_label`` (``error`` or ``skip``) too.
"""

from __future__ import annotations

from mediscope.data.formats import coco_detection, csv, dicom, imagefolder, masks, npz, voc, yolo
from mediscope.registry import FORMATS

FORMATS.register(
    "imagefolder",
    imagefolder.read_imagefolder,
    description="one folder per class: ROOT/<class>/<image>",
    tasks=("classification",),
)
FORMATS.register(
    "csv",
    csv.read_csv,
    description="a manifest path,label[,patient_id][,split]; paths relative to data.root",
    tasks=("classification",),
)
FORMATS.register(
    "npz",
    npz.read_npz,
    description="NumPy .npz: images/labels or train_/val_/test_ arrays, memory-mapped",
    tasks=("classification", "multilabel"),
)
FORMATS.register(
    "dicom",
    dicom.read_dicom,
    description="one folder per class of DICOM files: ROOT/<class>/*.dcm (needs pydicom)",
    tasks=("classification",),
)

FORMATS.register(
    "masks",
    masks.read_masks,
    description="image + mask pairs: img/{train,val,test} + labels/{...}, or a CSV image,mask",
    tasks=("segmentation",),
)

FORMATS.register(
    "yolo",
    yolo.read_yolo,
    description="YOLO boxes: data.yaml, images/{train,val,test} + labels/{...} (class cx cy w h)",
    tasks=("detection",),
)
FORMATS.register(
    "coco",
    coco_detection.read_coco_detection,
    description="COCO JSON boxes: a file, or annotations_<split>.json; file_name beside the JSON",
    tasks=("detection",),
)
FORMATS.register(
    "voc",
    voc.read_voc,
    description="Pascal VOC XML: Annotations/ + JPEGImages/ (+ ImageSets/Main) or beside images",
    tasks=("detection",),
)

__all__ = ["coco_detection", "csv", "dicom", "imagefolder", "masks", "npz", "voc", "yolo"]
