"""Native (Rust) parts of ssd_resnet34 (the ``ssd_resnet34._native`` extension module).

The SSD-ResNet34 postprocessor (softmax, threshold, per-class top-k, box decoding, greedy
NMS, merge), the default boxes, single-class NMS and the input normalization, exactly as
``docs/postprocess.md`` defines them after MLCommons' reference
(``vision/classification_and_detection/python/models/ssd_r34.py`` and ``dataset.py`` in
mlcommons/inference). Native work releases the GIL and is safe to call from several
threads at once; a Rust panic surfaces as ``RuntimeError``, never a crash.

Head outputs (the model card's numbering, ``outputs[k]``): for level l = 0..5 with feature
map F = (50, 25, 13, 7, 3, 3) and nd = (4, 6, 6, 6, 4, 4) default boxes per cell, the
class logits ``outputs[l]`` have shape (N, 81*nd, F, F) and the box offsets
``outputs[6+l]`` (N, 4*nd, F, F), float32 or float16 (each tensor on its own; float16 is
converted exactly to float32 as it is read), NCHW. 15,130 anchors in all, 81 classes
(0 = background, 1..80 = the COCO classes in the order of their category ids).
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt

__all__ = ["Postprocessor", "default_boxes", "nms", "normalize_image"]

_Detections = Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]
"""One image's detections: boxes (K, 4) float32 normalized ltrb (l, t, r, b; 1.0 = image
width/height, not clipped), labels (K,) int64 in 1..80, scores (K,) float32 softmax scores;
sorted by (score descending, label ascending, anchor ascending), K <= max_detections.
(A name of this stub only; the module has no such attribute.)"""

_Head = Union[npt.NDArray[np.float32], npt.NDArray[np.float16]]
"""One head output tensor: float32 or float16. (A name of this stub only.)"""

@final
class Postprocessor:
    """The SSD-ResNet34 postprocessor of ``docs/postprocess.md`` (MLCommons'
    ``Encoder.decode_batch`` in ``models/ssd_r34.py``, with the listed differences).

    Parameters (read back through the read-only attributes of the same names):

    - ``score_threshold``: a candidate (anchor, class >= 1) needs softmax score >
      score_threshold (both compared as float32); in [0, 1].
    - ``iou_threshold``: NMS keeps a box when its IoU with every box already kept for the
      class is < iou_threshold (float32); in (0, 1].
    - ``max_candidates_per_class``: the highest-scoring candidates per class that enter
      NMS; any Python integer >= 1 (numpy integers too).
    - ``max_detections``: detections per image after the merge; any Python integer >= 1.

    Options (keyword-only; docs/postprocess.md, "Options"; the defaults are MLPerf's):

    - ``classes``: labels 1..80 that may have candidates (None: all 80); the others have
      none, so they are never sorted, decoded or suppressed.
    - ``class_score_thresholds``: label -> threshold in [0, 1] for the labels it names; the
      others use ``score_threshold``.
    - ``class_agnostic``: one greedy NMS over the top-k candidates of all classes, in
      merge order (score desc, label asc, anchor asc), stopped at ``max_detections`` kept.
    - ``within_image``: split a batch of one across the rayon pool (the score pass over
      anchor ranges, the classes in two halves). Off by default: it pays only when other
      cores are idle and awake (README, "Postprocess threads"). A batch of N images runs
      one image per thread either way; the detections are the same.

    Counts above the number of candidates mean no limit: any size is accepted (``2**63``,
    ``10**30``) and values above ``2**64 - 1`` read back as ``2**64 - 1``.

    Raises ``ValueError`` for a parameter out of its range (a count < 1), ``TypeError``
    for a non-numeric threshold or a count that is not an integer (``2.5``, ``"3"``);
    the message names the parameter.
    """

    def __new__(
        cls,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_candidates_per_class: int = 200,
        max_detections: int = 200,
        *,
        classes: Optional[Sequence[int]] = None,
        class_score_thresholds: Optional[Dict[int, float]] = None,
        class_agnostic: bool = False,
        within_image: bool = False,
    ) -> "Postprocessor": ...
    @property
    def classes(self) -> Optional[List[int]]: ...
    @property
    def class_score_thresholds(self) -> Optional[Dict[int, float]]: ...
    @property
    def class_agnostic(self) -> bool: ...
    @property
    def within_image(self) -> bool: ...
    @property
    def score_threshold(self) -> float: ...
    @property
    def iou_threshold(self) -> float: ...
    @property
    def max_candidates_per_class(self) -> int: ...
    @property
    def max_detections(self) -> int: ...
    def decode(
        self,
        class_logits: Union[List[_Head], Tuple[_Head, ...]],
        box_offsets: Union[List[_Head], Tuple[_Head, ...]],
    ) -> List[_Detections]:
        """Decodes a batch of head outputs into detections, one tuple per image.

        ``class_logits``: a list or tuple of the 6 class-logit tensors ``outputs[0..5]`` in
        level order, (N, 81*nd, F, F); ``box_offsets``: the 6 box-offset tensors
        ``outputs[6..11]``, (N, 4*nd, F, F). Each tensor is float32 or float16 (mixes
        allowed): float16 is read as it is (half the bytes) and each value converted
        exactly to float32, so the result equals that of ``astype(np.float32)`` bit for bit
        (docs/postprocess.md, "Head outputs"). All must have the same batch size N
        (N = 0 gives ``[]``). C-contiguous arrays are read in place; any other layout
        (views, transposes, Fortran order) is copied to C order first.

        Returns a list of N ``(boxes, labels, scores)`` tuples (see ``_Detections``).

        Raises ``TypeError`` when an argument is not a list/tuple, an element is not a
        numpy array, or its dtype is not float32 or float16 (convert float64 first);
        ``ValueError`` for not exactly 6 tensors, a wrong rank or shape, batch sizes that
        differ, or NaN/inf in any tensor. Messages name the tensor as ``outputs[k]``, e.g.
        ``outputs[3] (class logits, level 3) has shape (1, 486, 8, 7); expected (N, 486, 7, 7)``
        or ``outputs[8] (box offsets, level 2) contains NaN or infinite values (batch item 0)``;
        nothing is decoded then.
        """

def default_boxes() -> npt.NDArray[np.float32]:
    """The 15,130 default boxes (anchors) of SSD-ResNet34 at 1200x1200: a new (15130, 4)
    float32 array of (cx, cy, w, h), normalized to the image and clamped to [0, 1], in
    global anchor order (level by level; within a level d*F*F + i*F + j), as MLCommons'
    ``dboxes_R34_coco((1200, 1200), ...)``."""

def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.int64]:
    """Single-class greedy NMS as in ``docs/postprocess.md``, without a candidate cut.

    ``boxes``: (K, 4) float32 ltrb (any units); ``scores``: (K,) float32;
    ``iou_threshold`` in (0, 1] (compared as float32). Boxes are processed by (score
    descending, index ascending; -0.0 equals 0.0); one is kept when its IoU with every
    kept box is < iou_threshold, with the IoU computed in float32 in the documented
    operation order (overlaps clamped at 0; zero-area and inverted boxes have IoU 0).

    Returns the int64 indices of the kept boxes, in processing order.

    Raises ``TypeError`` for a non-array or a dtype other than float32; ``ValueError`` for
    wrong shapes, K that differ, NaN/inf in boxes or scores, or an iou_threshold outside
    (0, 1].
    """

def normalize_image(
    image: npt.NDArray[np.uint8],
    out: npt.NDArray[np.float32],
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> None:
    """Writes the normalized model input of one image into ``out``, in place.

    ``image``: (H, W, 3) uint8, C-contiguous, BGR channel order (as OpenCV decodes);
    ``out``: (3, H, W) float32, C-contiguous and writable, e.g. one slot ``batch[i]`` of a
    preallocated (N, 3, H, W) array; ``mean``/``std``: 3 values per RGB channel.
    Writes RGB CHW: ``out[c, y, x] = ((f32(v) / 255) - f32(mean[c])) / f32(std[c])`` with
    ``v = image[y, x, 2 - c]``, in float32 in exactly that order, bit for bit the result
    of MLCommons' ``pre_process_coco_resnet34`` (``img / 255. - mean; img / std`` on a
    float32 RGB image, ``dataset.py``), via a 3 x 256 lookup table fused with the
    HWC -> CHW transpose.

    Raises ``TypeError`` for a non-array or the wrong dtype; ``ValueError`` for wrong
    shapes, a non-contiguous array, a read-only or already borrowed ``out``, or
    non-finite mean/std or a zero std.
    """
