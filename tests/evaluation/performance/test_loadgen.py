"""MLPerf LoadGen harness: real LoadGen, real SUT/QSL over real images, the four scenarios, both
modes, the settings' layering, and AccuracyOnly scored as MLCommons' accuracy-coco.py.

The engines are real onnxruntime sessions; most runs use the small models of ``_models`` so that
LoadGen's scheduling, not a 433-GFLOP network, sets the pace. The runs lower LoadGen's minimums:
they are smoke runs, not MLPerf-compliant results (the CLI says so)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from _models import lookup_heads_model, tiny_heads_model

lg = pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from ssd_resnet34 import engines  # noqa: E402
from ssd_resnet34.cli import main  # noqa: E402
from ssd_resnet34.engines import Engine  # noqa: E402
from ssd_resnet34.evaluation.accuracy.coco_eval import load_ground_truth  # noqa: E402
from ssd_resnet34.evaluation.accuracy.ground_truth import list_images  # noqa: E402
from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth  # noqa: E402
from ssd_resnet34.evaluation.performance.loadgen import (  # noqa: E402
    MODEL_CONF,
    ImageSampleLibrary,
    LoadGenSettings,
    decode_response,
    encode_response,
    run_loadgen,
    score_accuracy_log,
)
from ssd_resnet34.image import preprocess  # noqa: E402
from ssd_resnet34.postprocess import NativePostProcessor  # noqa: E402

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "user.conf")


@pytest.fixture(scope="module")
def coco_images(coco_annotations):
    images = sorted((Path(coco_annotations).parent / "images").glob("*.jpg"))
    assert len(images) == 250
    return images


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


class _Recording(Engine):
    """The tiny model's real onnxruntime engine, recording the batch size of every request."""

    name = "recording"

    def __init__(self, path: Path, *, mode: str = "latency", fail: bool = False) -> None:
        super().__init__()
        self.inner = engines.create(path, mode=mode)
        self.model_path, self.device, self.requests = path, "cpu", self.inner.requests
        self.fail = fail
        self.batches: list[int] = []
        self._record = threading.Lock()

    def _run(self, images):
        with self._record:
            self.batches.append(len(images))
        if self.fail:
            raise ValueError("inference failed on purpose")
        return self.inner.run(images)

    def _release(self) -> None:
        self.inner.close()


def _decode(heads):
    return NativePostProcessor().decode(heads)


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


def test_settings_are_validated(tmp_path):
    with pytest.raises(ValueError, match="scenario"):
        LoadGenSettings("Bogus")
    with pytest.raises(ValueError, match="mode"):
        LoadGenSettings(mode="SubmissionRun")
    with pytest.raises(ValueError, match="min_query_count"):
        LoadGenSettings(min_query_count=0)
    with pytest.raises(ValueError, match="target_qps"):
        LoadGenSettings("Offline", target_qps=float("nan"))
    with pytest.raises(ValueError, match="batch_size"):
        LoadGenSettings(batch_size=0)
    with pytest.raises(ValueError, match="user_conf"):
        LoadGenSettings(user_conf=str(tmp_path / "missing.conf"))


def test_settings_layering(tmp_path):
    user = tmp_path / "user.conf"
    user.write_text("ssd-resnet34.Server.target_qps = 3.5\n")
    text = LoadGenSettings("Server", user_conf=str(user), target_latency_ms=250, min_query_count=7).user_conf_text()
    # MLPerf v2.0's own entries for the model, then the user's file, then the explicit options.
    assert text.index("ssd-resnet34.*.performance_sample_count_override = 64") < text.index("target_qps = 3.5") \
        < text.index("ssd-resnet34.Server.target_latency = 250")
    assert "ssd-resnet34.Server.target_latency = 100" in MODEL_CONF
    assert "ssd-resnet34.MultiStream.target_latency = 528" in MODEL_CONF
    assert "ssd-resnet34.Server.min_query_count = 7" in text
    # LoadGen reads it: the later line wins.
    settings = lg.TestSettings()
    conf = tmp_path / "combined.conf"
    conf.write_text(text)
    assert settings.FromConfig(str(conf), "ssd-resnet34", "Server") == 0
    assert settings.server_target_latency_ns == 250 * 10**6
    assert settings.server_target_qps == pytest.approx(3.5)
    assert settings.performance_sample_count_override == 64
    assert settings.min_query_count == 7


def _short(scenario: str, **kwargs) -> LoadGenSettings:
    return LoadGenSettings(scenario, min_duration_ms=0, **kwargs)


def test_single_stream(coco_images, tiny_path, tmp_path):
    library = ImageSampleLibrary(coco_images[:4], preprocess)
    with _Recording(tiny_path) as engine:
        result = run_loadgen(library, engine, _decode, _short("SingleStream", min_query_count=3), tmp_path)
    assert engine.batches == [1, 1, 1]
    assert result.samples_completed == 3 and result.samples_per_second is None
    assert "90.00" in result.latency_ns
    for name in LOG_FILES:
        assert (tmp_path / name).is_file()
    assert library.loaded_count == 0  # unloaded at the end


def test_multi_stream(coco_images, tiny_path, tmp_path):
    library = ImageSampleLibrary(coco_images[:6], preprocess)
    settings = _short("MultiStream", min_query_count=3, samples_per_query=4, batch_size=2)
    with _Recording(tiny_path, mode="throughput") as engine:
        result = run_loadgen(library, engine, _decode, settings, tmp_path)
    assert result.samples_completed == 12 and sorted(engine.batches) == [2] * 6
    assert "Scenario : MultiStream" in result.summary and "99.00" in result.latency_ns


def test_server_batches_dynamically(coco_images, tiny_path, tmp_path):
    library = ImageSampleLibrary(coco_images[:8], preprocess)
    settings = _short("Server", min_query_count=24, target_qps=200, target_latency_ms=2000, max_batch=3,
                      batch_timeout_ms=20)
    with _Recording(tiny_path, mode="throughput") as engine:
        result = run_loadgen(library, engine, _decode, settings, tmp_path)
    assert result.samples_completed == sum(engine.batches) >= 24
    assert max(engine.batches) <= 3 and max(engine.batches) > 1  # 200 qps: queries wait together
    assert "Scenario : Server" in result.summary and result.completed_samples_per_second > 0


def test_offline_goes_through_the_pipeline(coco_images, tiny_path, tmp_path):
    library = ImageSampleLibrary(coco_images[:5], preprocess)
    settings = _short("Offline", min_query_count=5, target_qps=1, batch_size=2)
    with _Recording(tiny_path, mode="throughput") as engine:
        result = run_loadgen(library, engine, _decode, settings, tmp_path)
    assert sorted(engine.batches) == [1, 2, 2]
    assert result.samples_completed == 5
    assert "Scenario : Offline" in result.summary and result.samples_per_second > 0


@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
def test_sut_errors_are_raised_after_loadgen_finishes(coco_images, tiny_path, tmp_path, scenario):
    library = ImageSampleLibrary(coco_images[:2], preprocess)
    with _Recording(tiny_path, fail=True) as engine:
        with pytest.raises(ValueError, match="on purpose"):
            run_loadgen(library, engine, _decode, _short(scenario, min_query_count=2), tmp_path)


def test_qsl_load_errors_are_raised(tmp_path, tiny_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is no JPEG")
    library = ImageSampleLibrary([bad], preprocess)
    with _Recording(tiny_path) as engine:
        with pytest.raises(ValueError, match="broken.jpg"):
            run_loadgen(library, engine, _decode, _short("SingleStream", min_query_count=1), tmp_path)


# --- AccuracyOnly: the accuracy log scored as accuracy-coco.py, equal to `eval` ---------------


@pytest.fixture(scope="module")
def oracle_model(coco_annotations, tmp_path_factory):
    """The lookup model of the first 5 annotated images: it outputs their ground truth's heads."""
    gt = load_ground_truth(coco_annotations)
    images = list_images(gt, Path(coco_annotations).parent / "images", 5)
    batch, _ = preprocess([str(im.path) for im in images])
    heads = [encode_ground_truth(im.boxes, im.labels, seed=im.image_id) for im in images]
    return lookup_heads_model(tmp_path_factory.mktemp("oracle") / "oracle.onnx", batch, heads)


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server"])
def test_accuracy_only_map_equals_eval(oracle_model, coco_annotations, tmp_path, capsys, scenario):
    images_dir = str(Path(coco_annotations).parent / "images")
    common = ["--model", str(oracle_model), "--no-verify", "--images", images_dir]
    assert main(["eval", *common, "--annotations", str(coco_annotations), "--limit", "5",
                 "--out", str(tmp_path / "eval")]) == 0
    eval_out = capsys.readouterr().out
    assert main(["bench", *common, "--annotations", str(coco_annotations), "--count", "5", "--scenario", scenario,
                 "--mode", "AccuracyOnly", "--target-qps", "50", "--out", str(tmp_path / "logs")]) == 0
    bench_out = capsys.readouterr().out
    eval_map = float(eval_out.split("mAP=")[1].split()[0])
    bench_map = float(bench_out.split("mAP=")[1].split()[0])
    assert eval_map > 0.9  # the lookup model reproduces the ground truth: a meaningful mAP
    assert bench_map == eval_map
    # The 12 summary lines agree too (accuracy-coco.py scales boxes in float32, eval in float64).
    eval_lines = [line for line in eval_out.splitlines() if line.lstrip().startswith("Average")]
    bench_lines = [line for line in bench_out.splitlines() if line.lstrip().startswith("Average")]
    assert len(eval_lines) == len(bench_lines) == 12 and eval_lines == bench_lines
    log = json.loads((tmp_path / "logs" / "mlperf_log_accuracy.json").read_text())
    assert sorted({entry["qsl_idx"] for entry in log}) == list(range(5))


def test_score_accuracy_log_rejects_bad_logs(coco_annotations, tmp_path):
    gt = load_ground_truth(coco_annotations)
    images = list_images(gt, Path(coco_annotations).parent / "images", 2)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match="no sample"):
        score_accuracy_log(empty, gt, images)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 9, "data": ""}]))
    with pytest.raises(ValueError, match="qsl_idx 9 is outside the 2 images"):
        score_accuracy_log(outside, gt, images)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="not LoadGen's accuracy log"):
        score_accuracy_log(tmp_path / "junk.json", gt, images)


# --- the command, each scenario end to end --------------------------------------------------


@pytest.mark.parametrize("scenario, extra", [
    ("MultiStream", ["--samples-per-query", "2"]),
    ("Server", ["--target-qps", "20", "--target-latency-ms", "2000", "--max-batch", "2"]),
])
def test_bench_scenarios_tiny_model(coco_images, tiny_path, tmp_path, capsys, scenario, extra):
    out = tmp_path / "logs"
    code = main(["bench", "--model", str(tiny_path), "--no-verify", "--images", str(coco_images[0].parent),
                 "--count", "4", "--scenario", scenario, *extra, "--short", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"Scenario : {scenario}" in captured.out and "Result is :" in captured.out
    assert "not an MLPerf-compliant result" in captured.err
    assert "ssd-resnet34.*.performance_sample_count_override = 64" in (out / "user.conf").read_text()


def test_bench_single_stream_synthetic(coco_images, native, tmp_path, capsys):
    out = tmp_path / "logs"
    code = main(["bench", "--synthetic", "--images", str(coco_images[0].parent), "--count", "2", "--short", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "MLPerf Results Summary" in printed and "Scenario : SingleStream" in printed
    assert "Result is :" in printed and "90.0th percentile latency (ns)" in printed
    assert "2 samples, 2 images in the QSL" in printed
    if "Result is : INVALID" in printed:
        assert "INVALID because: " in printed  # the reason, from LoadGen's summary
    assert "not an MLPerf-compliant result" in captured.err
    # progress: the samples answered, as plain lines on a stderr that is not a terminal
    assert re.search(r"^bench SingleStream PerformanceOnly \(synthetic\): 2 samples, [0-9.]+ s$", captured.err, re.M)
    assert "\r" not in captured.err
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


def test_bench_usage_errors_are_one_line(tmp_path, capsys, coco_images):
    for argv, message in (
        (["--images", str(tmp_path / "nowhere"), "--short"], "nowhere"),
        (["--images", str(coco_images[0].parent), "--mode", "AccuracyOnly"], "needs --annotations"),
        (["--images", str(coco_images[0].parent), "--user-conf", str(tmp_path / "no.conf")], "no.conf: no such file"),
    ):
        code = main(["bench", "--synthetic", *argv])
        assert code == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and message in err[0]
