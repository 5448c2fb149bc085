"""The postprocess parameters' defaults: one source for every signature that takes them.

MLCommons' reference (``vision/classification_and_detection/python/models/ssd_r34.py`` in
mlcommons/inference): a candidate's class score must exceed 0.05, NMS suppresses a box whose IoU
with a kept box of its class is >= 0.5, at most 200 candidates per class enter NMS and at most
200 detections per image are kept. ``docs/postprocess.md`` defines each step.
"""

from __future__ import annotations

__all__ = ["IOU_THRESHOLD", "MAX_CANDIDATES_PER_CLASS", "MAX_DETECTIONS", "SCORE_THRESHOLD"]

#: A class score must be greater than this to be a candidate (MLPerf: 0.05).
SCORE_THRESHOLD: float = 0.05
#: NMS keeps a box whose IoU with every kept box of its class is smaller than this.
IOU_THRESHOLD: float = 0.5
#: Candidates per class kept (by score) before NMS.
MAX_CANDIDATES_PER_CLASS: int = 200
#: Detections per image kept after merging the classes.
MAX_DETECTIONS: int = 200
