"""``Detections``: one image's detections, column-oriented (what ``decode`` returns per image).

Three columns of equal length K, in the postprocessor's order (score descending):

- ``boxes``: (K, 4) float32, ltrb normalized to the image (0..1 inside it; not clipped, as the
  MLCommons reference, ``vision/classification_and_detection/python/models/ssd_r34.py``: a box
  may reach outside the image, see :meth:`Detections.clip`);
- ``labels``: (K,) int64, the model's labels 1..80 (``COCO_CLASSES[label]``; not COCO category
  ids, see :func:`ssd_resnet34.coco.label_to_category_id`);
- ``scores``: (K,) float32 in [0, 1], descending.

Pixels come only with the image's size: :meth:`~Detections.xyxy`, :meth:`~Detections.xywh`,
:meth:`~Detections.to_results` (``ObjectDetectionResult`` per box, as the model card),
:meth:`~Detections.to_coco` (COCO results records), :meth:`~Detections.to_supervision`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import numpy as np

from .coco import COCO_CATEGORY_IDS, COCO_CLASSES
from .types import LtrbBoundingBox, ObjectDetectionResult

__all__ = ["SUPERVISION_EXTRA", "Detections"]

#: The optional extra that installs supervision (:meth:`Detections.to_supervision`).
SUPERVISION_EXTRA = "ssd-resnet34[supervision]"

_NUM_LABELS = len(COCO_CLASSES) - 1  # 80: labels 1..80 (0 is the background)
_CATEGORY_IDS = np.array([0 if c is None else c for c in COCO_CATEGORY_IDS], dtype=np.int64)
_CLASS_NAMES = np.array(COCO_CLASSES, dtype=object)


def _image_size(width: Any, height: Any) -> np.ndarray:
    """(width, height, width, height) as float64, after checking both are positive finite numbers."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number (pixels), got {type(value).__name__}")
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{name} must be positive and finite (pixels), got {value!r}")
    return np.array([width, height, width, height], dtype=np.float64)


def _column(name: str, value: Any, dtype: type, shape: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"Detections.{name} must be a numpy array of {np.dtype(dtype).name}, shape {shape}, "
                        f"got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"Detections.{name} must have dtype {np.dtype(dtype).name}, shape {shape}, "
                        f"got {value.dtype}")
    return value


@dataclass(frozen=True, eq=False)
class Detections:
    """One image's detections as three columns (see the module docstring for units).

    ``Detections(boxes, labels, scores)`` checks its input: numpy arrays of dtypes float32, int64
    and float32 (``TypeError`` otherwise), shapes (K, 4), (K,), (K,) with one K, finite boxes with
    ``left <= right`` and ``top <= bottom``, labels in 1..80, scores in [0, 1] and non-increasing
    (``ValueError`` naming what is wrong). The arrays are kept as given, not copied.

    - ``len(d)``: K. ``d[mask]`` (boolean array of shape (K,)) and ``d[a:b]`` (a slice with a
      positive step) give another ``Detections``; ``d[i]`` is refused (``TypeError``): it would
      be ambiguous between the i-th box and the i-th column.
    - ``boxes, labels, scores = d`` unpacks the columns (as the tuples ``decode`` used to return).
    - ``d == other``: the same values, dtypes and order in all three columns.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = _column("boxes", self.boxes, np.float32, "(K, 4)")
        labels = _column("labels", self.labels, np.int64, "(K,)")
        scores = _column("scores", self.scores, np.float32, "(K,)")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes must have shape (K, 4) (ltrb), got {boxes.shape}")
        count = boxes.shape[0]
        for name, column in (("labels", labels), ("scores", scores)):
            if column.shape != (count,):
                raise ValueError(f"Detections.{name} must have shape ({count},) (one per box), got {column.shape}")
        if count == 0:
            return
        if not np.isfinite(boxes).all():
            raise ValueError("Detections.boxes must be finite (NaN or infinite coordinates found)")
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError("Detections.boxes must be ltrb with left <= right and top <= bottom")
        if labels.min() < 1 or labels.max() > _NUM_LABELS:
            raise ValueError(f"Detections.labels must be model labels in 1..{_NUM_LABELS}, "
                             f"got values in {labels.min()}..{labels.max()}")
        if not (np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1):
            raise ValueError("Detections.scores must be in [0, 1]")
        if (np.diff(scores) > 0).any():
            raise ValueError("Detections.scores must be in descending order (the postprocessor's order)")

    @classmethod
    def _trusted(cls, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> Detections:
        """Wrap arrays known to be valid (the postprocessors' output) without checking them."""
        detections = object.__new__(cls)
        object.__setattr__(detections, "boxes", boxes)
        object.__setattr__(detections, "labels", labels)
        object.__setattr__(detections, "scores", scores)
        return detections

    @classmethod
    def empty(cls) -> Detections:
        """No detections (K = 0)."""
        return cls._trusted(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))

    # -- the container ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        """The three columns, so that ``boxes, labels, scores = d`` works (not the K detections)."""
        return iter((self.boxes, self.labels, self.scores))

    def __getitem__(self, key: Any) -> Detections:
        if isinstance(key, slice):
            if key.step is not None and key.step < 1:
                raise ValueError("Detections[a:b:step] needs a positive step (the order is score descending)")
            return self._trusted(self.boxes[key], self.labels[key], self.scores[key])
        mask = np.asarray(key) if isinstance(key, (list, np.ndarray)) else None
        if mask is not None and mask.dtype == np.bool_:
            if mask.shape != (len(self),):
                raise ValueError(f"a boolean mask over Detections must have shape ({len(self)},), got {mask.shape}")
            return self._trusted(self.boxes[mask], self.labels[mask], self.scores[mask])
        raise TypeError(
            f"Detections cannot be indexed by {type(key).__name__}: use d.boxes, d.labels, d.scores for the "
            "columns, a slice (d[i:i + 1] for one detection) or a boolean mask (d[d.scores > 0.5]), or "
            "unpack it: boxes, labels, scores = d"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return all(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
                   for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def __repr__(self) -> str:
        top = f", top: {COCO_CLASSES[int(self.labels[0])]} {float(self.scores[0]):.2f}" if len(self) else ""
        return f"Detections({len(self)} boxes{top})"

    # -- derived views ------------------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        """The COCO class name of each detection (``COCO_CLASSES[label]``)."""
        return [COCO_CLASSES[label] for label in self.labels.tolist()]

    def clip(self) -> Detections:
        """The same detections with each box clipped to the image (normalized [0, 1]); K is kept
        (a box entirely outside becomes a zero-area box on the border)."""
        return self._trusted(np.clip(self.boxes, np.float32(0), np.float32(1)), self.labels, self.scores)

    def xyxy(self, width: float, height: float) -> np.ndarray:
        """(K, 4) float64 ltrb boxes in pixels of a ``width`` x ``height`` image: the normalized
        boxes (converted to float64) times (width, height, width, height). Raises ``TypeError`` /
        ``ValueError`` for a size that is not a positive finite number."""
        return self.boxes.astype(np.float64) * _image_size(width, height)

    def xywh(self, width: float, height: float) -> np.ndarray:
        """(K, 4) float64 boxes ``[left, top, width, height]`` in pixels (COCO's ``bbox``)."""
        boxes = self.xyxy(width, height)
        boxes[:, 2:] -= boxes[:, :2]
        return boxes

    def to_results(self, width: float, height: float) -> List[ObjectDetectionResult]:
        """One :class:`~ssd_resnet34.ObjectDetectionResult` per detection, boxes in pixels
        (:meth:`xyxy`, as Python floats), score as a Python float, label as its class name and
        ``index`` the model label; in this object's order."""
        return [
            ObjectDetectionResult(boundingbox=LtrbBoundingBox(*box), score=score, label=COCO_CLASSES[label],
                                  index=label)
            for box, label, score in zip(self.xyxy(width, height).tolist(), self.labels.tolist(),
                                         self.scores.tolist())
        ]

    def to_coco(self, image_id: int, width: float, height: float) -> List[Dict[str, Any]]:
        """COCO results records (``pycocotools`` ``COCO.loadRes``): per detection ``image_id``,
        ``category_id`` (the official COCO id, 1..90), ``bbox`` ``[x, y, w, h]`` in pixels
        (:meth:`xywh`) and ``score``; plain Python numbers, not rounded, as MLPerf's
        ``accuracy-coco.py``. Raises ``TypeError`` / ``ValueError`` for a non-int or negative
        ``image_id``."""
        if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, numbers.Integral):
            raise TypeError(f"image_id must be an int, got {type(image_id).__name__}")
        if image_id < 0:
            raise ValueError(f"image_id must be >= 0, got {image_id}")
        image_id = int(image_id)
        return [
            {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}
            for category, bbox, score in zip(_CATEGORY_IDS[self.labels].tolist(), self.xywh(width, height).tolist(),
                                             self.scores.tolist())
        ]

    def to_supervision(self, width: float, height: float) -> Any:
        """A ``supervision.Detections``: ``xyxy`` (K, 4) float64 pixels, ``class_id`` (the model
        labels, int64), ``confidence`` (float32 scores), ``data["class_name"]`` (COCO names).
        Raises ``ImportError`` naming the extra ``ssd-resnet34[supervision]`` when supervision is
        not installed."""
        try:
            import supervision
        except ImportError:
            raise ImportError(
                f"to_supervision needs the supervision package: pip install '{SUPERVISION_EXTRA}'"
            ) from None
        return supervision.Detections(
            xyxy=self.xyxy(width, height),
            class_id=self.labels.copy(),
            confidence=self.scores.copy(),
            data={"class_name": _CLASS_NAMES[self.labels].astype(str)},
        )
