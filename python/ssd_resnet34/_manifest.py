"""``run.json``: the file of an output folder that lists the files a run wrote there.

One source for its name and for reading its list: :mod:`ssd_resnet34.output.run_folder` writes
it; :mod:`ssd_resnet34.image.listing` skips the files it lists when the output folder is also an
input folder (a second ``detect`` there must not detect on the first one's drawings).
"""

from __future__ import annotations

import json
import os
from typing import List

__all__ = ["MANIFEST", "recorded_files"]

#: The file that lists the current set of output files (relative names).
MANIFEST = "run.json"


def recorded_files(folder: "str | os.PathLike[str]") -> List[str]:
    """The plain file names ``folder/run.json`` lists (empty when there is none, or it cannot be
    read or parsed); never ``run.json`` itself nor a name with a folder part."""
    try:
        with open(os.path.join(os.fspath(folder), MANIFEST), encoding="utf-8") as handle:
            recorded = json.load(handle)
        files = recorded.get("files", []) if isinstance(recorded, dict) else []
    except (OSError, ValueError):
        return []
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, str) and f and os.path.basename(f) == f and f != MANIFEST]
