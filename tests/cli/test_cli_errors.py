"""Every command-line failure is one ``error:`` line saying what is actually wrong, and a non-zero
exit, never a traceback; the library raises errors that name the file."""

from __future__ import annotations

import pytest

from ssd_resnet34.cli import main
from ssd_resnet34.detector import SSDResNet34

pytest_plugins = ["_fixtures"]


def _run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SSD_RESNET34_MODEL", raising=False)


def _image(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    return str(path)


def test_model_is_a_folder(tmp_path, capsys, cache):
    status, err = _run(capsys, "detect", _image(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "o"))
    assert status == 1
    assert f"error: {tmp_path} (the model_path argument) is a folder, not a model file" in err
    assert "not found" not in err


def test_model_is_empty_string(tmp_path, capsys, cache):
    status, err = _run(capsys, "detect", _image(tmp_path), "--model", "", "--out", str(tmp_path / "o"))
    assert status == 1 and "error: --model is empty: give the path of resnet34-ssd1200.onnx" in err
    with pytest.raises(ValueError, match="model_path is empty"):
        SSDResNet34.load("")


def test_checksum_error_names_the_cli_flag(tmp_path, capsys, cache, synthetic_full_path):
    status, err = _run(capsys, "detect", _image(tmp_path), "--model", str(synthetic_full_path), "--out", str(tmp_path / "o"))
    assert status == 1
    assert "It is not the official resnet34-ssd1200.onnx" in err and "--no-verify" in err
    # ... and the flag works: another export of the same network runs.
    status, err = _run(capsys, "detect", _image(tmp_path), "--model", str(synthetic_full_path), "--no-verify",
                       "--out", str(tmp_path / "o"))
    assert status == 0, err


def test_not_an_onnx_file(tmp_path, capsys, cache):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 20)
    with pytest.raises(ValueError, match=rf"^{junk} is not an ONNX model \(.*protobuf"):
        SSDResNet34.load(junk, verify=False)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^{empty} is empty \(0 bytes\), not an ONNX model"):
        SSDResNet34.load(empty, verify=False)
    status, err = _run(capsys, "detect", _image(tmp_path), "--model", str(empty), "--no-verify", "--out", str(tmp_path / "o"))
    assert status == 1 and f"error: {empty} is empty (0 bytes), not an ONNX model" in err
    assert "Concat" not in err


def test_unexpected_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import ssd_resnet34.cli.detect as detect

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(detect, "run", broken)
    status, err = _run(capsys, "detect", _image(tmp_path))
    assert status == 1
    assert err.strip().splitlines()[-1] == ("error: internal error (KeyError: 'a bug'); run with "
                                            "SSD_RESNET34_DEBUG=1 for the traceback")
    monkeypatch.setenv("SSD_RESNET34_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["detect", _image(tmp_path)])


def test_the_float_options_share_one_check():
    """serve, bench and detect (videos) take their rates, durations and sizes through the two
    validators of cli/_common.py: finite, > 0 (or >= 0), NaN and inf refused, the value named."""
    import argparse

    from ssd_resnet34.cli._common import non_negative_number, positive_number

    assert positive_number("2.5") == 2.5 and non_negative_number("0") == 0.0
    for parse, text in ((positive_number, "0"), (positive_number, "-1"), (positive_number, "nan"),
                        (positive_number, "inf"), (non_negative_number, "-0.5"), (non_negative_number, "nan"),
                        (non_negative_number, "x")):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            parse(text)
