"""Files this package writes: the cache folder, atomic writes, and stamps that prove a cached
file intact.

The cache holds the official MLPerf model ``resnet34-ssd1200.onnx`` once it is downloaded,
truncated copies of models whose own folder is read-only, the synthetic test models, compiled
engine caches and their stamps. Nothing in it is precious: deleting the folder only costs a
re-download or a rebuild.

A *stamp* is a small JSON file beside (or about) a file: its identity (size, modification and
status-change times in ns, inode and device), sha256 and a caller-chosen key (what it was built
from). :func:`stamp_matches` accepts the file when size and key match and either the whole
identity is unchanged or, after a change, the sha256 still is; so a truncated or overwritten
cache entry is detected and rebuilt (:func:`build_cached`). The ctime cannot be set back by a
user (any write, rename or ``utime`` moves it), so a file rewritten in place with its size and
mtime restored is hashed again.

A stamp is a cache, not a proof: whoever can write the stamp can forge it. Files whose content
must be the one checked are *trusted* (:func:`trust_file`) with the digest taken from bytes this
process read, and opened through :func:`read_trusted`: the bytes are read once, hashed, and those
same bytes are handed to the runtime, so a file swapped after the check is refused, not loaded.

A *derived* file (the heads model cut from a model, its float16 copy, an int8 model calibrated
from it) is bound to its source's content: made from the source with sha256 S by version V, its
own sha256 is recorded in ``cache_dir()/derived/<hash of its path>.json`` (:func:`record_derived`,
apart from the file and any stamp beside it), and every open hashes the file again and compares
(:func:`check_derived`); an intact file is trusted, so the runtime gets the bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import platformdirs

__all__ = [
    "CACHE_ENV_VAR",
    "DerivedFileError",
    "build_cached",
    "cache_dir",
    "check_derived",
    "file_identity",
    "file_sha256",
    "read_checked",
    "read_trusted",
    "record_derived",
    "replacing",
    "stamp_digest",
    "stamp_matches",
    "trust_file",
    "trusted_digest",
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


def file_identity(st: os.stat_result) -> dict:
    """What a stamp compares: size, mtime and ctime in ns, inode and device."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino, "dev": st.st_dev}


def write_stamp(stamp: Path, path: Path, sha256: str, key: str = "", identity: dict | None = None) -> None:
    """Record that ``path``, as it is now (or as ``identity``, :func:`file_identity` of the file
    that was hashed), has this ``sha256`` and was made from ``key``.
    Silently skipped when the stamp cannot be written (a read-only cache only costs a rehash)."""
    try:
        identity = identity or file_identity(path.stat())
        text = json.dumps({**identity, "sha256": sha256, "key": key})
        with replacing(stamp) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    except OSError:
        pass


def hash_with_identity(path: Path, chunk_size: int = 1 << 20) -> tuple[str, dict]:
    """``(sha256, identity)`` of one open file, its identity from ``fstat`` before and after the
    hash (hashed again, up to 3 times, while it changes under the read)."""
    for _ in range(3):
        with open(path, "rb") as f:
            before = file_identity(os.fstat(f.fileno()))
            h = hashlib.sha256()
            while block := f.read(chunk_size):
                h.update(block)
            if file_identity(os.fstat(f.fileno())) == before:
                return h.hexdigest(), before
    raise OSError(f"{path} keeps changing while it is read")


def stamp_digest(stamp: Path, path: Path, key: str = "") -> str | None:
    """The sha256 of ``path``: the one ``stamp`` recorded when the file's identity is unchanged
    and the key is ``key``, else hashed now (and the stamp rewritten). None when the file cannot
    be read."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        recorded, st = None, None
    if (isinstance(recorded, dict) and st is not None and recorded.get("key") == key
            and all(recorded.get(field) == value for field, value in file_identity(st).items())
            and isinstance(recorded.get("sha256"), str)):
        return recorded["sha256"]
    try:
        digest, identity = hash_with_identity(path)
    except OSError:
        return None
    write_stamp(stamp, path, digest, key, identity)
    return digest


def stamp_matches(stamp: Path, path: Path, key: str = "", sha256: str | None = None) -> bool:
    """True when ``path`` is the file ``stamp`` recorded: same key, same size, and either the
    same identity (:func:`file_identity`) or (after a touch or rewrite) the same sha256 on
    rehashing; with ``sha256`` the recorded digest must also equal it. False for a missing file
    or stamp, or any damage."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("key") != key or recorded.get("size") != st.st_size:
        return False
    if sha256 is not None and recorded.get("sha256") != sha256:
        return False
    if all(recorded.get(field) == value for field, value in file_identity(st).items()):
        return True
    try:
        digest, identity = hash_with_identity(path)
    except OSError:
        return False
    if digest != recorded.get("sha256"):
        return False
    write_stamp(stamp, path, digest, key, identity)
    return True


_TRUSTED: dict = {}


def trust_file(path: Path, sha256: str) -> None:
    """Remember (in this process) that ``path`` must hold exactly the bytes whose digest is
    ``sha256`` when :func:`read_trusted` opens it."""
    _TRUSTED[str(Path(path).resolve())] = sha256


def trusted_digest(path: Path) -> str | None:
    """The sha256 :func:`trust_file` recorded for ``path`` in this process, else None."""
    return _TRUSTED.get(str(Path(path).resolve()))


def read_checked(path: Path, sha256: str, error: type = ValueError, hint: str = "") -> bytes:
    """The bytes of ``path``, read once, whose sha256 must be ``sha256`` (the digest it was checked
    or keyed with): parse these, never the path again.

    Raises:
        ``error`` (ValueError by default): the bytes are another file's (replaced or rewritten
            after the check); the message names the file and both digests, then ``hint``.
    """
    data = Path(path).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise error(f"{path} changed after it was checked (sha256 {got}, checked {sha256}): "
                    f"it was replaced or rewritten while in use; refused{hint}")
    return data


def read_trusted(path: Path) -> bytes | None:
    """The bytes of a file :func:`trust_file` named, read once and checked against its digest:
    what the runtime must load (never the path again). None for a file that was not trusted.

    Raises:
        ValueError: the file's bytes are not the ones checked (it was replaced or rewritten
            after the check); the message names the file and both digests.
    """
    expected = trusted_digest(path)
    if expected is None:
        return None
    return read_checked(path, expected, hint=". Run again to rebuild it")


class DerivedFileError(ValueError):
    """A derived file's bytes are not the ones recorded when it was made from its source (it was
    replaced or damaged); the message names the file and both digests."""


def _derived_record(target: Path) -> Path:
    """Where the digest of the derived file ``target`` is kept: in the user's cache, apart from
    the file and its stamp (which may sit beside a model, in a folder others can write)."""
    name = hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "derived" / f"{name}.json"


def record_derived(target: Path, source_sha256: str, version: str, sha256: str) -> None:
    """Record that ``target``, whose bytes hash to ``sha256``, was made from the source with
    ``source_sha256`` by ``version`` (what made it: a format version, tool versions, a key), and
    trust it (:func:`trust_file`). A read-only cache skips the record: the file is then rebuilt or
    refused on the next check, never accepted unchecked."""
    text = json.dumps({"source_sha256": source_sha256, "format": version, "sha256": sha256})
    try:
        with replacing(_derived_record(target)) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    except OSError:
        pass
    trust_file(target, sha256)


def check_derived(target: Path, source_sha256: str, version: str, what: str = "the file") -> bool:
    """Whether ``target`` is the file :func:`record_derived` recorded as made from the source with
    ``source_sha256`` by ``version``: its bytes are hashed now and compared with the record (a
    ``.stamp`` or any other file beside it is never believed). True: intact, and trusted
    (:func:`trust_file`), so :func:`read_trusted` hands the runtime these bytes. False: no such
    record, or no file (build it).

    Raises:
        DerivedFileError: recorded, but the bytes differ: ``"{target} is not {what} made from its
            source (sha256 ..., recorded ...): it was replaced or damaged"``.
    """
    target = Path(target)
    try:
        record = json.loads(_derived_record(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if (not isinstance(record, dict) or record.get("source_sha256") != source_sha256
            or record.get("format") != version or not isinstance(record.get("sha256"), str)):
        return False
    expected = record["sha256"]
    if not target.is_file():
        return False
    try:
        got, _ = hash_with_identity(target)
    except OSError:
        return False
    if got != expected:
        raise DerivedFileError(f"{target} is not {what} made from its source (sha256 {got}, recorded {expected}): "
                               "it was replaced or damaged")
    trust_file(target, expected)
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
