"""MLPerf LoadGen harness: real LoadGen, real SUT/QSL over real images, SingleStream and Offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

lg = pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from ssd_resnet34.cli import main  # noqa: E402
from ssd_resnet34.evaluation.loadgen import (  # noqa: E402
    ImageSampleLibrary,
    LoadGenSettings,
    decode_response,
    encode_response,
    run_loadgen,
)
from ssd_resnet34.evaluation.oracle import random_head_outputs  # noqa: E402
from ssd_resnet34.image import preprocess  # noqa: E402

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")


@pytest.fixture(scope="module")
def coco_images(coco_annotations):
    images = sorted((Path(coco_annotations).parent / "images").glob("*.jpg"))
    assert len(images) == 250
    return images


def test_response_encoding_round_trip():
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], np.float32)
    labels = np.array([1, 80], np.int64)
    scores = np.array([0.9, 0.06], np.float32)
    encoded = encode_response(7, (boxes, labels, scores))
    assert encoded.shape == (2, 7) and encoded.dtype == np.float32
    # MLCommons' PostProcessCocoPt layout: [index, top, left, bottom, right, score, label]
    np.testing.assert_array_equal(encoded[0], np.float32([7, 0.2, 0.1, 0.4, 0.3, 0.9, 1]))
    np.testing.assert_array_equal(decode_response(encoded.tobytes()), encoded)
    assert encode_response(0, (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))).shape == (0, 7)
    with pytest.raises(ValueError):
        encode_response(0, (boxes, labels[:1], scores))
    with pytest.raises(ValueError):
        decode_response(b"\0" * 27)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="scenario"):
        LoadGenSettings("Server")
    with pytest.raises(ValueError, match="min_query_count"):
        LoadGenSettings(min_query_count=0)
    with pytest.raises(ValueError, match="offline_expected_qps"):
        LoadGenSettings("Offline", offline_expected_qps=float("nan"))
    with pytest.raises(ValueError, match="batch_size"):
        LoadGenSettings(batch_size=0)


class _RandomHeadsSUT:
    """Real native postprocess of random head outputs, one per image in the batch (no model)."""

    def __init__(self, native_pp):
        self.pp = native_pp
        self.batches: list[int] = []

    def __call__(self, batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 1200, 1200)
        self.batches.append(len(batch))
        return self.pp.decode(random_head_outputs(len(batch), seed=len(self.batches)))


def test_single_stream_run(coco_images, native_pp, tmp_path):
    library = ImageSampleLibrary(coco_images[:4], preprocess)
    sut = _RandomHeadsSUT(native_pp)
    result = run_loadgen(library, sut, LoadGenSettings("SingleStream", min_duration_ms=0, min_query_count=3), tmp_path)
    assert sut.batches == [1, 1, 1]
    assert result.samples_completed == 3
    for name in LOG_FILES:
        assert (tmp_path / name).is_file()
    assert "Scenario : SingleStream" in result.summary
    assert "Result is :" in result.summary
    assert "90.0th percentile latency (ns)" in result.summary
    assert set(result.latency_ns) >= {"50.00", "90.00", "99.00"} and result.latency_ns["50.00"] > 0
    assert result.samples_per_second is None
    assert library.loaded_count == 0  # unloaded at the end


def test_offline_run_batches_the_query(coco_images, native_pp, tmp_path):
    library = ImageSampleLibrary(coco_images[:5], preprocess)
    sut = _RandomHeadsSUT(native_pp)
    settings = LoadGenSettings("Offline", min_duration_ms=0, min_query_count=5, offline_expected_qps=1, batch_size=2)
    result = run_loadgen(library, sut, settings, tmp_path)
    assert sut.batches == [2, 2, 1]
    assert result.samples_completed == 5
    assert "Scenario : Offline" in result.summary and "Result is :" in result.summary
    assert result.samples_per_second is not None and result.samples_per_second > 0


def test_sut_errors_are_raised_after_loadgen_finishes(coco_images, tmp_path):
    def broken(batch):
        raise ValueError("inference failed on purpose")

    library = ImageSampleLibrary(coco_images[:2], preprocess)
    with pytest.raises(ValueError, match="on purpose"):
        run_loadgen(library, broken, LoadGenSettings(min_duration_ms=0, min_query_count=2), tmp_path)


def test_qsl_load_errors_are_raised(tmp_path, native_pp):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is no JPEG")
    library = ImageSampleLibrary([bad], preprocess)
    with pytest.raises(ValueError, match="broken.jpg"):
        run_loadgen(library, _RandomHeadsSUT(native_pp), LoadGenSettings(min_duration_ms=0, min_query_count=1), tmp_path)


# --- the command with the synthetic model (seconds per inference on a small CPU) ------------


def test_bench_single_stream_synthetic(coco_images, native, tmp_path, capsys):
    out = tmp_path / "logs"
    code = main(["bench", "--synthetic", "--images", str(coco_images[0].parent), "--count", "2", "--short", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "MLPerf Results Summary" in printed and "Scenario : SingleStream" in printed
    assert "Result is :" in printed and "90.0th percentile latency (ns)" in printed
    assert "2 samples, 2 images in the QSL" in printed
    for name in LOG_FILES:
        assert (out / name).is_file()


def test_bench_offline_synthetic(coco_images, native, tmp_path, capsys):
    out = tmp_path / "logs"
    code = main(
        ["bench", "--scenario", "Offline", "--synthetic", "--images", str(coco_images[0].parent), "--count", "1",
         "--short", "--min-query-count", "1", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Scenario : Offline" in printed and "Samples per second:" in printed and "Result is :" in printed
    assert (out / "mlperf_log_summary.txt").read_text().count("Samples per second") == 1


def test_bench_without_images_is_one_error_line(tmp_path, capsys):
    code = main(["bench", "--synthetic", "--images", str(tmp_path / "nowhere"), "--short"])
    assert code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "nowhere" in err[0]
