"""NativePostProcessor against PythonPostProcessor at the candidate density of a real trained
model: the dense input of the benchmarks (``benches/_common.dense_head_outputs``: the oracle plus
N(0, 1) noise on every class logit, background logit shifted; 2,000-4,000 candidates per image),
where most anchors' scores are near the threshold and most surviving anchors of the quick
reject get the full softmax. Same labels in the same order, boxes and scores within 1e-5
(``compare_detections``; in practice bit for bit)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from test_postprocess_native import assert_same

from _paths import BENCHES

sys.path.insert(0, str(BENCHES))
from _common import candidate_count, dense_head_outputs, oracle  # noqa: E402

from ssd_resnet34.evaluation.accuracy.ground_truth import load_coco_ground_truth  # noqa: E402


@pytest.fixture(scope="module")
def NativePostProcessor(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor


@pytest.fixture(scope="module")
def PythonPostProcessor():
    from ssd_resnet34 import PythonPostProcessor

    return PythonPostProcessor


def batch_of(images):
    return [np.concatenate(parts, axis=0) for parts in zip(*images)]


@pytest.fixture(scope="module")
def coco_dense(coco_annotations):
    """Dense outputs for 6 COCO images spread over the subset, with their candidate counts."""
    images = load_coco_ground_truth(coco_annotations)[::40][:6]
    outputs = [dense_head_outputs(im.boxes, im.labels, seed=n) for n, im in enumerate(images)]
    return outputs, [candidate_count(o) for o in outputs]


def test_dense_coco_images(NativePostProcessor, PythonPostProcessor, compare_detections, coco_dense):
    outputs, counts = coco_dense
    assert all(2000 <= n <= 4000 for n in counts), counts
    expected = assert_same(NativePostProcessor(), PythonPostProcessor(), batch_of(outputs),
                           compare_detections)
    assert all(len(labels) == 200 for _, labels, _ in expected)
    # One image at a time (the within-image parallel path) gives the same detections.
    single = NativePostProcessor().decode(outputs[0])[0]
    compare_detections(single, expected[0])


@pytest.mark.parametrize("params", [
    {"score_threshold": 0.2},
    {"score_threshold": 0.01, "max_detections": 1000},
    {"iou_threshold": 0.3, "max_candidates_per_class": 20},
    {"iou_threshold": 0.9, "max_candidates_per_class": 400, "max_detections": 3000},
])
def test_dense_coco_images_other_parameters(NativePostProcessor, PythonPostProcessor,
                                            compare_detections, coco_dense, params):
    outputs, _ = coco_dense
    assert_same(NativePostProcessor(**params), PythonPostProcessor(**params), batch_of(outputs[:2]),
                compare_detections)


@pytest.mark.parametrize("shift", [-1.0, 0.5, 1.5])
def test_dense_synthetic_ground_truth(NativePostProcessor, PythonPostProcessor,
                                      compare_detections, shift):
    # Without ../shared too; from about four times to a quarter of the benchmark's density.
    truths = [oracle.random_ground_truth(count, seed=seed) for seed, count in enumerate([3, 12, 40])]
    outputs = [dense_head_outputs(boxes, labels, seed=10 + n, background_shift=shift)
               for n, (boxes, labels) in enumerate(truths)]
    counts = [candidate_count(o) for o in outputs]
    assert min(counts) > 300, counts
    assert_same(NativePostProcessor(), PythonPostProcessor(), batch_of(outputs), compare_detections)
