"""Find, verify and download the official MLPerf SSD-ResNet34 model, ``resnet34-ssd1200.onnx``.

The model is the one MLCommons' inference benchmark lists for ``ssd-resnet34`` (ONNX,
from PyTorch, 1200x1200, COCO; ``vision/classification_and_detection/README.md`` in
mlcommons/inference), published on Zenodo (record 3228411). Its input is ``image``
(N, 3, 1200, 1200) float32; its outputs ``bboxes``, ``labels``, ``scores`` come from an
in-graph decode + NMS, which :mod:`ssd_resnet34.model.truncate` cuts off.

Digests are remembered so the 80 MB file is not rehashed on every load: a stamp
``cache_dir()/verified/<hash of the file's absolute path>.json`` holds the sha256 and the
identity of the file that was hashed (size, mtime and ctime in ns, inode, device;
:mod:`ssd_resnet34._files`); a file whose identity changed since is hashed again, so a file
rewritten in place with its size and mtime restored (its ctime moved) is caught.
:func:`file_digest` is that remembered sha256: what the files derived from a model are keyed by
(:mod:`ssd_resnet34.model.truncate`). A cached copy that fails the check is downloaded again.
"""
from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .._files import (
    cache_dir,
    file_sha256,
    replacing,
    stamp_digest,
    trusted_digest,
    write_stamp,
)

__all__ = [
    "MODEL_ENV_VAR",
    "OFFICIAL_FILENAME",
    "OFFICIAL_SHA256",
    "OFFICIAL_SIZE",
    "OFFICIAL_URL",
    "ChecksumError",
    "DownloadError",
    "cached_model_path",
    "download_file",
    "file_digest",
    "file_sha256",
    "resolve_model_path",
    "source_digest",
    "verify_file",
]

OFFICIAL_URL = "https://zenodo.org/record/3228411/files/resnet34-ssd1200.onnx"
OFFICIAL_FILENAME = "resnet34-ssd1200.onnx"
OFFICIAL_SIZE = 80_363_696
OFFICIAL_SHA256 = "b417a8186967f1e78670b0075aa72a10e5c7d1a6d5c08af9d13dc97f3d29ef0d"
#: Environment variable naming the model file to use.
MODEL_ENV_VAR = "SSD_RESNET34_MODEL"


class ChecksumError(ValueError):
    """A file's size or sha256 is not the expected one (the message gives both)."""


class DownloadError(OSError):
    """The download failed (no network, HTTP error, truncated transfer, timeout)."""


def cached_model_path() -> Path:
    """Where the official model is kept: ``cache_dir()/resnet34-ssd1200.onnx``."""
    return cache_dir() / OFFICIAL_FILENAME


def _manual_hint(dest: Path) -> str:
    return (f"To install the model by hand, download {OFFICIAL_URL} ({OFFICIAL_SIZE:,} bytes, "
            f"sha256 {OFFICIAL_SHA256}) on a machine with network access and copy it to {dest}, "
            f"or set {MODEL_ENV_VAR}=/path/to/{OFFICIAL_FILENAME} (the CLI: --model PATH).")


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "verified" / f"{key}.json"


def verify_file(path: str | os.PathLike, expected_size: int | None = None,
                expected_sha256: str | None = None, *, use_stamp: bool = True) -> Path:
    """Check a file's size and sha256.

    With ``use_stamp``, a file hashed before whose identity (size, mtime, ctime, inode,
    device) has not changed is not hashed again (:func:`file_digest`); a hash writes the
    stamp (silently skipped when the cache folder is not writable).

    Returns:
        ``path`` as a Path.

    Raises:
        FileNotFoundError: the file does not exist.
        ChecksumError: size or sha256 mismatch (expected vs got).
    """
    path = Path(path)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ChecksumError(f"{path}: size {size:,} bytes, expected {expected_size:,}")
    if expected_sha256 is None:
        return path
    expected_sha256 = expected_sha256.lower()
    got = file_digest(path) if use_stamp else file_sha256(path)
    if got != expected_sha256:
        raise ChecksumError(f"{path}: sha256 {got}, expected {expected_sha256}")
    return path


def file_digest(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, remembered by its stamp (see the module docstring): hashed only
    when the file is new or its identity (size, mtime, ctime, inode, device) changed."""
    path = Path(path)
    try:
        digest = stamp_digest(_stamp_path(path), path, str(path.resolve()))
    except OSError:  # no usable cache folder
        digest = None
    return digest if digest is not None else file_sha256(path)


def source_digest(path: str | os.PathLike) -> str:
    """The sha256 the files derived from ``path`` (its float16 copy, its int8 models) are keyed by:
    the digest ``path`` was trusted with in this process (a heads model made here,
    :func:`ssd_resnet34._files.trust_file`), else :func:`file_digest`."""
    return trusted_digest(Path(path)) or file_digest(path)


def _write_stamp(path: Path, sha256: str) -> None:
    """Remember that ``path`` (as it is now) has this sha256; skipped if the cache is read-only."""
    try:
        write_stamp(_stamp_path(path), path, sha256, str(path.resolve()))
    except OSError:
        pass


def download_file(url: str, dest: str | os.PathLike, *, expected_size: int | None = None,
                  expected_sha256: str | None = None, progress: bool = True, timeout: float = 60,
                  chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, verified, atomically.

    Streams with urllib into a temporary file in ``dest``'s folder (a tqdm progress bar on
    stderr when ``progress``), checks the transfer against the server's Content-Length and
    ``expected_size``/``expected_sha256``, and only then renames it to ``dest``. The
    temporary file is removed on any failure; an existing ``dest`` is left untouched
    unless the download succeeds.

    Args:
        url: http(s) URL.
        dest: the file to write; its folder is created if needed.
        expected_size: bytes, or None not to check.
        expected_sha256: hex digest, or None not to check.
        progress: show a progress bar.
        timeout: seconds for connecting and for each read (never hangs longer).
        chunk_size: bytes per read.

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: the content's size or sha256 differs from the expected ones
            (also raised before the transfer when the server announces another size).
        DownloadError: network failure, HTTP error, timeout or a truncated transfer;
            the message gives the URL and, for the model, where to put it by hand
            (``dest`` and ``$SSD_RESNET34_MODEL``).
    """
    dest = Path(dest).expanduser()
    with replacing(dest) as tmp:
        with open(tmp, "wb") as out:
            _stream(url, out, dest, expected_size, progress, timeout, chunk_size)
        verify_file(tmp, expected_size, expected_sha256, use_stamp=False)
    return dest


def _stream(url: str, out, dest: Path, expected_size: int | None, progress: bool, timeout: float,
            chunk_size: int) -> None:
    def fail(why: str) -> DownloadError:
        return DownloadError(f"could not download {url}: {why}. {_manual_hint(dest)}")

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            if announced is not None and expected_size is not None and announced != expected_size:
                raise ChecksumError(f"{url}: the server announces {announced:,} bytes, expected {expected_size:,}")
            received = 0
            with tqdm(total=announced or expected_size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                while block := response.read(chunk_size):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
    except ChecksumError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise fail(f"HTTP error {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise fail(f"timed out after {timeout} s while connecting") from exc
        raise fail(f"no network connection ({exc.reason})") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise fail(f"timed out after {timeout} s without data") from exc
    except Exception as exc:  # connection reset, http.client.IncompleteRead, RemoteDisconnected, ...
        raise fail(f"transfer failed ({type(exc).__name__}: {exc})") from exc
    if announced is not None and received != announced:
        raise fail(f"truncated transfer: got {received:,} of {announced:,} bytes")


def _checked(path: Path, source: str, verify: bool, expected_size: int | None,
             expected_sha256: str | None) -> Path:
    if path.is_dir():
        raise IsADirectoryError(f"{path} ({source}) is a folder, not a model file: give the path of "
                                f"{OFFICIAL_FILENAME}")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path} ({source})")
    if verify:
        try:
            verify_file(path, expected_size, expected_sha256)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc} ({source}). It is not the official {OFFICIAL_FILENAME}; to use "
                                "another export of this network anyway, pass verify=False "
                                "(command line: --no-verify)") from exc
    return path


def resolve_model_path(model_path: str | os.PathLike | None = None, *, download: bool = True,
                       verify: bool = True, url: str = OFFICIAL_URL, expected_size: int | None = OFFICIAL_SIZE,
                       expected_sha256: str | None = OFFICIAL_SHA256, progress: bool = True,
                       timeout: float = 60) -> Path:
    """Find the official model file, downloading it into the cache when needed.

    Order: ``model_path``; else ``$SSD_RESNET34_MODEL`` (when set and not empty); else
    ``cache_dir()/resnet34-ssd1200.onnx`` (:func:`cached_model_path`); else, when
    ``download``, download ``url`` there.

    Every file found is checked against ``expected_size`` and ``expected_sha256`` (when
    ``verify``); a file that passed is remembered by a stamp (see the module docstring),
    so later calls only compare its size and mtime.

    Args:
        model_path: an explicit .onnx path (``~`` expanded).
        download: allow the download when no file is found.
        verify: check size and sha256 (pass False for a model other than the official one).
        url, expected_size, expected_sha256: the file to fetch and its checksums
            (default: the official model); tests pass their own.
        progress, timeout: see :func:`download_file`.

    Returns:
        The path of a verified model file.

    A cached copy that fails the check is downloaded again (when ``download``).

    Raises:
        ValueError: ``model_path`` is an empty string.
        FileNotFoundError: ``model_path`` or ``$SSD_RESNET34_MODEL`` names a missing file
            (the message names it), or there is no cached copy and ``download`` is False
            (the message says where to put the file).
        IsADirectoryError: ``model_path`` or ``$SSD_RESNET34_MODEL`` names a folder.
        ChecksumError: the file found or downloaded is not the expected one.
        DownloadError: the download failed (see :func:`download_file`).
    """
    if model_path is not None:
        if not os.fspath(model_path).strip():
            raise ValueError(f"model_path is empty: expected the path of {OFFICIAL_FILENAME} (or None to "
                             f"look in ${MODEL_ENV_VAR}, the cache, then download)")
        return _checked(Path(model_path).expanduser(), "the model_path argument", verify,
                        expected_size, expected_sha256)
    env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if env:
        return _checked(Path(env).expanduser(), f"${MODEL_ENV_VAR}", verify, expected_size, expected_sha256)
    cached = cached_model_path()
    if cached.is_file():
        try:
            return _checked(cached, "the cached copy", verify, expected_size, expected_sha256)
        except ChecksumError:
            if not download:
                raise
            # A damaged cache entry (e.g. an interrupted copy by hand): fetch it again. The old
            # file is replaced only once the new one is verified.
    if not download:
        raise FileNotFoundError(f"model file not found: {cached}, and download=False. {_manual_hint(cached)}")
    download_file(url, cached, expected_size=expected_size if verify else None,
                  expected_sha256=expected_sha256 if verify else None, progress=progress, timeout=timeout)
    if verify and expected_sha256 is not None:
        _write_stamp(cached, expected_sha256.lower())  # download_file verified it
    return cached
