"""Using a trained model: :func:`mediscope.load`, the :class:`Predictor` and its results.

This package imports neither torch, Lightning, timm nor segmentation-models-pytorch at
module level: an exported ONNX model runs with numpy, Pillow, OpenCV and onnxruntime
alone (``pip install 'mediscope[runtime]'``). Eager PyTorch models and TorchScript files
use the same pre- and post-processing, through a torch backend imported only for them.
"""
