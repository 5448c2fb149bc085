"""What a newcomer reads (issue 14, item 9): --help is plain text for every command, progress on a
stderr that is not a terminal is periodic plain lines (never tqdm frames), and a missing optional
package names the one extra that installs it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest
from _paths import REPO_ROOT
from ssd_resnet34._extras import EXTRAS, MissingExtraError, install_hint, require
from ssd_resnet34.cli import COMMANDS, build_parser, main, plain_text
from ssd_resnet34.cli._progress import Progress

COCO = REPO_ROOT.parent / "shared" / "data" / "coco-val2017-subset"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_plain_text(command, capsys):
    assert main([command, "--help"] if command else ["--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: ssd-resnet34" in text
    assert "``" not in text and "`" not in text and ":func:" not in text and ":mod:" not in text, text


def test_every_command_is_in_the_parser():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(COMMANDS) <= set(choices)


def test_plain_text_strips_rst_markup():
    assert plain_text("writes ``OUT/run.json`` (:func:`~a.b.c`, `quantize`)") == "writes OUT/run.json (a.b.c, quantize)"


def test_progress_on_a_pipe_is_periodic_plain_lines():
    stream = io.StringIO()  # not a terminal
    with Progress(4, "eval (oracle)", stream=stream, interval=0) as bar:
        for _ in range(4):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert [line.split(", ")[0] for line in lines] == [f"eval (oracle): {n}/4 images ({25 * n}%)" for n in range(1, 5)]
    assert "\r" not in stream.getvalue()
    stream = io.StringIO()
    with Progress(None, "bench", "samples", stream=stream, interval=3600) as bar:
        bar.update(5)
        time.sleep(0.01)
        bar.update(2)
    assert re.fullmatch(r"bench: 7 samples, [0-9.]+ s\n", stream.getvalue())  # only the last line


@pytest.mark.skipif(not COCO.is_dir(), reason=f"shared COCO photos not found at {COCO} (../shared absent)")
def test_eval_with_stderr_piped_prints_lines_not_bar_frames(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "ssd_resnet34.cli", "eval", "--oracle", "--images", str(COCO / "images"),
         "--annotations", str(COCO / "instances_val2017_subset.json"), "--limit", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "\x1b[" not in run.stderr
    assert re.search(r"^eval \(oracle\): 3/3 images \(100%\), [0-9.]+ s$", run.stderr, re.M), run.stderr


def test_a_missing_extra_names_the_extra():
    with pytest.raises(MissingExtraError) as info:
        require("ssd_resnet34_no_such_module", "eval", "MLPerf LoadGen", package="mlcommons-loadgen")
    assert str(info.value) == ("MLPerf LoadGen needs mlcommons-loadgen, which is not installed: "
                               "pip install 'ssd-resnet34[eval]'")
    assert isinstance(info.value, ImportError)
    assert set(EXTRAS) == {"eval", "int8", "plots", "ray", "video", "track", "serve"}
    with pytest.raises(ValueError, match="unknown extra"):
        install_hint("gpu")


def test_the_extras_exist_and_readme_names_them_where_the_commands_appear():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for extra in EXTRAS:
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
    readme = (REPO_ROOT / "README.md").read_text()
    for command, extra in (("eval", "eval"), ("bench", "eval"), ("quantize", "int8"), ("serve", "serve")):
        section = readme[readme.index(f"- **`{command}`**"):]
        section = section[: section.index("\n- **") if "\n- **" in section else len(section)]
        assert f"pip install 'ssd-resnet34[{extra}]'" in section, command
