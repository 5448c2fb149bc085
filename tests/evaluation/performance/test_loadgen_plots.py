"""``bench``'s plots: per-query latencies read from LoadGen's trace equal LoadGen's own summary
(real LoadGen, the small real ONNX model of ``_models``), ``latency.png`` is written (and nothing
with ``--no-plots``), and the throughput/p99-against-concurrency plot for serving load runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _models import tiny_heads_model

pytest.importorskip("matplotlib", reason="matplotlib (the plots extra) is not installed")
pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from PIL import Image  # noqa: E402
from ssd_resnet34 import engines  # noqa: E402
from ssd_resnet34.cli import main  # noqa: E402
from ssd_resnet34.evaluation.performance.loadgen import ImageSampleLibrary, LoadGenSettings, run_loadgen  # noqa: E402
from ssd_resnet34.evaluation.performance.loadgen.trace import TRACE_FILE, percentile, read_latencies  # noqa: E402
from ssd_resnet34.evaluation.performance.plots import (  # noqa: E402
    check_concurrency_rows,
    plot_concurrency,
    plot_latency,
    plot_stages,
)
from ssd_resnet34.evaluation.performance.stages import StageTiming  # noqa: E402
from ssd_resnet34.image import preprocess  # noqa: E402
from ssd_resnet34.postprocess import NativePostProcessor  # noqa: E402


@pytest.fixture(scope="module")
def images(coco_annotations) -> list[Path]:
    return sorted((Path(coco_annotations).parent / "images").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("scenario, settings, per_query", [
    ("SingleStream", {"min_query_count": 12}, 1),
    ("MultiStream", {"min_query_count": 8, "samples_per_query": 2}, 2),
    ("Server", {"min_query_count": 12, "target_qps": 40, "target_latency_ms": 2000, "max_batch": 2}, 1),
])
def test_trace_latencies_give_loadgens_percentiles(images, tiny_path, tmp_path, scenario, settings, per_query):
    library = ImageSampleLibrary([str(p) for p in images], preprocess)
    config = LoadGenSettings(scenario=scenario, mode="PerformanceOnly", min_duration_ms=0, **settings)
    with engines.create(tiny_path, mode="latency" if scenario == "SingleStream" else "throughput") as engine:
        result = run_loadgen(library, engine, NativePostProcessor().decode, config, tmp_path, trace=True)
    latencies = read_latencies(tmp_path / TRACE_FILE, scenario)
    assert len(latencies) * per_query == result.samples_completed
    assert list(latencies) == sorted(latencies) and latencies[0] > 0
    assert result.latency_ns, result.summary
    for key, ns in result.latency_ns.items():  # "50.00", "90.00", ... "99.90"
        assert percentile(latencies, float(key) / 100) == ns, key
    assert f"Max latency (ns)                : {latencies[-1]}" in result.summary


def test_an_untraced_run_has_no_latencies(images, tiny_path, tmp_path):
    library = ImageSampleLibrary([str(p) for p in images[:1]], preprocess)
    config = LoadGenSettings(scenario="SingleStream", mode="PerformanceOnly", min_duration_ms=0, min_query_count=1)
    with engines.create(tiny_path) as engine:
        run_loadgen(library, engine, NativePostProcessor().decode, config, tmp_path)
    with pytest.raises(ValueError, match="holds no LoadGen sample events"):
        read_latencies(tmp_path / TRACE_FILE, "SingleStream")
    with pytest.raises(ValueError, match="no latencies"):
        percentile(np.array([]), 0.5)


def test_bench_writes_latency_png_and_no_plots_skips_it(images, tiny_path, tmp_path, capsys):
    out = tmp_path / "logs"
    argv = ["bench", "--model", str(tiny_path), "--no-verify", "--images", str(images[0].parent), "--count", "4",
            "--short", "--min-query-count", "8", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"plot: {out / 'latency.png'}" in printed
    assert _png_size(out / "latency.png") == (1200, 500)
    assert (out / TRACE_FILE).stat().st_size > 0
    assert main([*argv, "--no-plots"]) == 0
    assert "plot:" not in capsys.readouterr().out
    assert not (out / "latency.png").exists()  # the earlier run's picture is gone, none drawn
    assert (out / TRACE_FILE).stat().st_size == 0  # LoadGen's trace stays off, as MLPerf runs it


def test_latency_and_stages_plots_refuse_nothing_to_draw(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plot_latency([], tmp_path / "l.png", marks_ns={})
    with pytest.raises(ValueError, match="no stage was measured"):
        plot_stages([StageTiming("decode", float("nan"), 0, "not measured")], tmp_path / "s.png")
    path = plot_stages([StageTiming("decode", 2.0, 3), StageTiming("tail", float("nan"), 0, "not measured"),
                        StageTiming("whole pipeline, serial", 900.0, 3)], tmp_path / "s.png")
    assert _png_size(path) == (1200, 200 + 40 * 3)


def test_throughput_and_p99_against_concurrency(tmp_path):
    rows = [(8, 8.4, 1150.0), (1, 3.1, 350.0), (2, 5.5, 410), (4, 7.9, 620.5)]
    assert check_concurrency_rows(rows) == [(1, 3.1, 350.0), (2, 5.5, 410.0), (4, 7.9, 620.5), (8, 8.4, 1150.0)]
    path = plot_concurrency(rows, tmp_path / "concurrency.png", title="serve load run")
    assert _png_size(path) == (900, 500)
    assert _png_size(plot_concurrency([(1, 2.0, 100.0)], tmp_path / "one.png")) == (900, 500)
    for bad, message in (
        ([], "rows is empty"),
        ([(1, 2.0)], r"rows\[0\] must be \(concurrency, images/s, p99 ms\)"),
        ([(0, 2.0, 1.0)], r"rows\[0\]: concurrency must be an int >= 1"),
        ([(1.5, 2.0, 1.0)], "concurrency must be an int"),
        ([(1, float("nan"), 1.0)], r"images/s must be a finite number"),
        ([(1, 2.0, -1.0)], r"p99 ms must be a finite number >= 0"),
        ([(1, 2.0, 1.0), (1, 3.0, 2.0)], "each concurrency must appear once"),
    ):
        with pytest.raises(ValueError, match=message):
            plot_concurrency(bad, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
