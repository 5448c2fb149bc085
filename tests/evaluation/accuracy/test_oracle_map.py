"""The oracle mAP check: ground truth -> head outputs -> native postprocess -> COCO category ids -> pycocotools.

``ssd-resnet34 eval --oracle`` on the 250-image COCO val2017 subset gave mAP 0.9965 (AP@[.5:.95],
pycocotools, seed 0, native postprocessor) when it was recorded; with near-perfect head outputs
the mAP is limited only by how well the 15,130 default boxes cover the ground-truth boxes. A
drop below the floor means a regression somewhere in the chain (decode, NMS, ordering, label
mapping, pixel scaling, xywh conversion or the evaluation call).
"""

from __future__ import annotations

import json
from pathlib import Path

from ssd_resnet34.cli import main

RECORDED_MAP = 0.9965
MAP_FLOOR = 0.995


def test_oracle_map_on_the_coco_subset(coco_annotations, native, tmp_path, capsys):
    images = Path(coco_annotations).parent / "images"
    out = tmp_path / "oracle"
    code = main(["eval", "--oracle", "--images", str(images), "--annotations", str(coco_annotations), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("250 images, ")
    map_line = printed.strip().splitlines()[-1]
    assert map_line.startswith("mAP=")
    measured = float(map_line.split("=", 1)[1])
    assert measured >= MAP_FLOOR, f"oracle mAP {measured:.4f} fell below {MAP_FLOOR} (recorded {RECORDED_MAP})"
    metrics = json.loads((out / "coco_eval.json").read_text())["metrics"]
    assert abs(metrics["AP"] - measured) < 5e-5
    assert metrics["AP50"] >= 0.997 and metrics["AR100"] >= 0.995
