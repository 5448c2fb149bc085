"""Where this package keeps downloaded and generated files (the model cache).

The cache holds the official MLPerf model ``resnet34-ssd1200.onnx`` once it is
downloaded, truncated copies of models whose own folder is read-only, the
synthetic test models and checksum stamps. Nothing in it is precious: deleting
the folder only costs a re-download or a rebuild.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

__all__ = ["CACHE_ENV_VAR", "cache_dir", "replacing"]

#: Environment variable that overrides the cache folder.
CACHE_ENV_VAR = "SSD_RESNET34_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder, created on demand.

    ``$SSD_RESNET34_CACHE_DIR`` when it is set and not empty (``~`` is expanded),
    else ``platformdirs.user_cache_dir("ssd-resnet34")`` (``~/.cache/ssd-resnet34``
    on Linux).

    Raises:
        OSError: the folder does not exist and cannot be created (or the path
            names an existing file).
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("ssd-resnet34"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def replacing(dest: str | os.PathLike, *, make_parents: bool = True) -> Iterator[Path]:
    """Write a file atomically: yields a temporary path in ``dest``'s folder, renamed to
    ``dest`` when the block succeeds and deleted when it raises, so readers (and concurrent
    writers) never see a partial file. The folder is created when missing, unless
    ``make_parents=False`` (then a missing folder raises ``FileNotFoundError``).
    """
    dest = Path(dest)
    if make_parents:
        dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
