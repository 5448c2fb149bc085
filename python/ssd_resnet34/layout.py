"""The layout of SSD-ResNet34's input and its 12 head outputs: the single Python source.

Every other module takes the input size, the class count, the six feature-map levels and the
head shapes from here; ``rust/layout.rs`` mirrors these numbers on the native side (the tests check
that the two agree: the default boxes, and the shapes each side accepts and refuses). The values are MLCommons' reference,
``vision/classification_and_detection/python/models/ssd_r34.py`` in mlcommons/inference
(``SSD_R34`` with ``dboxes_R34_coco((1200, 1200), ...)``), and FuriosaAI's model card.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

__all__ = [
    "INPUT_SIZE",
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "NUM_LEVELS",
    "NUM_OUTPUTS",
    "NUM_ANCHORS",
    "Level",
    "LEVELS",
    "HEAD_SHAPES",
    "describe_output",
]

#: Side of the square model input, in pixels (the model sees 1200x1200 images).
INPUT_SIZE = 1200
#: The model input for one image: (N, C, H, W) float32, RGB, normalized.
INPUT_SHAPE: Tuple[int, int, int, int] = (1, 3, INPUT_SIZE, INPUT_SIZE)
#: Classes per anchor: 0 = background, 1..80 = COCO classes.
NUM_CLASSES = 81
#: Feature-map levels of the SSD head.
NUM_LEVELS = 6
#: Head outputs: 6 class-logit tensors, then 6 box-offset tensors.
NUM_OUTPUTS = 2 * NUM_LEVELS

_FEATURE_SIZES = (50, 25, 13, 7, 3, 3)
#: Default boxes per feature-map cell (nd): 2 + 2 per extra aspect ratio.
_BOXES_PER_CELL = (4, 6, 6, 6, 4, 4)


class Level(NamedTuple):
    """One feature-map level of the SSD head.

    ``class_shape`` / ``box_shape`` are the per-image (C, F, F) shapes of
    ``outputs[index]`` (class logits) and ``outputs[6 + index]`` (box offsets);
    the full tensors are NCHW with a leading batch axis N.
    """

    index: int
    feature_size: int  # F
    boxes_per_cell: int  # nd
    num_anchors: int  # A_l = nd * F * F
    first_anchor: int  # global index of the level's first anchor
    class_shape: Tuple[int, int, int]  # (81 * nd, F, F)
    box_shape: Tuple[int, int, int]  # (4 * nd, F, F)


def _make_levels() -> Tuple[Level, ...]:
    levels = []
    first = 0
    for index, (size, nd) in enumerate(zip(_FEATURE_SIZES, _BOXES_PER_CELL)):
        count = nd * size * size
        levels.append(
            Level(
                index=index,
                feature_size=size,
                boxes_per_cell=nd,
                num_anchors=count,
                first_anchor=first,
                class_shape=(NUM_CLASSES * nd, size, size),
                box_shape=(4 * nd, size, size),
            )
        )
        first += count
    return tuple(levels)


#: The 6 levels, in output order (see the table in docs/postprocess.md).
LEVELS: Tuple[Level, ...] = _make_levels()
#: 15,130 anchors (default boxes) in all.
NUM_ANCHORS = sum(level.num_anchors for level in LEVELS)
#: Per-image (C, H, W) shapes of the 12 head outputs, in the model card's order:
#: class logits of levels 0..5 (81*nd channels), then box offsets of levels 0..5 (4*nd).
HEAD_SHAPES: Tuple[Tuple[int, int, int], ...] = tuple(
    [level.class_shape for level in LEVELS] + [level.box_shape for level in LEVELS]
)


def describe_output(k: int) -> str:
    """``"outputs[k] (class logits, level l)"`` or ``"outputs[k] (box offsets, level l)"``."""
    if k < NUM_LEVELS:
        return f"outputs[{k}] (class logits, level {k})"
    return f"outputs[{k}] (box offsets, level {k - NUM_LEVELS})"
