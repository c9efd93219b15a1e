"""Makes ``docs/images/slide-tissue-map.png``: the tissue map of the synthetic slide.

Usage: ``python tools/slide_picture.py`` (a few seconds). The slide is the test slide of
``mediscope.slides.synthetic`` (4096 px, 0.5 µm/px); the classifier is the benchmark's
stand-in (nearest mean colour), so the picture shows the output, not a model's quality.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from mediscope.runtime.info import InferenceSettings, ModelInfo
from mediscope.runtime.predictor import Predictor
from mediscope.slides.predict import SlideSettings, predict_slide
from mediscope.slides.synthetic import CLASSES, write_slide
from wsi import MeanColour

TARGET = Path(__file__).parents[1] / "docs" / "images" / "slide-tissue-map.png"


def main() -> None:
    info = ModelInfo(
        task="classification",
        classes=list(CLASSES),
        image_size=(64, 64),
        channels=3,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        inference=InferenceSettings(mpp=1.0),
    )
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "synthetic.tif"
        write_slide(slide, 4096, 4096, mpp=0.5)
        done = predict_slide(
            Predictor(MeanColour(), info, batch_size=32),
            slide,
            Path(tmp) / "out",
            SlideSettings(mpp=1.0, picture_side=560, progress=False),
        )
        from PIL import Image

        # a palette of 160 colours keeps the page light (the texture is noise)
        picture = Image.open(done.files["tissue_map"]).convert("RGB")
        picture.quantize(colors=160).save(TARGET, optimize=True)
    print(f"{TARGET} ({TARGET.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
