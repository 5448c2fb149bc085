"""Shared fixtures: paths of the shared COCO data, the postprocessors, detection comparison."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from _paths import SHARED_DATA

COCO_ANNOTATIONS = SHARED_DATA / "coco-val2017-subset" / "instances_val2017_subset.json"


@pytest.fixture(scope="session")
def coco_annotations() -> Path:
    """Path of the shared COCO val2017 subset annotations; skips when ../shared is absent."""
    if not COCO_ANNOTATIONS.is_file():
        pytest.skip(f"shared COCO annotations not found at {COCO_ANNOTATIONS} (../shared absent)")
    return COCO_ANNOTATIONS


@pytest.fixture(scope="session")
def native():
    """The compiled extension ``ssd_resnet34._native``; skips only when it is not built."""
    try:
        return importlib.import_module("ssd_resnet34._native")
    except ModuleNotFoundError as error:
        if error.name != "ssd_resnet34._native":
            raise
        pytest.skip("ssd_resnet34._native is not built (pip install -e . from the repo root)")


@pytest.fixture(scope="session")
def native_pp(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor()


@pytest.fixture(scope="session")
def python_pp():
    from ssd_resnet34 import PythonPostProcessor

    return PythonPostProcessor()


class DetectionComparison:
    """Compares (boxes, labels, scores) of two implementations and counts exact agreement.

    The contract is the same labels in the same order and boxes/scores within 1e-5. In
    practice native and reference agree bit for bit except, rarely, 1 float32 ulp in a box
    coordinate near 0: numpy's SIMD float64 ``exp`` (AVX-512) differs from libm's (used by
    Rust) by 1 ulp for some arguments, which cancellation in ``cx - 0.5*w`` can expose. The
    count is reported at the end of the run (``pytest_terminal_summary``).
    """

    def __init__(self) -> None:
        self.images = 0
        self.bit_identical = 0

    def __call__(self, got, expected, *, atol: float = 1e-5, rtol: float = 1e-6) -> None:
        boxes, labels, scores = got
        ref_boxes, ref_labels, ref_scores = expected
        assert boxes.dtype == np.float32 and scores.dtype == np.float32
        assert labels.dtype == np.int64
        assert boxes.shape == ref_boxes.shape and boxes.shape[1:] == (4,)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(scores, ref_scores, rtol=rtol, atol=atol)
        np.testing.assert_allclose(boxes, ref_boxes, rtol=rtol, atol=atol)
        self.images += 1
        if np.array_equal(boxes, ref_boxes) and np.array_equal(scores, ref_scores):
            self.bit_identical += 1


_COMPARISON = DetectionComparison()


@pytest.fixture(scope="session")
def compare_detections():
    """``compare(got, expected)``: same labels in the same order, boxes and scores within 1e-5."""
    return _COMPARISON


def pytest_terminal_summary(terminalreporter):
    if _COMPARISON.images:
        terminalreporter.write_line(
            f"native vs reference: {_COMPARISON.bit_identical} of {_COMPARISON.images} compared "
            "images bit-identical (boxes and scores); all within 1e-5 with identical labels/order"
        )
