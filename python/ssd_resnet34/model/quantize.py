"""int8 post-training quantization of the heads model, calibrated on real photos, and its cache.

:func:`quantize` calibrates int8 models for its targets (:data:`~ssd_resnet34.model.int8_tools.TARGETS`):
``openvino`` (NNCF), ``onnxruntime`` (static QDQ, per channel, uint8 activations; its CPU and
CUDA providers) and ``onnxruntime-tensorrt`` (the same, symmetric int8 activations), see
:mod:`ssd_resnet34.model.int8_tools`. Which target an engine and device run is the engine
registry's choice: ``ssd_resnet34.quantize`` (:func:`ssd_resnet34.engines.quantize`, command line
``ssd-resnet34 quantize``) resolves ``engine`` and ``device`` to targets and calls this; this
module does not import the engines. ``session.create(model, precision="int8")`` then finds the
latest artefact of its target with :func:`int8_model_path` (the registry's ``artefact`` hook), or
raises :class:`MissingInt8ModelError` naming the command to run.

Cache layout, under ``cache_dir()/int8/<first 16 hex of the heads model's sha256>/``, keyed by
target (backend and device):

- ``<target>-<key>/``: one artefact (``model.xml`` + ``model.bin``, or ``model.onnx``) and
  ``int8.json`` (what it was made from), written to a temporary folder and renamed into place;
- ``<target>.json``: which artefact ``precision="int8"`` uses (the latest calibrated).

The key is a sha256 of: the heads model's sha256, the target, the quantizer's settings
(:data:`~ssd_resnet34.model.int8_tools.SETTINGS`), the tool versions
(:func:`~ssd_resnet34.model.int8_tools.tool_version`), this module's format version, and each
calibration file's name and sha256, in order. Calibrating again on the same photos with the same
tools reuses the artefact; another model, other photos or another tool version make a new one.

The artefact files are bound to the heads model as the heads model is to its source
(:func:`ssd_resnet34._files.check_derived`): the sha256 of each (``model.onnx``, or ``model.xml``
and ``model.bin``) is recorded in ``cache_dir()/derived/`` with the heads model's sha256 and the
key, and hashed again on every :func:`int8_model_path`. A planted or damaged artefact (whatever
``int8.json`` says) is refused with :class:`MissingInt8ModelError` and recalibrated by the next
:func:`quantize`; an intact one is trusted, so the engine loads the bytes that were hashed and a
file swapped after the check is refused (:func:`ssd_resnet34._files.read_trusted`). The quantizers
read the heads model from a private copy of the bytes its sha256 was taken from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from .._files import (
    DerivedFileError,
    cache_dir,
    check_derived,
    file_sha256,
    read_checked,
    record_derived,
    replacing,
)
from .calibration import CalibrationImages, calibration_files
from .graph import check_model_size, model_file
from .int8_tools import ARTEFACTS, QUANTIZERS, SETTINGS, TARGETS, tool_version

__all__ = [
    "DEFAULT_COUNT",
    "Int8Model",
    "MissingInt8ModelError",
    "int8_model_path",
    "model_digest",
    "quantize",
]

#: Calibration photos by default (MLPerf's calibration list for SSD-ResNet34 has 500).
DEFAULT_COUNT = 300
_FORMAT_VERSION = "1"
_META = "int8.json"

class MissingInt8ModelError(FileNotFoundError):
    """No int8 model has been calibrated for this model and target (or it was made by other
    tool versions); the message names the command that makes one."""


@dataclass(frozen=True)
class Int8Model:
    """One calibrated int8 artefact.

    Attributes:
        target: ``"openvino"``, ``"onnxruntime"`` or ``"onnxruntime-tensorrt"``.
        path: the model file (``model.xml`` or ``model.onnx``).
        source: the heads model it was quantized from.
        images: the calibration files, in order.
        tool: the tool versions that made it.
        seconds: how long the calibration took (0 when reused from the cache).
        reused: True when the cache already held it.
    """

    target: str
    path: Path
    source: Path
    images: Tuple[str, ...]
    tool: str
    seconds: float
    reused: bool


def model_digest(path: Union[str, "os.PathLike[str]"]) -> str:
    """sha256 of a model file: the digest it was trusted with in this process (a heads model made
    here), else remembered by its stamp while its identity (size, mtime, ctime, inode, device)
    stays (:func:`~ssd_resnet34.model.weights.source_digest`)."""
    from .weights import source_digest

    return source_digest(path)


def _files_of(name: str, folder: Path) -> List[Path]:
    """The files of target ``name``'s artefact in ``folder``: ``model.onnx``, or ``model.xml`` and
    its ``model.bin``."""
    main = folder / ARTEFACTS[name]
    return [main, main.with_suffix(".bin")] if main.suffix == ".xml" else [main]


def _intact(name: str, folder: Path, model_sha: str, key: str) -> bool:
    """Whether the artefact in ``folder`` is the one recorded as calibrated from ``model_sha``
    with ``key`` (each file hashed now; then trusted).

    Raises:
        DerivedFileError: a file is recorded, but its bytes differ (planted or damaged).
    """
    checked = [check_derived(path, model_sha, key, f"the int8 model calibrated for {name}")
               for path in _files_of(name, folder)]  # every file, so each one is trusted
    return all(checked)


def _folder(model_sha: str) -> Path:
    return cache_dir() / "int8" / model_sha[:16]


def _targets(targets: Any) -> List[str]:
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise TypeError(f"targets must be a sequence of target names from {TARGETS}, got {type(targets).__name__}")
    if not targets:
        raise ValueError(f"targets is empty: name one or more of {TARGETS}")
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"unknown int8 target {target!r}: expected one of {TARGETS}")
    return list(dict.fromkeys(targets))


def _key(model_sha: str, target: str, tool: str, files: List[Path]) -> str:
    h = hashlib.sha256(f"{model_sha}|{target}|{SETTINGS[target]}|{tool}|v{_FORMAT_VERSION}".encode())
    for path in files:
        h.update(f"|{path.name}:{file_sha256(path)}".encode())
    return h.hexdigest()


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _calibrate(target_name: str, source: Path, files: List[Path], target: Path, meta: Dict[str, Any],
               ranges: Path) -> float:
    """Run the quantizer into a temporary folder beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        start = time.perf_counter()
        QUANTIZERS[target_name](source, CalibrationImages(files), work, ranges=ranges)
        seconds = time.perf_counter() - start
        meta["seconds"] = round(seconds, 1)
        _write_json(work / _META, meta)
        digests = [file_sha256(path) for path in _files_of(target_name, work)]
        if target.exists():  # made meanwhile by another process from the same key
            shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
        for path, digest in zip(_files_of(target_name, target), digests):
            record_derived(path, meta["source_sha256"], meta["key"], digest)
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quantize(model: Any, images: Union[str, "os.PathLike[str]", Iterable[Any]], count: int = DEFAULT_COUNT, *,
             targets: Sequence[str]) -> List[Int8Model]:
    """Calibrate int8 models of ``model`` on real photos for ``targets``;
    ``session.create(model, precision="int8")`` then uses them. Most callers want
    ``ssd_resnet34.quantize`` (:func:`ssd_resnet34.engines.quantize`), which names them by engine
    and device.

    Args:
        model: an ``SSDResNet34`` (its heads model, ``model_path``) or the path of a heads .onnx.
        images: a folder of photos (the first ``count`` image files by name) or a list of image
            paths (the first ``count``). Real photos of the deployment's kind (e.g. COCO
            val2017); a few hundred suffice, tests use 1-2.
        count: how many photos to calibrate on (default 300).
        targets: names from :data:`~ssd_resnet34.model.int8_tools.TARGETS`: ``"openvino"``
            (NNCF), ``"onnxruntime"`` (QDQ, for its CPU and CUDA providers),
            ``"onnxruntime-tensorrt"`` (symmetric QDQ, for onnxruntime's TensorRT provider).

    Returns:
        One :class:`Int8Model` per target. Calibration takes minutes for 300 photos (each is
        inferred in fp32); an artefact already calibrated from the same model, photos and tool
        versions is reused at once.

    Raises:
        TypeError / ValueError: a bad argument (see
            :func:`~ssd_resnet34.model.calibration.calibration_files`), an unknown target.
        FileNotFoundError: the model, the folder or a listed image is missing.
        ImportError: the target's tool (``nncf``, ``openvino``, ``onnxruntime``) is missing.
        ssd_resnet34.image.ImageError: a calibration file is not a readable image.
    """
    source = model_file(model)
    names = _targets(targets)
    files = calibration_files(images, count)
    model_sha = model_digest(source)
    results = []
    with tempfile.TemporaryDirectory(prefix="ssd-resnet34-ranges.") as shared:
        for name in names:
            results.append(_quantize_one(name, source, files, model_sha, Path(shared)))
    return results


def _checked_copy(source: Path, model_sha: str, shared: Path) -> Path:
    """A private copy (in ``shared``) of the bytes of ``source`` whose sha256 is ``model_sha``:
    what the quantizers read, so a source swapped after its digest was taken is refused."""
    copy = shared / f"source-{model_sha[:16]}.onnx"
    if not copy.is_file():
        from .weights import ChecksumError

        check_model_size(source)  # before it is read whole
        copy.write_bytes(read_checked(source, model_sha, ChecksumError))
    return copy


def _quantize_one(name: str, source: Path, files: List[Path], model_sha: str, shared: Path) -> Int8Model:
    """One target's artefact: reused from the cache when made from the same key and intact, else
    calibrated (a planted or damaged one with a warning); the target's pointer is set to it."""
    tool = tool_version(name)
    key = _key(model_sha, name, tool, files)
    target = _folder(model_sha) / f"{name}-{key[:16]}"
    meta = {"target": name, "key": key, "tool": tool, "source": str(source), "source_sha256": model_sha,
            "images": [str(p) for p in files], "format": _FORMAT_VERSION}
    existing = _read_json(target / _META)
    try:
        reused = existing.get("key") == key and _intact(name, target, model_sha, key)
    except DerivedFileError as error:
        warnings.warn(f"{error}; calibrating it again", stacklevel=3)
        reused = False
    seconds = 0.0 if reused else _calibrate(name, _checked_copy(source, model_sha, shared), files, target, meta,
                                            shared / "ranges.json")
    _write_json(_folder(model_sha) / f"{name}.json", {"folder": target.name, "key": key, "tool": tool})
    return Int8Model(name, target / ARTEFACTS[name], source, tuple(meta["images"]), tool, seconds, reused)


def _command(target: str) -> str:
    """How to make ``target``'s artefact: the command and the Python call."""
    engine, _, device = target.partition("-")
    flags = f"--engine {engine}" + (f" --device {device}" if device else "")
    call = f"engine={engine!r}" + (f", device={device!r}" if device else "")
    return (f"calibrate one first: `ssd-resnet34 quantize --images DIR {flags} --model PATH` "
            f"(`--synthetic` for the synthetic model), or ssd_resnet34.quantize(model, images, {call})")


def int8_model_path(model: Any, target: str) -> Path:
    """The int8 model :func:`quantize` made last for ``model`` (an ``SSDResNet34`` or a heads
    .onnx path) and ``target`` (``"openvino"``, ``"onnxruntime"`` or ``"onnxruntime-tensorrt"``:
    the engine registry's ``artefact`` hook names it).

    Raises:
        MissingInt8ModelError: none yet, it was made by other tool versions than the installed
            ones, or its files are not the ones calibrated (planted, damaged, or without the
            record of their sha256); the message names the command to run.
        FileNotFoundError: the model file is missing.
        ValueError: an unknown target.
    """
    source = model_file(model)
    if target not in TARGETS:
        raise ValueError(f"unknown int8 target {target!r}: expected one of {TARGETS}")
    model_sha = model_digest(source)
    folder = _folder(model_sha)
    pointer = _read_json(folder / f"{target}.json")
    how = _command(target)
    if not pointer:
        raise MissingInt8ModelError(f"no int8 model of {source} for {target} in {folder}: {how}")
    tool = tool_version(target)
    target_path = folder / str(pointer.get("folder", "")) / ARTEFACTS[target]
    meta = _read_json(target_path.parent / _META)
    if meta.get("key") != pointer.get("key") or not target_path.is_file():
        raise MissingInt8ModelError(f"the int8 model of {source} for {target} is missing or damaged ({target_path}): "
                                    f"{how}")
    if meta.get("tool") != tool:
        raise MissingInt8ModelError(f"the int8 model of {source} for {target} was made with {meta.get('tool')}, "
                                    f"the installed tools are {tool}: {how}")
    try:
        intact = _intact(target, target_path.parent, model_sha, str(pointer.get("key")))
    except DerivedFileError as error:
        raise MissingInt8ModelError(f"{error}; refused: {how}") from None
    if not intact:
        raise MissingInt8ModelError(f"the int8 model of {source} for {target} ({target_path}) has no record of the "
                                    f"sha256 it was calibrated with in {cache_dir() / 'derived'}; refused: {how}")
    return target_path
