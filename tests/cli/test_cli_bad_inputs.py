"""Hardening of the commands' inputs and reports (issue 15 items 8, 9, 13), with real files,
processes and signals: a symbolic link loop, a dangling link or a FIFO in a folder is reported and
the run goes on; a closed stdout costs no result; a name with a newline cannot forge a report line;
SIGTERM is graceful; ``--out`` equal to the input folder does not detect on its own drawings."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_resnet34.cli import main

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
COCO_IMAGES = DATA / "coco-val2017-subset" / "images"

needs_data = pytest.mark.skipif(
    not (CAT.is_file() and COCO_IMAGES.is_dir()),
    reason=f"shared test photos not found under {DATA} (../shared/data next to the repository)",
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "ssd_resnet34.cli"]


def _hostile_folder(root: Path, photos) -> Path:
    """``photos`` copied, plus a symbolic link loop (a.jpg <-> b.jpg), a dangling link and a FIFO."""
    folder = root / "photos"
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy(photo, folder / Path(photo).name)
    os.symlink("b.jpg", folder / "a.jpg")
    os.symlink("a.jpg", folder / "b.jpg")
    os.symlink("gone.jpg", folder / "c.jpg")
    os.mkfifo(folder / "f.jpg")
    return folder


def _skipped_lines(folder: Path, prefix: str) -> list:
    return [
        f"{prefix}: {folder / 'a.jpg'}: a symbolic link loop; skipped",
        f"{prefix}: {folder / 'b.jpg'}: a symbolic link loop; skipped",
        f"{prefix}: {folder / 'c.jpg'}: a dangling symbolic link (its target gone.jpg does not exist); skipped",
        f"{prefix}: {folder / 'f.jpg'}: not a regular file (a FIFO); skipped",
    ]


@needs_data
def test_detect_reports_a_loop_a_dangling_link_and_a_fifo_and_goes_on(tmp_path, capsys):
    """Before: ``[Errno 40] Too many levels of symbolic links`` stopped the run before any image."""
    folder = _hostile_folder(tmp_path, [CAT])
    out = tmp_path / "O"
    assert main(["detect", str(folder), "--synthetic", "--no-draw", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == _skipped_lines(folder, "error")  # one line each, nothing else failed
    assert captured.out.startswith(f"{folder / 'cat.jpg'}: ")
    records = json.loads((out / "detections.json").read_text())
    assert records and {r["image_id"] for r in records} == {1}


@needs_data
def test_eval_and_bench_report_them_too(tmp_path, coco_annotations, capsys):
    """eval and bench --oracle (their images named by the annotations) and bench's folder listing."""
    photos = sorted(COCO_IMAGES.glob("*.jpg"))
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, folder / photo.name)
    os.symlink(photos[2].name, folder / photos[2].name)  # a loop at an annotated name
    os.symlink("gone.jpg", folder / photos[3].name)      # a dangling link at another
    os.mkfifo(folder / photos[4].name)                   # a FIFO at a third
    expected = [
        f"warning: {folder / photos[2].name}: a symbolic link loop; skipped",
        f"warning: {folder / photos[3].name}: a dangling symbolic link (its target gone.jpg does not exist); skipped",
        f"warning: {folder / photos[4].name}: not a regular file (a FIFO); skipped",
    ]
    assert main(["eval", "--oracle", "--images", str(folder), "--annotations", str(coco_annotations),
                 "--out", str(tmp_path / "E")]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("warning: ")] == expected
    assert captured.out.startswith("2 images, ")
    assert json.loads((tmp_path / "E" / "coco_eval.json").read_text())["images"] == 2

    pytest.importorskip("mlperf_loadgen")
    assert main(["bench", "--oracle", "--mode", "AccuracyOnly", "--images", str(folder), "--annotations",
                 str(coco_annotations), "--scenario", "Offline", "--short", "--out", str(tmp_path / "B")]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("warning: ")] == expected

    from ssd_resnet34.cli.bench import _image_paths

    hostile = _hostile_folder(tmp_path / "more", [photos[0]])
    assert _image_paths(argparse.Namespace(images=str(hostile), count=None), None) == [str(hostile / photos[0].name)]
    assert capsys.readouterr().err.splitlines() == _skipped_lines(hostile, "warning")


@needs_data
def test_out_equal_to_the_input_folder_skips_the_previous_runs_outputs(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(CAT, folder / "cat.jpg")
    for _ in range(2):
        assert main(["detect", str(folder), "--synthetic", "--out", str(folder)]) == 0
        captured = capsys.readouterr()
        assert captured.out.splitlines()[0].startswith(f"{folder / 'cat.jpg'}: ")
        assert len(captured.out.splitlines()) == 1, captured.out  # not the drawing cat-2.jpg of the run before
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["files"] == ["cat-2.jpg", "detections.json", "image_ids.json"]
    assert manifest["summary"]["images"] == 1


@needs_data
def test_a_closed_stdout_costs_no_result(tmp_path):
    """``detect A B C | head -1``: head leaves after the first line; before, the second line raised
    "Broken pipe" and nothing was written. Unbuffered (as in many containers and CI), so the line
    reaches the pipe when it is written: a block-buffered stdout hits the same error a few
    hundred lines later (or at exit, which then sets exit status 120)."""
    photos = sorted(COCO_IMAGES.glob("*.jpg"))[:3]
    out = tmp_path / "O"
    command = " ".join([*CLI, "detect", *map(str, photos), "--synthetic", "--no-draw", "--threads", "1",
                        "--out", str(out)])
    completed = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], capture_output=True,
                               text=True, env={**ENV, "PYTHONUNBUFFERED": "1"}, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"{photos[0]}: ") and len(completed.stdout.splitlines()) == 1
    assert "Broken pipe" not in completed.stderr and "Traceback" not in completed.stderr
    assert f"wrote {out / 'detections.json'} (" in completed.stderr  # stderr was still open
    records = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in records} == {int(p.stem) for p in photos}


@needs_data
def test_a_newline_in_a_file_name_cannot_forge_a_report_line(tmp_path):
    evil = tmp_path / "cat.jpg\nerror: forged.jpg"
    shutil.copy(CAT, evil)
    completed = subprocess.run([*CLI, "detect", str(evil), str(tmp_path / "gone\n.jpg"), "--synthetic", "--no-draw",
                                "--out", str(tmp_path / "O")], capture_output=True, text=True, env=ENV, timeout=300)
    assert completed.returncode == 1, completed.stderr
    lines = (completed.stdout + completed.stderr).splitlines()
    assert not [line for line in lines if "forged" in line and not line.startswith(repr(str(evil)))]
    assert completed.stdout.splitlines() == [line for line in completed.stdout.splitlines()
                                             if line.startswith(repr(str(evil)) + ": ")]
    assert f"error: {str(tmp_path / 'gone') + chr(10) + '.jpg'!r}: no such file or folder" in completed.stderr
    assert json.loads((tmp_path / "O" / "image_ids.json").read_text()) == {"1": str(evil)}  # JSON escapes it


def _sigterm_after_first_line(argv: list, stream: str) -> tuple:
    """Run the command line, send SIGTERM once it wrote its first line on ``stream``; returns
    ``(returncode, first line, rest of stdout, rest of stderr)``."""
    proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**ENV, "PYTHONUNBUFFERED": "1"}, bufsize=0)  # unbuffered: readline reads no further
    try:
        first = getattr(proc, stream).readline().decode()
        proc.send_signal(signal.SIGTERM)
        out_bytes, err_bytes = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, first, out_bytes, err_bytes


@needs_data
def test_sigterm_during_detect_writes_the_finished_images(tmp_path):
    """As the Ctrl-C test (tests/cli/test_cli_outputs.py), with SIGTERM: exit 143, OUT holds the
    finished images as one set. Before, SIGTERM killed the process and wrote nothing. Eight photos:
    more than the pipeline holds in flight, so some are left when the signal comes."""
    photos = sorted(COCO_IMAGES.glob("*.jpg"))[:8]
    out = tmp_path / "O"
    returncode, first, out_bytes, err_bytes = _sigterm_after_first_line(
        ["detect", *map(str, photos), "--synthetic", "--no-draw", "--out", str(out), "--threads", "1"], "stdout")
    assert first.startswith(str(photos[0])), first
    stderr = err_bytes.decode()
    assert returncode == 143, stderr
    assert "Traceback" not in stderr and "finished before SIGTERM" in stderr
    finished = [line.split(":")[0] for line in (first + out_bytes.decode()).splitlines() if ": " in line]
    assert 1 <= len(finished) < len(photos)
    records = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in records} == {int(Path(p).stem) for p in finished}
    assert json.loads((out / "run.json").read_text())["summary"]["interrupted"] is True
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left


@needs_data
def test_sigterm_during_eval_unwinds_like_ctrl_c(tmp_path, coco_annotations):
    """eval stops at once (a partial mAP would be wrong), cleanly: exit 143, one line, nothing written."""
    out = tmp_path / "E"
    returncode, first, _, err_bytes = _sigterm_after_first_line(
        ["eval", "--synthetic", "--images", str(COCO_IMAGES), "--annotations", str(coco_annotations), "--limit", "3",
         "--threads", "1", "--out", str(out)], "stderr")
    assert first.startswith("warning: --synthetic"), first  # the model is being loaded
    stderr = err_bytes.decode()
    assert returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "terminated (SIGTERM)" and "Traceback" not in stderr
    assert not out.exists() or not list(out.iterdir())
