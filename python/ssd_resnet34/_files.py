"""Files this package writes: the cache folder, atomic writes, and stamps that prove a cached
file intact.

The cache holds the official MLPerf model ``resnet34-ssd1200.onnx`` once it is downloaded,
truncated copies of models whose own folder is read-only, the synthetic test models, compiled
engine caches and their stamps. Nothing in it is precious: deleting the folder only costs a
re-download or a rebuild.

A *stamp* is a small JSON file beside (or about) a file: its size, modification time, sha256 and
a caller-chosen key (what it was built from). :func:`stamp_matches` accepts the file when size
and key match and either the mtime is unchanged or, after a change, the sha256 still is; so a
truncated or overwritten cache entry is detected and rebuilt (:func:`build_cached`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import platformdirs

__all__ = [
    "CACHE_ENV_VAR",
    "build_cached",
    "cache_dir",
    "file_sha256",
    "replacing",
    "stamp_matches",
    "write_stamp",
]

#: Environment variable that overrides the cache folder.
CACHE_ENV_VAR = "SSD_RESNET34_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder, created on demand.

    ``$SSD_RESNET34_CACHE_DIR`` when it is set and not empty (``~`` is expanded),
    else ``platformdirs.user_cache_dir("ssd-resnet34")`` (``~/.cache/ssd-resnet34``
    on Linux).

    Raises:
        NotADirectoryError: the path (or a parent) is an existing file; the message names
            the variable to change.
        OSError: the folder cannot be created (e.g. no permission), with the same hint.
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("ssd-resnet34"))
    source = f"${CACHE_ENV_VAR}" if env else "the default cache folder"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"the cache folder {path} ({source}) is a file, not a folder; "
            f"point {CACHE_ENV_VAR} at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise type(error)(
            f"cannot create the cache folder {path} ({source}): {error.strerror or error}; "
            f"point {CACHE_ENV_VAR} at a writable folder") from None
    return path


def _create_exclusive(folder: Path, prefix: str) -> Path:
    """A new empty file in ``folder``, created with mode 0666 & ~umask (as ``open`` does, unlike
    ``tempfile.mkstemp``'s 0600)."""
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}.part"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary file in {folder}")


@contextmanager
def replacing(dest: str | os.PathLike, *, make_parents: bool = True) -> Iterator[Path]:
    """Write a file atomically: yields a temporary path in ``dest``'s folder, renamed to
    ``dest`` when the block succeeds and deleted when it raises, so readers (and concurrent
    writers) never see a partial file. The file gets the permissions a plain ``open`` would
    give (0644 under the usual umask 022). The folder is created when missing, unless
    ``make_parents=False`` (then a missing folder raises ``FileNotFoundError``).
    """
    dest = Path(dest)
    if make_parents:
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_exclusive(dest.parent, f".{dest.name}.")
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def write_stamp(stamp: Path, path: Path, sha256: str, key: str = "") -> None:
    """Record that ``path``, as it is now, has this ``sha256`` and was made from ``key``.
    Silently skipped when the stamp cannot be written (a read-only cache only costs a rehash)."""
    st = path.stat()
    text = json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256, "key": key})
    try:
        with replacing(stamp) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    except OSError:
        pass


def stamp_matches(stamp: Path, path: Path, key: str = "", sha256: Optional[str] = None) -> bool:
    """True when ``path`` is the file ``stamp`` recorded: same key, same size, and either the
    same mtime or (after a touch or rewrite) the same sha256 on rehashing; with ``sha256`` the
    recorded digest must also equal it. False for a missing file or stamp, or any damage."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("key") != key or recorded.get("size") != st.st_size:
        return False
    if sha256 is not None and recorded.get("sha256") != sha256:
        return False
    if recorded.get("mtime_ns") == st.st_mtime_ns:
        return True
    digest = file_sha256(path)
    if digest != recorded.get("sha256"):
        return False
    write_stamp(stamp, path, digest, key)
    return True


def build_cached(path: Path, key: str, build: Callable[[Path], None]) -> Path:
    """``path``, (re)built with ``build(tmp_path)`` unless it is intact and made from ``key``.

    The stamp is ``<path>.stamp`` beside it. A missing, truncated or otherwise damaged file, or
    one made from another key, is rebuilt into a temporary file and renamed into place.
    """
    path = Path(path)
    stamp = path.with_name(path.name + ".stamp")
    if stamp_matches(stamp, path, key):
        return path
    with replacing(path) as tmp:
        build(tmp)
        digest = file_sha256(tmp)
    write_stamp(stamp, path, digest, key)
    return path
