"""Cached artefacts (synthetic models, truncated heads models, the downloaded official file) carry
a stamp and are rebuilt when damaged; the cache folder's errors are clear; files get the usual
permissions."""

from __future__ import annotations

import os
import shutil
import stat
import warnings
from pathlib import Path

import pytest

from ssd_resnet34._files import build_cached, cache_dir, file_sha256, replacing, stamp_matches, write_stamp
from ssd_resnet34.cli import main
from ssd_resnet34.detector import SSDResNet34
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
    assert truncated_model_path(src) == heads and heads.read_bytes() == good
    _flip(heads)
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
