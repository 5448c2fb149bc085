"""``python/ssd_resnet34/_native.pyi`` against the compiled ``ssd_resnet34._native``: mypy's
stubtest must find no mismatch (names, signatures and defaults, ``__all__``, final classes).
Defaults the bindings cannot render are given to PyO3 as ``text_signature``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from _paths import REPO_ROOT


def test_stub_matches_the_extension(native):
    pytest.importorskip("mypy.stubtest", reason="mypy is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ssd_resnet34._native"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"stubtest found mismatches:\n{result.stdout}\n{result.stderr}"
    assert "Success" in result.stdout
