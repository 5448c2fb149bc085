"""``detect``/``eval`` ``--classes`` and ``--score-threshold``: the postprocess options of
``docs/postprocess.md`` ("Options") from the command line, on the shared COCO photos."""

from __future__ import annotations

import json

import pytest
from _paths import SHARED_DATA
from ssd_resnet34.cli import main

COCO_IMAGES = SHARED_DATA / "coco-val2017-subset" / "images"
needs_data = pytest.mark.skipif(not COCO_IMAGES.is_dir(), reason=f"shared COCO photos not found under {SHARED_DATA}")


@needs_data
def test_eval_oracle_classes(tmp_path, coco_annotations):
    base = ["eval", "--oracle", "--images", str(COCO_IMAGES), "--annotations", str(coco_annotations), "--limit", "3"]
    assert main([*base, "--out", str(tmp_path / "all")]) == 0
    assert main([*base, "--out", str(tmp_path / "some"), "--classes", "person,3", "--score-threshold", "0.1"]) == 0
    every = json.loads((tmp_path / "all" / "coco_results.json").read_text())
    some = json.loads((tmp_path / "some" / "coco_results.json").read_text())
    assert {r["category_id"] for r in some} <= {1, 3} and len(some) > 0
    assert {r["category_id"] for r in every} - {1, 3}
    assert all(r["score"] > 0.1 for r in some)


def test_bad_classes_are_a_clear_error(capsys):
    try:
        code = main(["eval", "--oracle", "--images", "x", "--annotations", "y", "--classes", ","])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert "--classes" in capsys.readouterr().err
