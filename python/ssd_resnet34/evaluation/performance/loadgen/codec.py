"""The LoadGen response of one sample: its detections as MLCommons' reference encodes them for
SSD-ResNet34 (``PostProcessCocoPt`` in ``vision/classification_and_detection/python/coco.py``):
per detection 7 float32 values ``[qsl_index, top, left, bottom, right, score, label]``, box
corners normalized to the image and ``label`` the model label 1..80.
"""

from __future__ import annotations

import numpy as np

from ....detections import Detections

__all__ = ["RESPONSE_WIDTH", "Detections", "decode_response", "encode_response"]

#: Values per detection in a LoadGen response (the MLCommons reference's layout).
RESPONSE_WIDTH = 7

def encode_response(qsl_index: int, detections: Detections) -> np.ndarray:
    """One sample's detections as the (K, 7) float32 array sent to LoadGen.

    Columns: ``qsl_index, top, left, bottom, right, score, label`` (normalized corners, model
    label 1..80), as MLCommons' ``PostProcessCocoPt``. Raises ``ValueError`` on mismatched lengths.
    """
    boxes, labels, scores = detections
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float32)
    if not (len(boxes) == len(labels) == len(scores)):
        raise ValueError(
            f"detections must have as many boxes, labels and scores, got {len(boxes)}, {len(labels)}, {len(scores)}"
        )
    out = np.empty((len(boxes), RESPONSE_WIDTH), dtype=np.float32)
    out[:, 0] = qsl_index
    out[:, 1] = boxes[:, 1]
    out[:, 2] = boxes[:, 0]
    out[:, 3] = boxes[:, 3]
    out[:, 4] = boxes[:, 2]
    out[:, 5] = scores
    out[:, 6] = labels
    return out


def decode_response(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_response` on the raw bytes: a (K, 7) float32 array."""
    if len(data) % (4 * RESPONSE_WIDTH):
        raise ValueError(f"a response must hold a multiple of {RESPONSE_WIDTH} float32 values, got {len(data)} bytes")
    return np.frombuffer(data, dtype=np.float32).reshape(-1, RESPONSE_WIDTH)
