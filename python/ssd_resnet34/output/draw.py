"""Draw labelled detection boxes on an image (OpenCV), for looking at results."""

from __future__ import annotations

import colorsys
from typing import Iterable, Tuple

import cv2
import numpy as np

from ..types import ObjectDetectionResult

__all__ = ["class_color", "draw_detections"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(label: int) -> Tuple[int, int, int]:
    """A distinct, saturated BGR colour for model label ``label`` (1..80), stable across runs.

    Hues step by the golden ratio so that neighbouring labels get far-apart colours.
    """
    hue = (int(label) * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (int(blue * 255), int(green * 255), int(red * 255))


def _text_color(background: Tuple[int, int, int]) -> Tuple[int, int, int]:
    blue, green, red = background
    luma = 0.114 * blue + 0.587 * green + 0.299 * red
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_detections(image: np.ndarray, detections: Iterable[ObjectDetectionResult]) -> np.ndarray:
    """A copy of ``image`` with each detection's box and ``"<class> <score>"`` drawn on it.

    ``image``: uint8 BGR (H, W, 3) (grayscale (H, W) is converted to BGR), the original image the
    detections' pixel boxes refer to; it is not modified. ``detections``: ``ObjectDetectionResult``
    objects (ltrb boxes in pixels). Each class gets its own colour (:func:`class_color`); line
    width and text size scale with the image; the label sits on a filled tag above the box (below
    its top edge when there is no room). Boxes are clipped to the image for drawing only; a box
    entirely outside the image is not drawn. Higher scores are drawn last (on top).

    Raises ``TypeError`` for a non-uint8 array, ``ValueError`` for another shape.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(
            f"image: expected a uint8 numpy array, got {getattr(image, 'dtype', type(image).__name__)}"
        )
    if image.ndim == 2:
        canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 3:
        canvas = np.ascontiguousarray(image).copy()
    else:
        raise ValueError(f"image: expected shape (H, W, 3) BGR or (H, W), got {image.shape}")
    height, width = canvas.shape[:2]
    scale = max(height, width) / 1000.0
    thickness = max(1, round(2 * scale))
    font_scale = max(0.4, 0.6 * scale)
    font_thickness = max(1, round(1.5 * scale))
    pad = max(2, round(3 * scale))

    for detection in sorted(detections, key=lambda d: d.score):
        left, top, right, bottom = detection.boundingbox
        if not all(np.isfinite([left, top, right, bottom])):
            continue
        x1 = int(round(min(max(left, 0.0), width - 1)))
        y1 = int(round(min(max(top, 0.0), height - 1)))
        x2 = int(round(min(max(right, 0.0), width - 1)))
        y2 = int(round(min(max(bottom, 0.0), height - 1)))
        if right < 0 or bottom < 0 or left > width - 1 or top > height - 1 or x2 < x1 or y2 < y1:
            continue
        color = class_color(detection.index)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)

        text = f"{detection.label} {detection.score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, font_thickness)
        tag_h = text_h + baseline + 2 * pad
        tag_top = y1 - tag_h if y1 - tag_h >= 0 else y1
        tag_left = min(x1, max(0, width - text_w - 2 * pad))
        cv2.rectangle(
            canvas, (tag_left, tag_top), (tag_left + text_w + 2 * pad, tag_top + tag_h), color, cv2.FILLED
        )
        cv2.putText(
            canvas,
            text,
            (tag_left + pad, tag_top + pad + text_h),
            _FONT,
            font_scale,
            _text_color(color),
            font_thickness,
            cv2.LINE_AA,
        )
    return canvas
