"""Result types of the postprocessor, as FuriosaAI's model card for SSDResNet34
(``furiosa.models.vision.postprocess``): one ``ObjectDetectionResult`` per detected box."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

__all__ = ["LtrbBoundingBox", "ObjectDetectionResult"]


@dataclass
class LtrbBoundingBox:
    """A box as (left, top, right, bottom) in pixels of the original image.

    Plain Python floats; iterating yields ``left, top, right, bottom``, so
    ``l, t, r, b = box`` and ``list(box)`` work. Not clipped to the image (as the
    MLCommons reference, ``vision/classification_and_detection/python/models/ssd_r34.py``).
    """

    left: float
    top: float
    right: float
    bottom: float

    def __iter__(self) -> Iterator[float]:
        yield self.left
        yield self.top
        yield self.right
        yield self.bottom


@dataclass
class ObjectDetectionResult:
    """One detection.

    - ``boundingbox``: the box in pixels of the original image (:class:`LtrbBoundingBox`).
    - ``score``: the class probability (softmax over the 81 classes), a float in (0, 1].
    - ``label``: the COCO class name, ``COCO_CLASSES[index]`` (e.g. ``"person"``).
    - ``index``: the model's label, an int in 1..80 (not the COCO category id; see
      :func:`ssd_resnet34.label_to_category_id`).
    """

    boundingbox: LtrbBoundingBox
    score: float
    label: str
    index: int
