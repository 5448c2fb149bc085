"""``ssd_resnet34.Detections``: one image's detections as columns (``decode`` returns them).

The detections checked here are real postprocessor output: COCO ground truth encoded as head
outputs (:func:`ssd_resnet34.evaluation.accuracy.oracle.encode_ground_truth`) and decoded by both
postprocessors. ``to_supervision`` runs against the real supervision library.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _paths import REPO_ROOT as REPO
from ssd_resnet34 import COCO_CLASSES, Detections, PythonPostProcessor
from ssd_resnet34.evaluation.accuracy.ground_truth import load_coco_ground_truth
from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth
from ssd_resnet34.output.coco_results import to_coco_results


@pytest.fixture(scope="module")
def decoded(coco_annotations):
    """(Detections, width, height) of 6 COCO images from the native postprocessor, and the
    reference's for the same heads."""
    from ssd_resnet34 import NativePostProcessor

    images = load_coco_ground_truth(coco_annotations)[:6]
    native, reference = NativePostProcessor(), PythonPostProcessor()
    out = []
    for n, image in enumerate(images):
        heads = encode_ground_truth(image.boxes, image.labels, seed=n)
        got, expected = native.decode(heads)[0], reference.decode(heads)[0]
        out.append((got, expected, image.width, image.height))
    return out


def test_decode_returns_detections_and_both_postprocessors_agree(decoded):
    for got, expected, _, _ in decoded:
        assert type(got) is Detections and type(expected) is Detections
        assert got == expected  # bit-identical, same dtypes and order
        assert got.boxes.dtype == np.float32 and got.labels.dtype == np.int64 and got.scores.dtype == np.float32
        assert len(got) == got.boxes.shape[0] > 0
        Detections(got.boxes, got.labels, got.scores)  # valid under the public constructor's checks


def test_unpacks_as_the_old_tuple(decoded):
    got = decoded[0][0]
    boxes, labels, scores = got
    assert boxes is got.boxes and labels is got.labels and scores is got.scores


def test_to_results_and_to_coco_match_the_pixel_path(decoded):
    for got, _, width, height in decoded:
        results = got.to_results(width, height)
        assert [r.index for r in results] == got.labels.tolist()
        assert [r.label for r in results] == got.class_names == [COCO_CLASSES[k] for k in got.labels]
        assert [r.score for r in results] == got.scores.tolist()
        scale = np.array([width, height, width, height], np.float64)
        assert [list(r.boundingbox) for r in results] == (got.boxes.astype(np.float64) * scale).tolist()
        np.testing.assert_array_equal(got.xyxy(width, height), [list(r.boundingbox) for r in results])
        assert got.to_coco(7, width, height) == to_coco_results(results, 7)  # value for value
        xywh = got.xywh(width, height)
        assert xywh.dtype == np.float64 and [r["bbox"] for r in got.to_coco(7, width, height)] == xywh.tolist()


def test_masks_and_slices(decoded):
    got = decoded[3][0]
    strong = got[got.scores > 0.5]
    assert type(strong) is Detections and len(strong) == int((got.scores > 0.5).sum())
    np.testing.assert_array_equal(strong.labels, got.labels[got.scores > 0.5])
    top = got[:2]
    assert len(top) == 2 and top.scores.tolist() == got.scores[:2].tolist()
    assert len(got[1:2]) == 1 and got[len(got):] == Detections.empty()


@pytest.mark.parametrize("key", [0, -1, np.int64(2), [0, 1], np.array([1, 0])])
def test_integer_indexing_is_refused_naming_the_alternatives(decoded, key):
    with pytest.raises(TypeError, match=r"use d\.boxes, d\.labels, d\.scores .* slice .* boolean mask"):
        decoded[0][0][key]


def test_a_reversing_slice_or_a_wrong_mask_is_refused(decoded):
    got = decoded[0][0]
    with pytest.raises(ValueError, match="positive step"):
        got[::-1]
    with pytest.raises(ValueError, match="boolean mask .* shape"):
        got[np.ones(len(got) + 1, bool)]


def _valid():
    return (np.array([[0.1, 0.2, 0.3, 0.4], [-0.1, 0.5, 1.2, 0.9]], np.float32), np.array([3, 1], np.int64),
            np.array([0.9, 0.4], np.float32))


@pytest.mark.parametrize("change, error, message", [
    (lambda b, l, s: (b.tolist(), l, s), TypeError, r"boxes must be a numpy array of float32"),
    (lambda b, l, s: (b.astype(np.float64), l, s), TypeError, r"boxes must have dtype float32"),
    (lambda b, l, s: (b, l.astype(np.int32), s), TypeError, r"labels must have dtype int64"),
    (lambda b, l, s: (b[:, :3], l, s), ValueError, r"boxes must have shape \(K, 4\)"),
    (lambda b, l, s: (b, l[:1], s), ValueError, r"labels must have shape \(2,\)"),
    (lambda b, l, s: (b, l, s[:, None]), ValueError, r"scores must have shape \(2,\)"),
    (lambda b, l, s: (b * np.float32([1, 1, np.nan, 1]), l, s), ValueError, r"boxes must be finite"),
    (lambda b, l, s: (b[:, [2, 1, 0, 3]], l, s), ValueError, r"left <= right and top <= bottom"),
    (lambda b, l, s: (b, l * 0, s), ValueError, r"labels must be model labels in 1\.\.80"),
    (lambda b, l, s: (b, l + 80, s), ValueError, r"labels must be model labels in 1\.\.80"),
    (lambda b, l, s: (b, l, s + 0.5), ValueError, r"scores must be in \[0, 1\]"),
    (lambda b, l, s: (b, l, s[::-1].copy()), ValueError, r"descending order"),
])
def test_construction_is_validated(change, error, message):
    with pytest.raises(error, match=message):
        Detections(*change(*_valid()))


def test_boxes_are_not_clipped_unless_asked():
    detections = Detections(*_valid())
    assert detections.boxes.min() < 0 and detections.boxes.max() > 1  # as the reference: not clipped
    clipped = detections.clip()
    assert clipped.boxes.min() == 0 and clipped.boxes.max() == 1 and len(clipped) == len(detections)
    np.testing.assert_array_equal(clipped.boxes[0], detections.boxes[0])  # inside: unchanged
    assert clipped.labels is detections.labels and clipped.scores is detections.scores
    np.testing.assert_array_equal(clipped.xyxy(100, 50)[1], np.float32([0, 0.5, 1, 0.9]) * np.float64([100, 50, 100, 50]))


@pytest.mark.parametrize("width, height, error", [(0, 10, ValueError), (10, float("inf"), ValueError),
                                                  ("10", 10, TypeError), (True, 10, TypeError)])
def test_pixel_conversions_check_the_size(width, height, error):
    with pytest.raises(error, match="width|height"):
        Detections(*_valid()).xyxy(width, height)


def test_to_supervision_gives_real_supervision_detections(decoded):
    supervision = pytest.importorskip("supervision", reason="supervision is not installed "
                                      "(pip install 'ssd-resnet34[supervision]')")
    got, _, width, height = decoded[2]
    sv = got.to_supervision(width, height)
    assert isinstance(sv, supervision.Detections) and len(sv) == len(got)
    np.testing.assert_array_equal(sv.xyxy, got.xyxy(width, height))
    np.testing.assert_array_equal(sv.class_id, got.labels)
    np.testing.assert_array_equal(sv.confidence, got.scores)
    assert sv["class_name"].tolist() == got.class_names
    strong = sv[sv.confidence > 0.5]  # supervision's own filtering works on it
    assert len(strong) == len(got[got.scores > 0.5])
    annotated = supervision.BoxAnnotator().annotate(np.zeros((height, width, 3), np.uint8), sv)
    assert annotated.any()  # supervision drew the boxes


def test_to_supervision_without_supervision_names_the_extra():
    """In a fresh interpreter where ``import supervision`` fails."""
    code = ("import sys; sys.modules['supervision'] = None\n"
            "import numpy as np; from ssd_resnet34 import Detections\n"
            "try:\n    Detections.empty().to_supervision(10, 10)\n"
            "except ImportError as error:\n    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "pip install 'ssd-resnet34[supervision]'" in out.stdout


def test_supervision_extra_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'supervision = ["supervision>=' in text
    test_extra = next(line for line in text.splitlines() if line.startswith("test = "))
    assert "supervision>=" in test_extra


def test_detection_agreement_takes_detections(decoded):
    """``evaluation.accuracy.compare.detection_agreement`` on the columns gives what it gives on the
    pixel results of the same detections."""
    from ssd_resnet34.evaluation.accuracy.compare import detection_agreement

    columns = [got for got, _, _, _ in decoded]
    weaker = [got[got.scores < got.scores[0]] for got in columns]  # the top detection dropped
    pixels = [[d.to_results(w, h) for d, (_, _, w, h) in zip(side, decoded)] for side in (columns, weaker)]
    assert detection_agreement(columns, columns) == 1.0
    assert detection_agreement(columns, weaker) == detection_agreement(*pixels) < 1.0
