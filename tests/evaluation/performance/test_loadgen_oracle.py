"""``bench --oracle``: the LoadGen accuracy path (QSL, SUT, response encoding, accuracy-coco.py
scoring) checked with a meaningful mAP. Its samples are the oracle's head outputs of each image,
as ``eval --oracle`` decodes them, so both commands must give exactly the same mAP (and the same
12 summary lines) on the shared COCO photos, and that mAP is far from the synthetic model's 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlperf_loadgen")

from ssd_resnet34.cli import main  # noqa: E402


def _summary(printed: str) -> tuple[float, list[str]]:
    lines = [line for line in printed.splitlines() if line.lstrip().startswith("Average")]
    return float(printed.split("mAP=")[1].split()[0]), lines


@pytest.mark.parametrize("scenario, count", [("Offline", None), ("Server", "20")])
def test_bench_accuracy_only_oracle_equals_eval_oracle(coco_annotations, native, tmp_path, capsys, scenario, count):
    images = str(Path(coco_annotations).parent / "images")
    limit = ["--limit", count] if count else []
    assert main(["eval", "--oracle", "--images", images, "--annotations", str(coco_annotations), *limit,
                 "--out", str(tmp_path / "eval")]) == 0
    eval_map, eval_lines = _summary(capsys.readouterr().out)
    extra = ["--count", count, "--target-qps", "200"] if count else []
    assert main(["bench", "--oracle", "--mode", "AccuracyOnly", "--scenario", scenario, "--images", images,
                 "--annotations", str(coco_annotations), *extra, "--out", str(tmp_path / "logs")]) == 0
    printed = capsys.readouterr().out
    bench_map, bench_lines = _summary(printed)
    assert eval_map > 0.95  # a meaningful mAP, not the synthetic model's 0.0000
    assert bench_map == eval_map
    assert len(bench_lines) == 12 and bench_lines == eval_lines
    total = int(count) if count else 250
    assert f"{total} images in the QSL" in printed
    log = json.loads((tmp_path / "logs" / "mlperf_log_accuracy.json").read_text())
    assert sorted({entry["qsl_idx"] for entry in log}) == list(range(total))


def test_bench_oracle_is_refused_outside_accuracy_only_and_with_a_model(coco_annotations, tmp_path, capsys):
    images = str(Path(coco_annotations).parent / "images")
    common = ["bench", "--oracle", "--images", images, "--annotations", str(coco_annotations), "--out", str(tmp_path)]
    assert main(common) == 1
    assert "use it with --mode AccuracyOnly" in capsys.readouterr().err
    assert main([*common, "--mode", "AccuracyOnly", "--synthetic"]) == 1
    assert "--oracle replaces the model" in capsys.readouterr().err
