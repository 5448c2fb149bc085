"""Input validation and the shared front end of both postprocessors.

:class:`PostProcessorBase` holds what :class:`ssd_resnet34.NativePostProcessor` and
:class:`ssd_resnet34.PythonPostProcessor` share: parameter checks, the checks of the 12 head
outputs and of the contexts (so both raise the same exception type and message for the same
bad input), and the wrapping of each image's arrays in :class:`ssd_resnet34.Detections`.
The rules are those of ``docs/postprocess.md`` ("Bad input").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..coco import COCO_CLASSES
from ..detections import Detections
from ..layout import HEAD_SHAPES, NUM_OUTPUTS, describe_output
from ..types import ObjectDetectionResult
from .defaults import (
    IOU_THRESHOLD,
    MAX_CANDIDATES_PER_CLASS,
    MAX_DETECTIONS,
    SCORE_THRESHOLD,
)

__all__ = [
    "PostProcessorBase",
    "validate_parameters",
    "validate_options",
    "check_output_arrays",
    "check_finite",
    "validate_contexts",
]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float:
    """``float(value)`` for a real number, with +-inf for an integer too large for a float
    (``10**400``), so that the range checks report it instead of an ``OverflowError``."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def validate_parameters(
    score_threshold: float,
    iou_threshold: float,
    max_candidates_per_class: int,
    max_detections: int,
) -> Tuple[float, float, int, int]:
    """Check the postprocess parameters; return them as (float, float, int, int).

    ``score_threshold`` must be a real number in [0, 1], ``iou_threshold`` in (0, 1] and
    positive as float32 (1e-50 is 0 as float32, and every IoU would be >= it),
    ``max_candidates_per_class`` and ``max_detections`` integers >= 1.
    Raises ``TypeError`` for a value of the wrong type (bools are refused), ``ValueError``
    for one out of range (NaN included).
    """
    for name, value, low_open in (
        ("score_threshold", score_threshold, False),
        ("iou_threshold", iou_threshold, True),
    ):
        if not _is_real(value):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = _as_float(value)
        in_range = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
        if not in_range:
            interval = "(0, 1]" if low_open else "[0, 1]"
            raise ValueError(f"{name} must be in {interval}, got {value!r}")
        if low_open and np.float32(value) <= 0:
            raise ValueError(f"{name} must be in (0, 1] and positive as float32 (at least 1.4e-45; "
                             f"IoUs are compared as float32), got {value!r}")
    for name, value in (
        ("max_candidates_per_class", max_candidates_per_class),
        ("max_detections", max_detections),
    ):
        if not _is_integer(value):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {int(value)}")
    return (
        _as_float(score_threshold),
        _as_float(iou_threshold),
        int(max_candidates_per_class),
        int(max_detections),
    )


def _label(value: Any, name: str) -> int:
    """A label 1..80 from an int or a COCO class name (``"person"``)."""
    if isinstance(value, str):
        if value in COCO_CLASSES[1:]:
            return COCO_CLASSES.index(value)
        raise ValueError(f"{name}: unknown COCO class name {value!r}")
    if not _is_integer(value):
        raise TypeError(f"{name}: a label must be an int 1..80 or a COCO class name, got {type(value).__name__}")
    if not 1 <= int(value) <= 80:
        raise ValueError(f"{name}: label {int(value)} is out of range; expected 1..80 (0 is the background)")
    return int(value)


def validate_options(
    score_threshold: Union[float, Mapping], classes: Any, class_agnostic: Any
) -> Tuple[float, Optional[Dict[int, float]], Optional[Tuple[int, ...]], bool]:
    """Check the options of ``docs/postprocess.md`` ("Options").

    ``score_threshold``: a real in [0, 1], or a mapping label (int 1..80 or COCO name) ->
    threshold in [0, 1], the other labels keeping :data:`SCORE_THRESHOLD`.
    ``classes``: None (all 80) or a non-empty iterable of labels (ints 1..80 or COCO names).
    ``class_agnostic``: a bool. Returns (scalar threshold, per-label thresholds or None,
    sorted unique labels or None, class_agnostic). Raises ``TypeError``/``ValueError``.
    """
    per_label: Optional[Dict[int, float]] = None
    if isinstance(score_threshold, Mapping):
        per_label = {}
        for key, value in score_threshold.items():
            label = _label(key, "score_threshold")
            per_label[label] = validate_parameters(value, 0.5, 1, 1)[0]
        score_threshold = SCORE_THRESHOLD
    labels: Optional[Tuple[int, ...]] = None
    if classes is not None:
        if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, set, frozenset)):
            raise TypeError(f"classes must be a sequence or set of labels, got {type(classes).__name__}")
        labels = tuple(sorted({_label(c, "classes") for c in classes}))
        if not labels:
            raise ValueError("classes is empty; expected at least one label of 1..80")
    if not isinstance(class_agnostic, (bool, np.bool_)):
        raise TypeError(f"class_agnostic must be a bool, got {type(class_agnostic).__name__}")
    return score_threshold, per_label, labels, bool(class_agnostic)


def _first_non_finite_item(array: np.ndarray) -> int:
    """Index of the first batch item holding NaN/inf, or -1 when all values are finite."""
    with np.errstate(all="ignore"):
        total = np.add.reduce(array, axis=None)
    if np.isfinite(total):
        # Any NaN or infinity makes a sum non-finite, so a finite sum proves all finite.
        return -1
    finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    return -1 if finite.all() else int(np.argmin(finite))


def _plain_array(array: Any, k: int) -> np.ndarray:
    """An ndarray subclass as a plain ndarray; a masked array or a non-array is refused (a mask
    cannot be honoured: decoding its data would silently use the masked values)."""
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(
            f"{describe_output(k)} is a numpy.ma.MaskedArray; the postprocessor takes plain arrays "
            "and cannot honour a mask: pass array.filled(value) or numpy.asarray(array)"
        )
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{describe_output(k)} must be a numpy.ndarray, got {type(array).__name__}")
    return np.asarray(array)


def check_output_arrays(outputs: Any, keep_float16: bool = False) -> List[np.ndarray]:
    """Check the structure of the model's 12 head outputs; return them as 12 float32 ndarrays
    (float16 ones kept as they are when ``keep_float16``, for a decoder that reads float16).

    ``outputs``: a list or tuple of 12 numpy arrays, NCHW: ``outputs[0..5]`` class logits of
    shapes (N, 324, 50, 50), (N, 486, 25, 25), (N, 486, 13, 13), (N, 486, 7, 7), (N, 324, 3, 3),
    (N, 324, 3, 3); ``outputs[6..11]`` box offsets (N, 16, 50, 50), (N, 24, 25, 25),
    (N, 24, 13, 13), (N, 24, 7, 7), (N, 16, 3, 3), (N, 16, 3, 3); one batch size N >= 1.
    float16/float64 arrays are converted to float32 (exactly, for float16; float16 is kept when
    ``keep_float16``, each array on its own); non-contiguous arrays and ndarray subclasses
    other than masked arrays are accepted. NaN/inf are checked separately (:func:`check_finite`).

    Raises ``TypeError`` when ``outputs`` is not a list/tuple, an element is not an ndarray (or
    is a ``numpy.ma.MaskedArray``, whose mask could not be honoured) or its dtype is not floating;
    ``ValueError`` for a count other than 12, a wrong rank or shape, or differing batch sizes
    (naming ``outputs[k]``).
    """
    if not isinstance(outputs, (list, tuple)):
        raise TypeError(
            f"outputs must be a list or tuple of {NUM_OUTPUTS} numpy arrays "
            f"(6 class logits, then 6 box offsets), got {type(outputs).__name__}"
        )
    if len(outputs) != NUM_OUTPUTS:
        raise ValueError(
            f"expected {NUM_OUTPUTS} outputs (6 class logits, then 6 box offsets), "
            f"got {len(outputs)}"
        )
    arrays: List[np.ndarray] = []
    batch_size = None
    for k, array in enumerate(outputs):
        # The serving-loop case (float32 ndarrays of the right shapes) costs a few attribute
        # reads per tensor; the tensor's name is built only for an error message.
        if type(array) is not np.ndarray:
            array = _plain_array(array, k)
        if array.dtype != np.float32 and not np.issubdtype(array.dtype, np.floating):
            raise TypeError(
                f"{describe_output(k)} must have a floating dtype (float32 expected), "
                f"got {array.dtype}"
            )
        expected = HEAD_SHAPES[k]
        if array.ndim != 4 or array.shape[1:] != expected:
            raise ValueError(
                f"{describe_output(k)} has shape {tuple(array.shape)}, expected (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]})"
            )
        if batch_size is None:
            batch_size = array.shape[0]
            if batch_size < 1:
                raise ValueError(f"{describe_output(k)} has batch size 0, expected N >= 1")
        elif array.shape[0] != batch_size:
            raise ValueError(
                f"{describe_output(k)} has batch size {array.shape[0]}, "
                f"but outputs[0] has {batch_size}"
            )
        if array.dtype != np.float32 and not (keep_float16 and array.dtype == np.float16):
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
        arrays.append(array)
    return arrays


def check_finite(arrays: List[np.ndarray]) -> None:
    """Raise ``ValueError`` naming the first ``outputs[k]`` (k ascending) holding NaN or
    infinite values and its first such batch item."""
    for k, array in enumerate(arrays):
        item = _first_non_finite_item(array)
        if item >= 0:
            raise ValueError(
                f"{describe_output(k)} contains NaN or infinite values (batch item {item})"
            )


def _context_size(context: Any, where: str) -> Tuple[float, float]:
    if not isinstance(context, Mapping):
        raise TypeError(
            f"{where} must be a dict with 'width' and 'height' (pixels), "
            f"got {type(context).__name__}"
        )
    size = []
    for key in ("width", "height"):
        if key not in context:
            raise ValueError(f"{where} has no {key!r} (the original image {key} in pixels)")
        value = context[key]
        if not _is_real(value):
            raise TypeError(
                f"{where}[{key!r}] must be a number (pixels), got {type(value).__name__}"
            )
        value = _as_float(value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}[{key!r}] must be positive and finite, got {value!r}")
        size.append(value)
    return size[0], size[1]


def validate_contexts(contexts: Any, batch_size: int) -> List[Tuple[float, float]]:
    """Check the contexts of a batch; return the (width, height) of each image in pixels.

    ``contexts``: a sequence of ``batch_size`` dicts, or a single dict when ``batch_size`` is 1;
    each dict has ``width`` and ``height``, positive finite numbers (the original image size in
    pixels, as returned by the preprocessing); other keys are ignored.
    Raises ``TypeError`` for a non-dict item or a non-numeric size, ``ValueError`` for a wrong
    count, a missing key or a non-positive/non-finite size, naming the item and the key.
    """
    if isinstance(contexts, Mapping):
        if batch_size != 1:
            raise ValueError(
                f"a single context dict is accepted only for batch size 1; the batch has "
                f"{batch_size} images: pass a sequence of {batch_size} dicts"
            )
        return [_context_size(contexts, "context")]
    if not isinstance(contexts, Sequence) or isinstance(contexts, (str, bytes)):
        raise TypeError(
            f"contexts must be a sequence of {batch_size} dicts with 'width' and 'height', "
            f"got {type(contexts).__name__}"
        )
    if len(contexts) != batch_size:
        raise ValueError(
            f"expected {batch_size} contexts (one per image of the batch), got {len(contexts)}"
        )
    return [_context_size(context, f"contexts[{n}]") for n, context in enumerate(contexts)]


class PostProcessorBase:
    """What both postprocessors share; subclasses implement ``_decode_batch``.

    Parameters (validated by :func:`validate_parameters`): ``score_threshold`` (a class score
    must be greater to be a candidate), ``iou_threshold`` (NMS keeps a box whose IoU with every
    kept box of its class is smaller), ``max_candidates_per_class`` (top-k per class before NMS),
    ``max_detections`` (per image, after merging the classes). Defaults are MLCommons'
    (``vision/classification_and_detection/python/models/ssd_r34.py``), from
    :mod:`ssd_resnet34.postprocess.defaults`: 0.05, 0.5, 200, 200. Where this package differs
    from that reference: ``docs/postprocess.md``, "Differences from the MLCommons reference".
    """

    def __init__(
        self,
        score_threshold: Union[float, Mapping] = SCORE_THRESHOLD,
        iou_threshold: float = IOU_THRESHOLD,
        max_candidates_per_class: int = MAX_CANDIDATES_PER_CLASS,
        max_detections: int = MAX_DETECTIONS,
        *,
        classes: Any = None,
        class_agnostic: bool = False,
    ) -> None:
        score_threshold, self._class_score_thresholds, self._classes, self._class_agnostic = (
            validate_options(score_threshold, classes, class_agnostic)
        )
        (
            self._score_threshold,
            self._iou_threshold,
            self._max_candidates_per_class,
            self._max_detections,
        ) = validate_parameters(
            score_threshold, iou_threshold, max_candidates_per_class, max_detections
        )
        self._setup()

    #: Whether ``_decode_batch`` takes float16 arrays as they are (else they are converted to
    #: float32 first); the result is the same (docs/postprocess.md, "Head outputs").
    _reads_float16 = False

    def _setup(self) -> None:
        """Subclass hook run after the parameters are validated and stored."""

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @property
    def class_score_thresholds(self) -> Optional[Dict[int, float]]:
        """The per-label thresholds of a mapping ``score_threshold`` (others: the default)."""
        return None if self._class_score_thresholds is None else dict(self._class_score_thresholds)

    @property
    def classes(self) -> Optional[Tuple[int, ...]]:
        """The wanted labels, ascending, or None for all 80."""
        return self._classes

    @property
    def class_agnostic(self) -> bool:
        return self._class_agnostic

    def _label_thresholds(self) -> Dict[int, float]:
        """The threshold of each wanted label (the labels that may have candidates)."""
        labels = self._classes if self._classes is not None else range(1, 81)
        per_label = self._class_score_thresholds or {}
        return {c: per_label.get(c, self._score_threshold) for c in labels}

    @property
    def iou_threshold(self) -> float:
        return self._iou_threshold

    @property
    def max_candidates_per_class(self) -> int:
        return self._max_candidates_per_class

    @property
    def max_detections(self) -> int:
        return self._max_detections

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(score_threshold={self._score_threshold!r}, "
            f"iou_threshold={self._iou_threshold!r}, "
            f"max_candidates_per_class={self._max_candidates_per_class!r}, "
            f"max_detections={self._max_detections!r}{self._options_repr()})"
        )

    def _options_repr(self) -> str:
        parts = []
        if self._class_score_thresholds is not None:
            parts.append(f"class_score_thresholds={self._class_score_thresholds!r}")
        if self._classes is not None:
            parts.append(f"classes={self._classes!r}")
        if self._class_agnostic:
            parts.append("class_agnostic=True")
        return "".join(", " + p for p in parts)

    def _decode_batch(self, outputs: List[np.ndarray]) -> List[Detections]:
        """Decode 12 structurally valid float32 arrays (finiteness not yet checked); per image a
        :class:`~ssd_resnet34.Detections` (built with ``Detections._trusted``: the decoders'
        output is valid by construction)."""
        raise NotImplementedError

    def _decode_checked(self, outputs: List[np.ndarray]) -> List[Detections]:
        """Check finiteness (:func:`check_finite`), then decode. A subclass whose decoder
        finds non-finite values itself may override this, raising the same error."""
        check_finite(outputs)
        return self._decode_batch(outputs)

    def decode(self, outputs: Sequence[np.ndarray]) -> List[Detections]:
        """Decode the 12 head outputs of a batch of N images to detections.

        ``outputs``: see :func:`check_output_arrays` (12 NCHW float arrays, batch size N).
        Returns a list of N :class:`~ssd_resnet34.Detections` (``boxes, labels, scores = d``
        unpacks them): boxes (K, 4) float32 normalized ltrb (not clipped), labels (K,) int64 in
        1..80, scores (K,) float32, sorted by score descending (ties: label, then anchor
        ascending); K <= max_detections.
        Raises ``TypeError``/``ValueError`` for bad outputs (see :func:`check_output_arrays`, :func:`check_finite`).
        """
        return self._decode_checked(check_output_arrays(outputs, self._reads_float16))

    def __call__(
        self, outputs: Sequence[np.ndarray], contexts: Any
    ) -> List[List[ObjectDetectionResult]]:
        """Decode a batch to :class:`ObjectDetectionResult` lists, boxes in pixels.

        ``outputs``: as :meth:`decode`. ``contexts``: one dict per image with the original
        image's ``width`` and ``height`` in pixels (a single dict is accepted for N == 1).
        Returns N lists of results, score-descending. Everything is validated before
        decoding (the outputs' structure, then the contexts, then NaN/inf); raises
        ``TypeError``/``ValueError`` (see :func:`check_output_arrays`, :func:`validate_contexts`).
        """
        arrays = check_output_arrays(outputs, self._reads_float16)
        sizes = validate_contexts(contexts, arrays[0].shape[0])
        detections = self._decode_checked(arrays)
        return [d.to_results(width, height) for d, (width, height) in zip(detections, sizes)]
