"""Paths the tests share: the repository, its benches/ folder and the shared COCO data beside it."""

from __future__ import annotations

from pathlib import Path

#: The repository root (this file is tests/_paths.py).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The benchmark helpers (``benches/_common.py``), imported by some tests.
BENCHES = REPO_ROOT / "benches"
#: ``../shared/data`` next to the repository: COCO val2017 photos and ground truth, ``images/cat.jpg``.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
