"""Default boxes, the level table, COCO class names and category ids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ssd_resnet34 import COCO_CLASSES, default_boxes, label_to_category_id
from ssd_resnet34.anchors import default_boxes_ltrb
from ssd_resnet34.layout import LEVELS, NUM_ANCHORS
from ssd_resnet34.coco import COCO_CATEGORY_IDS, category_id_to_label


def test_level_table_matches_the_model_card():
    assert [level.feature_size for level in LEVELS] == [50, 25, 13, 7, 3, 3]
    assert [level.boxes_per_cell for level in LEVELS] == [4, 6, 6, 6, 4, 4]
    assert [level.num_anchors for level in LEVELS] == [10000, 3750, 1014, 294, 36, 36]
    assert [level.first_anchor for level in LEVELS] == [0, 10000, 13750, 14764, 15058, 15094]
    assert NUM_ANCHORS == 15130
    assert [level.class_shape for level in LEVELS] == [
        (324, 50, 50), (486, 25, 25), (486, 13, 13), (486, 7, 7), (324, 3, 3), (324, 3, 3)]
    assert [level.box_shape for level in LEVELS] == [
        (16, 50, 50), (24, 25, 25), (24, 13, 13), (24, 7, 7), (16, 3, 3), (16, 3, 3)]


def _expected_box(level: int, d: int, i: int, j: int):
    """One default box straight from the formula of docs/postprocess.md (float64)."""
    scales = [84, 180, 396, 612, 828, 1044, 1260]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    fk = [50, 25, 13, 7, 3, 3][level]
    sk1, sk2 = scales[level] / 1200, scales[level + 1] / 1200
    sizes = [(sk1, sk1), (math.sqrt(sk1 * sk2),) * 2]
    for alpha in ratios[level]:
        sizes += [(sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)),
                  (sk1 / math.sqrt(alpha), sk1 * math.sqrt(alpha))]
    w, h = sizes[d]
    return [(j + 0.5) / fk, (i + 0.5) / fk, w, h]


def test_default_boxes_follow_the_formula_bit_for_bit():
    boxes = default_boxes()
    assert boxes.shape == (15130, 4) and boxes.dtype == np.float32
    rng = np.random.default_rng(0)
    for level in LEVELS:
        F = level.feature_size
        for _ in range(20):
            d, i, j = rng.integers(level.boxes_per_cell), rng.integers(F), rng.integers(F)
            a = level.first_anchor + d * F * F + i * F + j
            expected = np.clip(np.float32(_expected_box(level.index, d, i, j)), 0, 1)
            np.testing.assert_array_equal(boxes[a], expected)
    # Spot values: the first box of level 0, and the widest box of level 5 clamped to 1.
    np.testing.assert_array_equal(boxes[0], np.float32([0.01, 0.01, 0.07, 0.07]))
    assert boxes[15094 + 2 * 9, 2] == 1.0  # 0.87 * sqrt(2) > 1, clamped
    assert boxes.min() >= 0 and boxes.max() <= 1


def test_default_boxes_are_copies_and_ltrb_is_consistent():
    boxes = default_boxes()
    boxes[0] = 5
    assert default_boxes()[0, 0] == np.float32(0.01)
    ltrb = default_boxes_ltrb()
    xywh = default_boxes()
    np.testing.assert_array_equal(ltrb[:, 0], xywh[:, 0] - np.float32(0.5) * xywh[:, 2])
    np.testing.assert_array_equal(ltrb[:, 3], xywh[:, 1] + np.float32(0.5) * xywh[:, 3])


def test_native_default_boxes_are_identical(native):
    np.testing.assert_array_equal(native.default_boxes(), default_boxes())
    assert native.default_boxes().dtype == np.float32


def test_coco_classes_and_ids_shape():
    assert len(COCO_CLASSES) == 81 and COCO_CLASSES[0] == "background"
    assert COCO_CLASSES[1] == "person" and COCO_CLASSES[80] == "toothbrush"
    assert len(set(COCO_CLASSES)) == 81
    assert len(COCO_CATEGORY_IDS) == 81 and COCO_CATEGORY_IDS[0] is None
    ids = COCO_CATEGORY_IDS[1:]
    assert list(ids) == sorted(ids) and ids[0] == 1 and ids[-1] == 90 and len(set(ids)) == 80


def test_coco_names_and_ids_match_the_annotation_file(coco_annotations):
    categories = json.loads(coco_annotations.read_text())["categories"]
    assert [c["id"] for c in categories] == list(COCO_CATEGORY_IDS[1:])
    assert [c["name"] for c in categories] == list(COCO_CLASSES[1:])


def test_label_category_id_round_trip():
    labels = np.arange(1, 81)
    ids = label_to_category_id(labels)
    assert ids.dtype == np.int64 and ids.shape == (80,)
    assert ids.tolist() == list(COCO_CATEGORY_IDS[1:])
    np.testing.assert_array_equal(category_id_to_label(ids), labels)
    assert label_to_category_id(12) == 13  # "stop sign": id 12 is unused by COCO
    assert category_id_to_label(90) == 80
    assert label_to_category_id([[1, 80]]).shape == (1, 2)
    assert label_to_category_id(np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("bad", [0, 81, -1, [1, 2, 0]])
def test_label_to_category_id_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="1..80"):
        label_to_category_id(bad)


@pytest.mark.parametrize("bad", [0, 12, 26, 83, 91, [1, 66]])
def test_category_id_to_label_rejects_unknown_ids(bad):
    with pytest.raises(ValueError, match="not a COCO category id"):
        category_id_to_label(bad)


@pytest.mark.parametrize("bad", [1.0, [True], np.array([1.5])])
def test_label_mapping_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="integers"):
        label_to_category_id(bad)
    with pytest.raises(TypeError, match="integers"):
        category_id_to_label(bad)


def test_public_api_names_and_lazy_import():
    import subprocess
    import sys

    code = (
        "import sys, ssd_resnet34\n"
        "assert 'ssd_resnet34._native' not in sys.modules\n"
        "assert 'onnxruntime' not in sys.modules and 'cv2' not in sys.modules\n"
        "from ssd_resnet34 import (NativePostProcessor, PythonPostProcessor, ObjectDetectionResult,\n"
        "    LtrbBoundingBox, COCO_CLASSES, default_boxes, label_to_category_id)\n"
        "assert 'ssd_resnet34._native' not in sys.modules\n"
        "assert PythonPostProcessor().max_detections == 200\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_native_postprocessor_without_the_extension_says_how_to_build(monkeypatch):
    import sys

    from ssd_resnet34 import NativePostProcessor

    monkeypatch.setitem(sys.modules, "ssd_resnet34._native", None)  # import fails
    with pytest.raises(ImportError, match=r"not built.*pip install -e \."):
        NativePostProcessor()
