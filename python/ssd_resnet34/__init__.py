"""MLPerf SSD-ResNet34 (COCO, 1200x1200) object detection with a native (Rust) postprocessor.

The model and its postprocess follow MLCommons' reference,
``vision/classification_and_detection/python/models/ssd_r34.py`` in mlcommons/inference;
the API follows FuriosaAI's model card for SSDResNet34.

Public names are imported lazily (on first attribute access), so ``import ssd_resnet34``
is cheap and does not need the compiled extension ``ssd_resnet34._native``, onnxruntime or
OpenCV; ``NativePostProcessor()`` raises a clear ``ImportError`` if the extension is not built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> submodule that defines it (imported on first access). The package is laid
# out as the pipeline runs: image/ (read, preprocess) -> engines/ (the 12 heads) -> postprocess/
# -> detections (Detections per image; types: per-box results) -> output/ (files); detector.SSDResNet34 owns the loop (pipeline.py);
# model/ prepares the ONNX files; evaluation/ and cli/ sit apart from the inference path.
_EXPORTS = {
    # postprocess
    "Detections": "detections",
    "NativePostProcessor": "postprocess",
    "PythonPostProcessor": "postprocess",
    "ObjectDetectionResult": "types",
    "LtrbBoundingBox": "types",
    "COCO_CLASSES": "coco",
    "COCO_CATEGORY_IDS": "coco",
    "label_to_category_id": "coco",
    "category_id_to_label": "coco",
    "default_boxes": "anchors",
    # the detector, images, engines
    "SSDResNet34": "detector",
    "ImageResult": "pipeline",
    "preprocess": "image",
    "ImageError": "image",
    "session": "engines",  # the engines package under its model-card name: session.create(model)
    # int8 post-training quantization (``ssd-resnet34 quantize``)
    "quantize": "engines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    imported = importlib.import_module(f".{module}", __name__)
    value = imported if name == "session" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily
    from . import engines as session
    from .anchors import default_boxes
    from .coco import COCO_CATEGORY_IDS, COCO_CLASSES, category_id_to_label, label_to_category_id
    from .detections import Detections
    from .detector import SSDResNet34
    from .image import ImageError, preprocess
    from .engines import quantize
    from .pipeline import ImageResult
    from .postprocess import NativePostProcessor, PythonPostProcessor
    from .types import LtrbBoundingBox, ObjectDetectionResult
