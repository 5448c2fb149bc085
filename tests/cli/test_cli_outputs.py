"""The output folder of ``detect`` and ``eval`` holds one consistent set of files, as the user
expects: a failed run erases nothing, a new run replaces the old set, Ctrl-C leaves the finished
images' detections and drawings together, files get the usual permissions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_resnet34.cli import main
from ssd_resnet34.output.run_folder import MANIFEST, RunFolder

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
COCO_IMAGES = DATA / "coco-val2017-subset" / "images"

needs_data = pytest.mark.skipif(
    not (CAT.is_file() and COCO_IMAGES.is_dir()),
    reason=f"shared test photos not found under {DATA} (../shared/data next to the repository)",
)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _detect(*args: str) -> int:
    return main(["detect", *args, "--synthetic"])


@needs_data
def test_a_run_that_processes_nothing_leaves_the_previous_set_untouched(tmp_path, capsys):
    out = tmp_path / "O"
    assert _detect(str(CAT), "--out", str(out)) == 0
    before = _snapshot(out)
    assert {"cat.jpg", "detections.json", "image_ids.json", MANIFEST} == set(before)

    # The repro: every input fails (a typo), or is not an image.
    assert _detect(str(tmp_path / "typo.jpg"), "--out", str(out)) == 1
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n")
    assert _detect(str(bad), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert f"error: no image could be processed; {out} is left as it was" in err
    assert f"error: no image to process; {out} is left as it was" in err
    assert _snapshot(out) == before  # byte for byte, no staging folder left behind


@needs_data
def test_a_new_run_replaces_the_whole_previous_set(tmp_path):
    out = tmp_path / "O"
    (out).mkdir()
    (out / "mine.txt").write_text("a file of the user's, not of a run\n")
    assert _detect(str(CAT), "--out", str(out)) == 0
    coco = sorted(COCO_IMAGES.glob("*.jpg"))[0]
    assert _detect(str(coco), "--out", str(out)) == 0
    # cat.jpg's drawing and image_ids.json (only needed for non-COCO names) belong to the old run.
    assert sorted(p.name for p in out.iterdir()) == sorted([coco.name, "detections.json", MANIFEST, "mine.txt"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == "detect" and manifest["files"] == [coco.name, "detections.json"]
    assert {r["image_id"] for r in json.loads((out / "detections.json").read_text())} <= {int(coco.stem)}


@needs_data
def test_output_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "O"
        assert _detect(str(CAT), "--out", str(out)) == 0
    finally:
        os.umask(old)
    for name in ("detections.json", "image_ids.json", "cat.jpg", MANIFEST):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_run_folder_discards_on_error(tmp_path):
    out = tmp_path / "O"
    with pytest.raises(RuntimeError):
        with RunFolder(out, "test") as folder:
            folder.write_json("a.json", [1])
            raise RuntimeError("the run failed")
    assert list(out.iterdir()) == []
    with RunFolder(out, "test") as folder:
        with pytest.raises(ValueError, match="plain file names"):
            folder.path("../escape.json")
        with pytest.raises(ValueError, match="plain file names"):
            folder.path(MANIFEST)
        folder.write_json("a.json", [1])
        assert folder.commit() == [out / "a.json"]
    with pytest.raises(NotADirectoryError):
        RunFolder(out / "a.json", "test")


def test_stale_staging_folders_of_dead_runs_are_removed(tmp_path):
    out = tmp_path / "O"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".ssd-resnet34-run-{int(dead.stdout)}-abcd"
    stale.mkdir()
    (stale / "half.json").write_text("{")
    RunFolder(out, "test").discard()
    assert not stale.exists()


@needs_data
def test_ctrl_c_keeps_the_finished_images_as_one_set(tmp_path):
    """SIGINT after the first image: exit 130, and OUT holds exactly the finished images'
    detections and drawings (before the fix, drawings were written and detections dropped)."""
    photos = sorted(COCO_IMAGES.glob("*.jpg"))[:6]
    out = tmp_path / "O"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssd_resnet34.cli", "detect", *map(str, photos), "--synthetic", "--out", str(out),
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0,  # unbuffered: readline reads no further
    )
    try:
        first = proc.stdout.readline().decode()  # "<path>: N detections, ..." once the first image is done
        assert first.startswith(str(photos[0])), first
        proc.send_signal(signal.SIGINT)
        out_bytes, err_bytes = proc.communicate(timeout=120)
        stdout, stderr = out_bytes.decode(), err_bytes.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    finished = [line.split(":")[0] for line in (first + stdout).splitlines() if ": " in line]
    assert 1 <= len(finished) < len(photos)
    records = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in records} <= {int(Path(p).stem) for p in finished}
    drawings = sorted(p.name for p in out.iterdir() if p.suffix == ".jpg")
    assert drawings == sorted(Path(p).name for p in finished)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["summary"]["interrupted"] is True and manifest["summary"]["images"] == len(finished)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left


@needs_data
def test_eval_writes_its_files_as_a_set(tmp_path, coco_annotations):
    out = tmp_path / "E"
    argv = ["eval", "--oracle", "--images", str(COCO_IMAGES), "--annotations", str(coco_annotations),
            "--limit", "2", "--out", str(out)]
    old = os.umask(0o022)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    plots = ["confusion_matrix.csv", "confusion_matrix.png", "per_class_ap.csv", "pr_curves.png"]  # --no-plots: none
    assert sorted(p.name for p in out.iterdir()) == sorted(["coco_eval.json", "coco_results.json", MANIFEST, *plots])
    for name in ("coco_eval.json", "coco_results.json", *plots):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
    before = _snapshot(out)
    assert main([*argv[:3], str(tmp_path / "nowhere"), *argv[4:]]) == 1  # --images missing
    assert _snapshot(out) == before
    shutil.rmtree(out)
