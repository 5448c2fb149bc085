"""The accuracy tools' IoU (ssd_resnet34.evaluation.accuracy.iou), against the bit-exact
reference's own copy and hand-computed values."""

from __future__ import annotations

import numpy as np
from ssd_resnet34.evaluation.accuracy.iou import pairwise_iou
from ssd_resnet34.evaluation.accuracy.oracle import random_ground_truth
from ssd_resnet34.postprocess.reference import iou_matrix


def test_hand_computed_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float64)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], np.float64)
    np.testing.assert_allclose(pairwise_iou(a, b), [[1 / 7, 1, 0], [0, 1 / 4, 0]])
    assert pairwise_iou(a, b).dtype == np.float64


def test_empty_unions_and_empty_sets():
    point = np.array([[0.5, 0.5, 0.5, 0.5]])
    assert pairwise_iou(point, point).tolist() == [[0.0]]
    assert pairwise_iou(np.zeros((0, 4)), point).shape == (0, 1)


def test_agrees_with_the_references_copy():
    boxes, _ = random_ground_truth(40, seed=3)
    ours = pairwise_iou(boxes, boxes)
    np.testing.assert_allclose(ours, iou_matrix(boxes, boxes), atol=1e-6)
