"""Every LoadGen setting is checked before LoadGen sees it (issue 15, item 3): from the options and
from a --user-conf file, a bad number is one error line, never LoadGen aborting the process
(SIGABRT) or exhausting memory. The command runs in its own process so that an abort shows as
its exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _models import tiny_heads_model

pytest.importorskip("mlperf_loadgen")

from ssd_resnet34.evaluation.performance.loadgen import MAX_SAMPLES, LoadGenSettings  # noqa: E402
from ssd_resnet34.evaluation.performance.loadgen.settings import (  # noqa: E402
    check_test_settings,
    check_user_conf,
)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def one_image(tmp_path_factory, coco_annotations) -> Path:
    folder = tmp_path_factory.mktemp("one")
    source = sorted((Path(coco_annotations).parent / "images").glob("*.jpg"))[0]
    (folder / source.name).write_bytes(source.read_bytes())
    return folder


def _bench(tiny_path: Path, images: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ssd_resnet34.cli", "bench", "--model", str(tiny_path), "--no-verify",
            "--engine", "onnxruntime", "--images", str(images), "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "internal error" not in errors[0], run.stderr
    return errors[0]


def test_a_huge_target_qps_is_refused_before_loadgen_runs(tiny_path, one_image, tmp_path):
    run = _bench(tiny_path, one_image, tmp_path / "logs", "--scenario", "Offline", "--target-qps", "1e12")
    line = _one_error_line(run)
    assert "target_qps 1e+12" in line and f"{MAX_SAMPLES:,}" in line and "--target-qps" in line
    assert not (tmp_path / "logs" / "mlperf_log_summary.txt").exists()


def test_a_negative_count_in_a_user_conf_is_refused(tiny_path, one_image, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# lowered\n*.*.min_query_count = -5\n")
    line = _one_error_line(_bench(tiny_path, one_image, tmp_path / "logs", "--user-conf", str(conf)))
    assert f"{conf}, line 2" in line and "min_query_count = -5" in line and "non-negative" in line


def test_a_line_loadgen_cannot_read_is_named(tiny_path, one_image, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("ssd-resnet34.Offline.target_qps = 5\nthis is not a setting\n")
    line = _one_error_line(_bench(tiny_path, one_image, tmp_path / "logs", "--user-conf", str(conf)))
    assert f"{conf}, line 2" in line and "model.scenario.key = value" in line
    assert "see its log" not in line


def test_check_user_conf_accepts_loadgens_own_syntax():
    check_user_conf("# comment\n\n*.Server.target_qps = 2.5  # inline\nssd-resnet34.*.min_duration = 60000\n"
                    "*.Offline.target_qps = 1e3\n*.SingleStream.target_latency = 0.5\n"
                    "*.Server.target_latency_percentile = 99.5\n", "user.conf")
    with pytest.raises(ValueError, match="LoadGen would read it as 1"):  # silently, with no error of its own
        check_user_conf("*.Offline.min_query_count = 1e3", "user.conf")
    for bad in ("*.Offline.target_qps = -1", "*.Offline.target_qps = nan", "*.Offline.target_qps = abc",
                "target_qps = 5", "*.Offline.target_qps 5", "*.Offline.min_query_count = 1e3",
                "*.Offline.min_duration = 1.5"):
        with pytest.raises(ValueError, match="user.conf, line 1"):
            check_user_conf(bad, "user.conf")


def test_settings_read_back_from_loadgen_are_bounded(tmp_path):
    import mlperf_loadgen as lg

    def read(text: str, scenario: str):
        conf = tmp_path / "u.conf"
        conf.write_text(text)
        test = lg.TestSettings()
        assert test.FromConfig(str(conf), "ssd-resnet34", scenario) == 0
        return test

    ok = read("ssd-resnet34.Offline.target_qps = 5\n", "Offline")
    check_test_settings(ok, "Offline", "u.conf")  # 5/s x 600 s x 1.1 = 3,300 samples
    wrapped = read("", "Offline")
    wrapped.min_query_count = 2**64 - 5  # what LoadGen makes of "-5"
    with pytest.raises(ValueError, match="min_query_count is 18446744073709551611"):
        check_test_settings(wrapped, "Offline", "u.conf")
    fast = read("*.SingleStream.target_latency = 0.000001\n", "SingleStream")
    with pytest.raises(ValueError, match="would have LoadGen schedule"):
        check_test_settings(fast, "SingleStream", "u.conf")
    wide = read("*.MultiStream.samples_per_query = 100000\n*.MultiStream.min_query_count = 1000\n", "MultiStream")
    with pytest.raises(ValueError, match="samples_per_query 100000"):
        check_test_settings(wide, "MultiStream", "u.conf")


def test_a_bad_user_conf_is_refused_when_the_settings_are_made(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("*.*.performance_sample_count_override = -1\n")
    with pytest.raises(ValueError, match="line 1"):
        LoadGenSettings(user_conf=str(conf))
