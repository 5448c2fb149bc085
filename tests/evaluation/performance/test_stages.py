"""Per-stage timings: the table is produced, every stage is measured (tiny runs; speed is not asserted)."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from ssd_resnet34.cli import main
from ssd_resnet34.evaluation.performance.stages import (
    StageTiming,
    extract_tail,
    format_table,
    time_calls,
)

STAGES = (  # regular expressions, in order
    r"decode \(cv2\.imdecode\)",
    r"preprocess \(fast path\)",
    r"inference \(\w+, \w+, \w+, latency, 12 heads\)",  # engine, device, precision
    r"postprocess, native \(Rust\)",
    r"postprocess, native \(Rust\), random heads",
    r"postprocess, Python reference",
    r"postprocess, Python reference, random heads",
    r"in-graph decode \+ NMS \(onnxruntime\)",
    r"whole pipeline, serial \(iter_detect depth=0, latency engine\)",
    r"whole pipeline, pipelined \(iter_detect, throughput engine\)",
    r"bare engine, throughput mode \(preprocessed images\)",
)


def test_time_calls_and_table_format():
    calls = []
    times = time_calls(lambda: calls.append(1), 4)
    assert len(times) == 4 and len(calls) == 4 and all(t >= 0 for t in times)
    table = format_table(
        [StageTiming("a", 1.234, 3, "note a"), StageTiming("b", float("nan"), 0, "not measured: why")],
        title="T",
        machine="nproc=2, test CPU",
    )
    assert table.splitlines() == [
        "T",
        "Machine: nproc=2, test CPU",
        "",
        "| stage | median ms / image | timed calls | notes |",
        "|---|---:|---:|---|",
        "| a | 1.23 | 3 | note a |",
        "| b | n/a | 0 | not measured: why |",
    ]


def test_extract_tail_runs_the_in_graph_postprocess(native):
    import onnxruntime as ort
    from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth
    from ssd_resnet34.model.synthetic import synthetic_model_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = synthetic_model_path(0, full_graph=True)
    tail = extract_tail(full)
    assert len(tail.graph.input) == 12 and [o.name for o in tail.graph.output] == ["bboxes", "labels", "scores"]
    assert not any(n.op_type == "Conv" for n in tail.graph.node)  # only the decode + NMS
    sess = ort.InferenceSession(tail.SerializeToString(), providers=["CPUExecutionProvider"])
    box = np.array([[0.2, 0.3, 0.6, 0.9]], np.float32)
    heads = encode_ground_truth(box, np.array([18]), seed=0)
    bboxes, labels, scores = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], heads)))
    # the tail decodes the oracle's heads to the ground truth as its best detection
    assert labels[0, 0] == 18 and scores[0, 0] > 0.9
    np.testing.assert_allclose(bboxes[0, 0], box[0], atol=1e-5)
    with pytest.raises(ValueError, match="12-head model"):
        extract_tail(synthetic_model_path(0))


def test_bench_stages_prints_the_table(coco_annotations, native, capsys, tmp_path):
    images = Path(coco_annotations).parent / "images"
    code = main(["bench", "--stages", "--synthetic", "--images", str(images), "--count", "1", "--runs", "1",
                 "--out", str(tmp_path)])
    assert code == 0
    captured = capsys.readouterr()
    # progress on a stderr that is not a terminal: plain lines, no bar frames
    assert "\r" not in captured.err
    assert re.search(r"^bench --stages: whole pipeline: 7/7 stages \(100%\), [0-9.]+ s$", captured.err, re.M), captured.err
    lines = captured.out.splitlines()
    assert lines[0].startswith("Per-stage time per image: median over 1 run(s) x 1 image(s)")
    assert lines[1].startswith("Machine: nproc=")
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| stage")]
    assert len(rows) == len(STAGES)
    for row, pattern in zip(rows, STAGES):
        assert re.fullmatch(pattern, row[0].lstrip("| ")), (row[0], pattern)
    for stage, median, calls, note in rows:
        assert math.isfinite(float(median)) and float(median) > 0, (stage, note)
        assert int(calls) >= 1
    assert lines[-1] == f"plot: {tmp_path / 'stages.png'}"  # the same rows as a picture (--no-plots: none)
    from PIL import Image

    with Image.open(tmp_path / "stages.png") as image:
        assert image.format == "PNG" and image.size == (1200, 200 + 40 * len(STAGES))


def test_bench_stages_leaves_its_arguments_as_parsed(coco_annotations, native, capsys):
    """With --model (not --synthetic), bench --stages once set args.python_postprocess = True."""
    import copy

    from ssd_resnet34.cli import build_parser
    from ssd_resnet34.model.synthetic import synthetic_model_path

    images = Path(coco_annotations).parent / "images"
    args = build_parser().parse_args(["bench", "--stages", "--model", str(synthetic_model_path(0, full_graph=True)),
                                      "--no-verify", "--images", str(images), "--count", "1", "--runs", "1",
                                      "--no-plots"])
    parsed = copy.deepcopy(vars(args))
    assert args.func(args) == 0
    assert vars(args) == parsed
    assert "| postprocess, native (Rust) |" in capsys.readouterr().out
