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

# Public name -> submodule that defines it (imported on first access).
_EXPORTS = {
    # postprocess
    "NativePostProcessor": "postprocess",
    "PythonPostProcessor": "reference",
    "ObjectDetectionResult": "types",
    "LtrbBoundingBox": "types",
    "COCO_CLASSES": "coco",
    "COCO_CATEGORY_IDS": "coco",
    "label_to_category_id": "coco",
    "category_id_to_label": "coco",
    "default_boxes": "anchors",
    # model, preprocessing and the session module
    "SSDResNet34": "model",
    "preprocess": "preprocessing",
    "ImageError": "preprocessing",
    "session": None,  # a submodule: ``from ssd_resnet34 import session``; session.create(model)
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:  # the name is a submodule
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily
    from .anchors import default_boxes
    from .coco import COCO_CATEGORY_IDS, COCO_CLASSES, category_id_to_label, label_to_category_id
    from .postprocess import NativePostProcessor
    from .reference import PythonPostProcessor
    from . import session
    from .model import SSDResNet34
    from .preprocessing import ImageError, preprocess
    from .types import LtrbBoundingBox, ObjectDetectionResult
