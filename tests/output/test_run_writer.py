"""The one run writer (output/run_writer.py) and the one Parquet table (output/parquet.py):
formats are hooks, a new one is written beside the others as one set, and nothing is written
without a commit."""

from __future__ import annotations

import json

import pytest

from ssd_resnet34.output.run_writer import CocoResults, OutputFormat, RunWriter, detection_formats

RECORD = {"category_id": 18, "bbox": [1.0, 2.0, 30.0, 40.0], "score": 0.9}


class JsonLines(OutputFormat):
    """What a video writer would be: a line per frame as it finishes, one file closed at the end."""

    def __init__(self):
        self.handle = None

    def add(self, run, image):
        if self.handle is None:
            self.handle = open(run.path("detections.jsonl"), "w", encoding="utf-8")
        self.handle.write(json.dumps({"path": image.path, "records": image.records, "error": image.error}) + "\n")
        return []

    def finish(self, run, images, image_ids):
        self.handle.close()
        return ["detections.jsonl"]


def _add_three(writer):
    writer.add("000000000009.jpg", width=640, height=480, records=[RECORD])
    writer.add("broken.jpg", error="broken.jpg: not an image")
    writer.add("cat.jpg", width=100, height=80, records=[RECORD, RECORD])


def test_a_new_format_is_written_with_the_others_as_one_set(tmp_path):
    out = tmp_path / "O"
    with RunWriter(out, "detect", [CocoResults(), JsonLines()]) as writer:
        _add_three(writer)
        assert writer.processed == 2 and writer.num_detections == 3
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []  # staged only
        files = writer.commit({"images": 2})
    # in the order the files were first written (the lines file with the first image), run.json last
    assert [p.name for p in files] == ["detections.jsonl", "detections.json", "image_ids.json", "run.json"]
    assert writer.describe() == (f"{out / 'detections.json'} (3 detections, 2 images), {out / 'image_ids.json'}, "
                                 f"{out / 'detections.jsonl'}, {out / 'run.json'}")
    records = json.loads((out / "detections.json").read_text())
    assert [r["image_id"] for r in records] == [9, 1, 1]  # COCO names keep their id, the others count from 1
    assert list(records[0]) == ["image_id", "category_id", "bbox", "score"]
    assert json.loads((out / "image_ids.json").read_text()) == {"9": "000000000009.jpg", "1": "cat.jpg"}
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [line["path"] for line in lines] == ["000000000009.jpg", "broken.jpg", "cat.jpg"]
    assert json.loads((out / "run.json").read_text())["files"] == ["detections.jsonl", "detections.json",
                                                                  "image_ids.json"]


def test_without_a_commit_the_folder_is_left_as_it_was(tmp_path):
    out = tmp_path / "O"
    with RunWriter(out, "detect", detection_formats([], out, drawings=False, table=False)) as writer:
        writer.add("000000000009.jpg", width=640, height=480, records=[RECORD])
        writer.commit()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError):
        with RunWriter(out, "detect", [CocoResults(), JsonLines()]) as writer:
            _add_three(writer)
            raise RuntimeError("the run failed")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_drawing_that_cannot_be_made_is_a_problem_of_that_image_only(tmp_path):
    out = tmp_path / "O"
    with RunWriter(out, "detect", detection_formats(["cat.jpg"], out, drawings=True, table=False)) as writer:
        problems = writer.add("cat.jpg", width=100, height=80, records=[RECORD])  # no decoded image given
        assert problems == ["cat.jpg: no decoded image to draw on (the run did not keep the images)"]
        writer.commit()
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "image_ids.json", "run.json"]


def test_one_parquet_schema_for_the_run_folder_and_the_ray_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from ssd_resnet34.distributed.worker import result_schema
    from ssd_resnet34.output import parquet

    assert result_schema() == parquet.schema()
    out = tmp_path / "O"
    with RunWriter(out, "detect", detection_formats([], out, drawings=False, table=True)) as writer:
        _add_three(writer)
        writer.commit()
    table = pq.read_table(out / "detections.parquet")
    assert table.schema == parquet.schema() and table.column_names == list(parquet.COLUMNS)
    rows = table.to_pylist()
    assert [(r["path"], r["image_id"], r["error"]) for r in rows] == [
        ("000000000009.jpg", 9, None), ("broken.jpg", None, "broken.jpg: not an image"), ("cat.jpg", 1, None)]
    # Each row's records are its records of detections.json, key for key.
    flat = [record for row in rows for record in row["detections"]]
    assert flat == json.loads((out / "detections.json").read_text())
