"""Cached artefacts (synthetic models, truncated heads models, the downloaded official file) carry
a stamp and are rebuilt when damaged; the cache folder's errors are clear; files get the usual
permissions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import onnx
import pytest

from ssd_resnet34._files import (
    build_cached,
    cache_dir,
    file_identity,
    file_sha256,
    read_trusted,
    replacing,
    stamp_matches,
    trust_file,
    write_stamp,
)
from ssd_resnet34.cli import main
from ssd_resnet34.detector import SSDResNet34
from ssd_resnet34.engines import create
from ssd_resnet34.model.synthetic import synthetic_model_path
from ssd_resnet34.model.truncate import truncated_model_path

pytest_plugins = ["_fixtures"]


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(folder))
    return folder


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _flip(path: Path) -> None:
    """Same size, one byte changed (mtime changes too)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_build_cached_rebuilds_damaged_files(tmp_path):
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        tmp.write_bytes(b"x" * 1000)

    target = tmp_path / "artefact.bin"
    assert build_cached(target, "k1", build) == target and len(calls) == 1
    assert build_cached(target, "k1", build) == target and len(calls) == 1  # intact: reused
    _cut(target)
    build_cached(target, "k1", build)
    assert len(calls) == 2 and target.read_bytes() == b"x" * 1000  # cut short: rebuilt
    _flip(target)
    build_cached(target, "k1", build)
    assert len(calls) == 3 and target.read_bytes() == b"x" * 1000  # same size, other bytes: rebuilt
    os.utime(target, ns=(0, 10**9))  # touched, content intact: rehashed once, not rebuilt
    build_cached(target, "k1", build)
    assert len(calls) == 3
    build_cached(target, "k2", build)  # made from something else
    assert len(calls) == 4
    (tmp_path / "artefact.bin.stamp").write_text("{not json")
    build_cached(target, "k2", build)
    assert len(calls) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artefact.bin", "artefact.bin.stamp"]


def test_stamp_with_an_expected_digest(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    stamp = tmp_path / "f.json"
    write_stamp(stamp, path, file_sha256(path), "key")
    assert stamp_matches(stamp, path, "key", file_sha256(path))
    assert not stamp_matches(stamp, path, "key", "0" * 64)
    assert not stamp_matches(stamp, path, "other")
    assert not stamp_matches(tmp_path / "missing.json", path, "key")


def test_a_cut_synthetic_model_is_rebuilt(cache):
    path = synthetic_model_path(5)
    size = path.stat().st_size
    _cut(path)
    assert synthetic_model_path(5) == path and path.stat().st_size == size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = SSDResNet34.synthetic(5)  # loads fine: no InvalidProtobuf
    assert model.model_path == path


def test_a_cut_heads_model_is_rebuilt(tmp_path, synthetic_full_path):
    src = tmp_path / "model.onnx"
    shutil.copyfile(synthetic_full_path, src)
    heads = truncated_model_path(src)
    good = heads.read_bytes()
    _cut(heads)
    with pytest.warns(UserWarning, match="replaced or damaged; rebuilding it"):
        assert truncated_model_path(src) == heads and heads.read_bytes() == good
    _flip(heads)
    with pytest.warns(UserWarning, match="replaced or damaged; rebuilding it"):
        assert truncated_model_path(src) == heads and heads.read_bytes() == good


def test_cache_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(afile))
    with pytest.raises(NotADirectoryError, match="SSD_RESNET34_CACHE_DIR"):
        cache_dir()
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(afile / "sub"))
    with pytest.raises(OSError, match="cannot create the cache folder .*SSD_RESNET34_CACHE_DIR"):
        cache_dir()
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(afile))
    assert main(["detect", str(tmp_path / "x.jpg"), "--synthetic", "--out", str(tmp_path / "o")]) == 1
    assert main(["detect", str(afile), "--synthetic", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "FileExistsError" not in err
    assert f"error: the cache folder {afile} ($SSD_RESNET34_CACHE_DIR) is a file, not a folder" in err


def test_cached_files_respect_the_umask(cache, synthetic_full_path, tmp_path):
    old = os.umask(0o022)
    try:
        with replacing(tmp_path / "written.json") as tmp:
            tmp.write_text("{}")
        model = synthetic_model_path(6)
        src = tmp_path / "model.onnx"
        shutil.copyfile(synthetic_full_path, src)
        heads = truncated_model_path(src)
    finally:
        os.umask(old)
    for path in (tmp_path / "written.json", model, model.with_name(model.name + ".stamp"), heads):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# Issue 15, item 5: the heads file is bound to the verified source's content. A planted heads
# graph with a forged ``.stamp`` is rebuilt, and a file swapped after its check is refused, never
# loaded (the bytes hashed are the bytes the runtime gets).


def _plant(heads: Path, synthetic_heads_path: Path) -> None:
    """Replace ``heads`` by another 12-head graph and forge its stamp to describe the new file."""
    planted = onnx.load(str(synthetic_heads_path))
    planted.metadata_props.append(onnx.StringStringEntryProto(key="planted", value="yes"))
    onnx.save(planted, str(heads))
    stamp = heads.with_name(heads.name + ".stamp")
    forged = json.loads(stamp.read_text())
    forged.update(file_identity(heads.stat()))
    forged["sha256"] = hashlib.sha256(heads.read_bytes()).hexdigest()
    stamp.write_text(json.dumps(forged))


def test_a_planted_heads_graph_with_a_forged_stamp_is_rebuilt(tmp_path, cache, synthetic_full_path,
                                                              synthetic_heads_path):
    src = tmp_path / "model.onnx"
    shutil.copyfile(synthetic_full_path, src)
    heads = truncated_model_path(src)
    good = heads.read_bytes()
    _plant(heads, synthetic_heads_path)
    assert heads.read_bytes() != good
    with pytest.warns(UserWarning, match=r"model\.heads\.onnx is not the heads model made from its source .* "
                                         r"replaced or damaged; rebuilding it"):
        assert truncated_model_path(src) == heads
    assert heads.read_bytes() == good
    assert all(p.key != "planted" for p in onnx.load(str(heads)).metadata_props)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_heads_file_swapped_after_its_check_is_refused_by_the_engine(tmp_path, cache, synthetic_full_path,
                                                                        synthetic_heads_path, engine):
    src = tmp_path / "model.onnx"
    shutil.copyfile(synthetic_full_path, src)
    heads = truncated_model_path(src)  # checked: trusted with its digest
    assert read_trusted(heads) == heads.read_bytes()
    shutil.copyfile(synthetic_heads_path, heads)  # swapped between the check and the load
    with pytest.raises(ValueError, match=r"model\.heads\.onnx changed after it was checked .* refused"):
        create(heads, device="cpu", engine=engine, precision="fp32")


def test_the_source_swapped_after_its_check_is_refused(tmp_path, cache, synthetic_full_path):
    from ssd_resnet34.model.weights import ChecksumError

    src = tmp_path / "model.onnx"
    shutil.copyfile(synthetic_full_path, src)
    checked = file_sha256(src)
    model = onnx.load(str(src))
    model.metadata_props.append(onnx.StringStringEntryProto(key="swapped", value="yes"))
    onnx.save(model, str(src))  # after the verification, before the truncation reads it
    with pytest.raises(ChecksumError, match=r"model\.onnx changed after it was checked"):
        truncated_model_path(src, source_sha256=checked)
    assert not (tmp_path / "model.heads.onnx").exists()


def test_read_trusted(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert read_trusted(path) is None  # never trusted: the caller opens it as before
    trust_file(path, hashlib.sha256(b"abc").hexdigest())
    assert read_trusted(path) == b"abc"
    path.write_bytes(b"abd")
    os.utime(path, ns=(0, 0))
    with pytest.raises(ValueError, match="changed after it was checked"):
        read_trusted(path)


# The float16 copy (onnxruntime's CUDA fp16) is bound the same way: keyed by its source's sha256,
# its own sha256 recorded in ``cache_dir()/derived`` and checked on every call.


def _forge_stamp(path: Path) -> None:
    """A ``.stamp`` beside ``path`` describing it as it is now (what the old stamp check believed)."""
    stamp = path.with_name(path.name + ".stamp")
    stamp.write_text(json.dumps({**file_identity(path.stat()), "sha256": file_sha256(path), "key": "forged"}))


def test_a_planted_fp16_copy_with_a_forged_stamp_is_rebuilt(tmp_path, cache, synthetic_heads_path):
    from ssd_resnet34.model.fp16 import fp16_model_path

    src = tmp_path / "heads.onnx"
    shutil.copyfile(synthetic_heads_path, src)
    half = fp16_model_path(src)
    good, made = half.read_bytes(), half.stat().st_mtime_ns
    os.utime(src, ns=(0, 10**9))  # touched, same content: the same copy, not rebuilt
    assert fp16_model_path(src) == half and half.stat().st_mtime_ns == made
    planted = onnx.load(str(synthetic_heads_path))  # a float32 graph in its place
    planted.metadata_props.append(onnx.StringStringEntryProto(key="planted", value="yes"))
    onnx.save(planted, str(half))
    _forge_stamp(half)
    with pytest.warns(UserWarning, match=r"\.fp16\.onnx is not the float16 copy made from its source \(sha256 \w+, "
                                         r"recorded \w+\): it was replaced or damaged; rebuilding it"):
        assert fp16_model_path(src) == half
    assert half.read_bytes() == good


def test_an_fp16_copy_swapped_after_its_check_is_refused_by_the_engine(tmp_path, cache, synthetic_heads_path):
    from ssd_resnet34.engines import Choice
    from ssd_resnet34.engines.onnxruntime import OnnxRuntimeEngine
    from ssd_resnet34.model.fp16 import fp16_model_path

    src = tmp_path / "heads.onnx"
    shutil.copyfile(synthetic_heads_path, src)
    half = fp16_model_path(src)  # checked: trusted with its digest
    assert read_trusted(half) == half.read_bytes()
    shutil.copyfile(synthetic_heads_path, half)  # swapped between the check and the load
    with pytest.raises(ValueError, match=r"\.fp16\.onnx changed after it was checked .* refused"):
        OnnxRuntimeEngine(half, Choice("onnxruntime", "cpu", "fp16"))


def test_check_derived(tmp_path, cache):
    from ssd_resnet34._files import DerivedFileError, check_derived, record_derived

    target = tmp_path / "derived.bin"
    target.write_bytes(b"made")
    assert not check_derived(target, "a" * 64, "v1")  # no record: build it
    record_derived(target, "a" * 64, "v1", hashlib.sha256(b"made").hexdigest())
    assert check_derived(target, "a" * 64, "v1") and read_trusted(target) == b"made"
    assert not check_derived(target, "b" * 64, "v1")  # another source
    assert not check_derived(target, "a" * 64, "v2")  # another version
    target.write_bytes(b"mad!")
    with pytest.raises(DerivedFileError, match=r"derived\.bin is not the file made from its source .* replaced or "
                                               "damaged"):
        check_derived(target, "a" * 64, "v1")
    target.unlink()
    assert not check_derived(target, "a" * 64, "v1")
