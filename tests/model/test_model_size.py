"""A model given with ``--no-verify`` is checked by size before it is read (issue 15, item 13):
a 3 GiB external initializer is refused from its size, not read into memory."""

from __future__ import annotations

import os
import resource
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssd_resnet34.cli import main
from ssd_resnet34.model.graph import MAX_MODEL_BYTES, load_onnx


def _model_with_external_weight(folder, location: str, size: int):
    """A one-Conv model whose weight lives in the external file ``location`` of ``size`` bytes."""
    weight = numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_3_gib_external_initializer_is_refused_before_it_is_read(tmp_path, monkeypatch, capsys):
    path = _model_with_external_weight(tmp_path, "weights.bin", 3 * 2**30)
    with open(tmp_path / "weights.bin", "wb") as f:
        f.truncate(3 * 2**30)  # sparse
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"model\.onnx: with its external data, it has 3,221,225,\d+ bytes, more "
                                         r"than an SSD-ResNet34 model can be .*MAX_MODEL_BYTES = 1,073,741,824"):
        load_onnx(path)
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000  # KiB: nothing was read
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path / "cache"))
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    status = main(["detect", str(image), "--model", str(path), "--no-verify", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 1 and "more than an SSD-ResNet34 model can be" in err and "Traceback" not in err


def test_a_model_file_over_the_bound_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.truncate(MAX_MODEL_BYTES + 1)
    with pytest.raises(ValueError, match=r"huge\.onnx: the file has 1,073,741,825 bytes, more than"):
        load_onnx(path)


def test_external_data_outside_the_model_folder_is_still_refused(tmp_path):
    (tmp_path / "outside.bin").write_bytes(bytes(12))
    folder = tmp_path / "m"
    folder.mkdir()
    path = _model_with_external_weight(folder, "../outside.bin", 12)
    with pytest.raises(ValueError, match=r"model\.onnx: cannot load its external data"):
        load_onnx(path)
    assert os.path.exists(tmp_path / "outside.bin")
