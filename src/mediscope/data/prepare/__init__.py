"""Turn public datasets into mediscope's layouts: fetched archives and copies users obtained.

- :mod:`.oxford_pets`: Oxford-IIIT Pet trimaps as background / cat / dog masks (MMSeg
  layout), run by ``mediscope data fetch oxford-pets`` and ``data import oxford-pets``;
- :mod:`.ph2`: a PH2 dermoscopy copy as images, 0/1 masks and a manifest CSV
  (``mediscope data import ph2``);
- :mod:`.clinical_bacteria`: the Clinical Bacteria DataSet's 640 px crops as a YOLO
  dataset, its raw smears in ``raw/`` (``mediscope data fetch clinical-bacteria``);
- :mod:`.tiles`: overlapping tiles of large detection images with their boxes
  (``mediscope data tile``);
- :mod:`.resize`: resizing image / mask pairs.
"""
