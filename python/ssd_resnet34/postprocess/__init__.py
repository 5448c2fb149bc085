"""The postprocess: the 12 head outputs -> per-image detections (``docs/postprocess.md``).

Two implementations of the same definition, with the same constructor, validation and results:

- :class:`NativePostProcessor` (``native.py``): the Rust extension, the default;
- :class:`PythonPostProcessor` (``reference.py``): the readable numpy reference.

:func:`create` is the one place that chooses between them. ``_base.py`` holds what both share
(parameter, output and context validation); ``defaults.py`` the parameters' defaults. Both
return :class:`~ssd_resnet34.Detections` per image and follow MLCommons' reference,
``vision/classification_and_detection/python/models/ssd_r34.py`` in mlcommons/inference, with
the differences documented in ``docs/postprocess.md``.
"""

from __future__ import annotations

from typing import Dict, Type, Union

from ..detections import Detections
from ._base import PostProcessorBase
from .native import NativePostProcessor
from .reference import PythonPostProcessor

__all__ = [
    "POSTPROCESSORS",
    "Detections",
    "NativePostProcessor",
    "PostProcessorBase",
    "PythonPostProcessor",
    "create",
]

#: The implementations by name: ``"native"`` (Rust, the default) and ``"python"`` (numpy).
POSTPROCESSORS: Dict[str, Type[PostProcessorBase]] = {
    "native": NativePostProcessor,
    "python": PythonPostProcessor,
}


def create(kind: Union[str, bool] = "native", **params) -> PostProcessorBase:
    """The postprocessor named ``kind``: ``"native"`` or ``"python"`` (``True``/``False`` mean
    native/python, as ``use_native``), built with ``params`` (``score_threshold``,
    ``iou_threshold``, ``max_candidates_per_class``, ``max_detections``).

    Raises ``ValueError`` for an unknown kind or a bad parameter, ``TypeError`` for a parameter
    of the wrong type, ``ImportError`` for ``"native"`` when the extension is not built.
    """
    if isinstance(kind, bool):
        kind = "native" if kind else "python"
    if kind not in POSTPROCESSORS:
        raise ValueError(f"unknown postprocessor {kind!r}: expected one of {sorted(POSTPROCESSORS)}")
    return POSTPROCESSORS[kind](**params)
