"""The native (Rust) postprocessor: ``ssd_resnet34._native`` behind the shared Python front end.

Implements ``docs/postprocess.md`` exactly as :class:`ssd_resnet34.PythonPostProcessor` (the
numpy reference); it follows MLCommons' ``vision/classification_and_detection/python/models/ssd_r34.py``
with the differences listed there ("Differences from the MLCommons reference").
"""

from __future__ import annotations

from typing import Any, List

import numpy as np

from .._extension import load_native
from ..detections import Detections
from ._base import PostProcessorBase, check_finite

__all__ = ["NativePostProcessor"]


class NativePostProcessor(PostProcessorBase):
    """Postprocessor in Rust (multi-threaded over the batch, GIL released).

    ``NativePostProcessor(score_threshold, iou_threshold, max_candidates_per_class,
    max_detections, *, classes, class_agnostic, within_image=False)``, defaults (0.05, 0.5, 200,
    200) from :mod:`ssd_resnet34.postprocess.defaults`. ``within_image``: split a batch of one
    across the native threads (pays only when cores are idle; README, "Postprocess threads");
    a batch of N runs one image per thread either way. Raises ``TypeError`` when not a bool.

    - ``decode(outputs)``: ``outputs`` the model's 12 NCHW float tensors with batch size N
      (float32; float16 ones are read natively, the result that of ``astype(np.float32)``)
      (``outputs[0..5]`` class logits (N, 324, 50, 50), (N, 486, 25, 25), (N, 486, 13, 13),
      (N, 486, 7, 7), (N, 324, 3, 3), (N, 324, 3, 3); ``outputs[6..11]`` box offsets (N, 16, 50, 50),
      (N, 24, 25, 25), (N, 24, 13, 13), (N, 24, 7, 7), (N, 16, 3, 3), (N, 16, 3, 3)). Returns a
      list of N :class:`~ssd_resnet34.Detections` (boxes (K, 4) float32 normalized ltrb, labels
      (K,) int64 in 1..80, scores (K,) float32), score-descending (ties: label, then anchor
      index ascending).
    - ``postprocessor(outputs, contexts)``: N lists of ``ObjectDetectionResult`` with boxes in
      pixels of the original image (``contexts``: per image a dict with ``width`` and
      ``height``; a single dict for N == 1).

    Follows MLCommons' ``ssd_r34.py`` except where ``docs/postprocess.md`` says otherwise
    ("Differences from the MLCommons reference"). Gives the same detections as :class:`ssd_resnet34.PythonPostProcessor`
    (bit-identical in the test suite). Raises
    ``TypeError``/``ValueError`` for bad parameters or input (identical messages to the
    reference), ``ImportError`` when the extension is not built.
    """

    def __init__(self, *args: Any, within_image: bool = False, **kwargs: Any) -> None:
        if not isinstance(within_image, (bool, np.bool_)):
            raise TypeError(f"within_image must be a bool, got {type(within_image).__name__}")
        self._within_image = bool(within_image)
        super().__init__(*args, **kwargs)

    @property
    def within_image(self) -> bool:
        """Whether a batch of one is split across the native threads (README, "Postprocess
        threads"); the detections are the same either way."""
        return self._within_image

    # float16 heads go to Rust as they are: it converts them exactly while reading, half the
    # bytes of float32 (docs/postprocess.md, "Head outputs").
    _reads_float16 = True

    def _setup(self) -> None:
        self._native = load_native().Postprocessor(
            score_threshold=self._score_threshold,
            iou_threshold=self._iou_threshold,
            max_candidates_per_class=self._max_candidates_per_class,
            max_detections=self._max_detections,
            classes=None if self._classes is None else list(self._classes),
            class_score_thresholds=self._class_score_thresholds,
            class_agnostic=self._class_agnostic,
            within_image=self._within_image,
        )

    def _decode_batch(self, outputs: List[np.ndarray]) -> List[Detections]:
        # The binding borrows C-contiguous arrays and copies any other layout itself; its arrays
        # are valid by construction, so they are wrapped without a second check.
        return [Detections._trusted(*arrays) for arrays in self._native.decode(outputs[:6], outputs[6:])]

    def _decode_checked(self, outputs: List[np.ndarray]) -> List[Detections]:
        # The Rust decoder checks finiteness in its first pass over the logits and offsets,
        # so the separate numpy pass (about 0.3 ms per image) is skipped. When it refuses the
        # input, the numpy check names the first bad outputs[k] exactly as the reference does.
        try:
            return self._decode_batch(outputs)
        except ValueError:
            check_finite(outputs)
            raise
