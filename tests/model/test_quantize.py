"""int8 post-training quantization: the calibration photos, the cache (keyed by target: backend and
device), the quantizers (NNCF for OpenVINO, onnxruntime's QDQ for onnxruntime and, symmetric, for
onnxruntime on TensorRT) and ``precision="int8"``; ``ssd_resnet34.quantize`` (engine and device
resolved by the registry) and the ``quantize`` command.

Calibrated on ONE real COCO photo (the first of the folder) into a temporary cache, so this stays
cheap and never touches the user's cache; the int8 SQNR is reported, with a loose sanity floor
(int8 accuracy is measured by ``benches/bench_engines.py``, on real mAP it needs the official
weights). The synthetic model's detections are meaningless (random weights).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from ssd_resnet34 import quantize
from ssd_resnet34.cli import main
from ssd_resnet34.engines import create
from ssd_resnet34.evaluation.accuracy.compare import sqnr_db
from ssd_resnet34.model import quantize as int8_cache_module
from ssd_resnet34.model.calibration import CalibrationImages, calibration_files
from ssd_resnet34.model.quantize import MissingInt8ModelError, int8_model_path

pytest_plugins = ["_fixtures"]

CALIBRATION = "000000000285.jpg"  # the folder's first photo; the tests evaluate on others


@pytest.fixture(scope="session")
def int8_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture(scope="session")
def calibrated(int8_cache, synthetic_heads_path, photo_paths):
    """The three int8 models of the synthetic heads model, calibrated on one photo, and the engines
    of the two that run here."""
    pytest.importorskip("nncf")
    folder = photo_paths[0].parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSD_RESNET34_CACHE_DIR", str(int8_cache))
        made = quantize(synthetic_heads_path, folder, count=1, engine="all")
        engines = {name: create(synthetic_heads_path, device="cpu", engine=name, precision="int8")
                   for name in ("openvino", "onnxruntime")}
    yield made, engines
    for engine in engines.values():
        engine.close()


def test_calibration_files(tmp_path, photo_paths):
    folder = photo_paths[0].parent
    files = calibration_files(folder, 3)
    assert [p.name for p in files] == sorted(p.name for p in folder.glob("*.jpg"))[:3]
    assert files[0].name == CALIBRATION
    assert calibration_files(photo_paths, 1) == photo_paths[:1]
    images = CalibrationImages(photo_paths)
    assert len(images) == 2 and images[1].shape == (1, 3, 1200, 1200) and images[1].dtype == np.float32
    assert len(images[1:]) == 1
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        calibration_files(tmp_path / "missing", 1)
    with pytest.raises(ValueError, match="no image files"):
        calibration_files(tmp_path, 1)
    with pytest.raises(ValueError, match="is a file"):
        calibration_files(photo_paths[0], 1)
    with pytest.raises(FileNotFoundError, match="calibration image not found"):
        calibration_files([tmp_path / "nope.jpg"], 1)
    with pytest.raises(ValueError, match="count must be >= 1"):
        calibration_files(folder, 0)
    with pytest.raises(TypeError, match="count must be an int"):
        calibration_files(folder, "3")
    with pytest.raises(TypeError, match="paths of image files"):
        calibration_files([3], 1)
    with pytest.raises(ValueError, match="empty"):
        calibration_files([], 1)


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_missing_int8_model_names_the_command(engine, tmp_path, monkeypatch, synthetic_heads_path):
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path))
    with pytest.raises(MissingInt8ModelError, match=r"no int8 model of .* for " + engine +
                       r".*ssd-resnet34 quantize --images DIR --engine " + engine):
        create(synthetic_heads_path, device="cpu", engine=engine, precision="int8")
    assert issubclass(MissingInt8ModelError, FileNotFoundError)


def test_missing_tensorrt_int8_model_names_engine_and_device(tmp_path, monkeypatch, synthetic_heads_path):
    """tensorrt is a device: its int8 model is onnxruntime's, made with ``--device tensorrt``."""
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path))
    with pytest.raises(MissingInt8ModelError, match=r"for onnxruntime-tensorrt .*--engine onnxruntime --device "
                                                    r"tensorrt .*engine='onnxruntime', device='tensorrt'"):
        int8_model_path(synthetic_heads_path, "onnxruntime-tensorrt")


def test_bad_quantize_arguments(synthetic_heads_path, photo_paths):
    with pytest.raises(ValueError, match=r"unknown engine 'cuda': expected one of \('auto', 'openvino', "
                                         r"'onnxruntime', 'all'\)"):
        quantize(synthetic_heads_path, photo_paths, engine="cuda")
    with pytest.raises(ValueError, match=r"unknown engine 'tensorrt'"):  # a device, not an engine
        quantize(synthetic_heads_path, photo_paths, engine="tensorrt")
    with pytest.raises(ValueError, match=r"the openvino engine runs int8 on \('cpu', 'gpu', 'npu'\), not 'tensorrt'"):
        quantize(synthetic_heads_path, photo_paths, engine="openvino", device="tensorrt")
    with pytest.raises(TypeError, match=r"\.model_path attribute \(SSDResNet34\)"):
        quantize(42, photo_paths)
    with pytest.raises(ValueError, match=r"unknown int8 target 'cuda': expected one of \('openvino', 'onnxruntime', "
                                         r"'onnxruntime-tensorrt'\)"):
        int8_model_path(synthetic_heads_path, "cuda")
    with pytest.raises(ValueError, match="unknown int8 target 'tensorrt'"):  # the old key: now a device's
        int8_cache_module.quantize(synthetic_heads_path, photo_paths, targets=["tensorrt"])
    with pytest.raises(TypeError, match="targets must be a sequence"):
        int8_cache_module.quantize(synthetic_heads_path, photo_paths, targets="openvino")


def test_the_int8_cache_does_not_import_the_engines():
    """The engines/model cycle is gone: model/quantize.py takes targets, the registry names them."""
    import ast
    import inspect

    for module in (int8_cache_module, __import__("ssd_resnet34.model.int8_tools", fromlist=["x"]),
                   __import__("ssd_resnet34.model.fp16", fromlist=["x"])):
        tree = ast.parse(inspect.getsource(module))
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if "engines" in name], (module.__name__, imported)


def test_int8_engines(calibrated, photo_batch, photo_reference):
    made, engines = calibrated
    assert [m.target for m in made] == ["openvino", "onnxruntime", "onnxruntime-tensorrt"]
    assert all(m.images[0].endswith(CALIBRATION) and not m.reused and m.seconds > 0 for m in made)
    assert [m.path.name for m in made] == ["model.xml", "model.onnx", "model.onnx"]
    for name, engine in engines.items():
        assert (engine.name, engine.device, engine.precision) == (name, "cpu", "int8")
        db = sqnr_db([r[:1] for r in photo_reference], engine.run(photo_batch[0][:1]))
        print(f"{name} int8 (calibrated on 1 photo): head SQNR {min(db):.1f}..{max(db):.1f} dB against "
              "onnxruntime fp32")
        assert min(db) > 15  # a sanity floor: a broken quantization gives < 5 dB


def _activation_zero_points(path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) > 50 and {(n.domain or "") for n in quantizers} == {""}
    return [inits[n.input[2]] for n in quantizers]


def test_qdq_formats(calibrated):
    """onnxruntime: uint8 activations with their own zero points (its fast CPU format); onnxruntime on
    TensorRT: symmetric int8 activations (zero points 0), the only kind TensorRT takes."""
    made, _ = calibrated
    cpu, trt = _activation_zero_points(made[1].path), _activation_zero_points(made[2].path)
    assert {z.dtype for z in cpu} == {np.dtype(np.uint8)} and any(int(z) != 128 for z in cpu)
    assert {z.dtype for z in trt} == {np.dtype(np.int8)} and all(int(z) == 0 for z in trt)


def test_cache_reuse_new_photos_and_tool_versions(calibrated, int8_cache, synthetic_heads_path, photo_paths,
                                                  monkeypatch):
    made, _ = calibrated
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(int8_cache))
    (again,) = quantize(synthetic_heads_path, photo_paths[0].parent, count=1, engine="openvino")
    assert again.reused and again.seconds == 0 and again.path == made[0].path
    assert int8_model_path(synthetic_heads_path, "openvino") == made[0].path
    # another model file (same bytes): its own hash, the same artefact folder
    copy = int8_cache / "copy.onnx"
    shutil.copyfile(synthetic_heads_path, copy)
    assert int8_model_path(copy, "onnxruntime") == made[1].path
    # the artefact was made by other tool versions: refused, naming the command
    meta = made[1].path.parent / "int8.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps({**data, "tool": "onnxruntime 0.1"}))
    try:
        with pytest.raises(MissingInt8ModelError, match=r"made with onnxruntime 0.1.*ssd-resnet34 quantize"):
            int8_model_path(synthetic_heads_path, "onnxruntime")
    finally:
        meta.write_text(json.dumps(data))


def test_quantize_command_uses_the_cache(calibrated, int8_cache, synthetic_heads_path, photo_paths, monkeypatch,
                                         capsys):
    made, _ = calibrated
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(int8_cache))
    code = main(["quantize", "--images", str(photo_paths[0].parent), "--count", "1", "--engine", "openvino",
                 "--model", str(synthetic_heads_path), "--no-verify"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"openvino: int8 model {made[0].path} (already calibrated (cached) on 1 image(s); nncf ")
    code = main(["quantize", "--images", str(photo_paths[0].parent), "--count", "1", "--engine", "onnxruntime",
                 "--device", "tensorrt", "--model", str(synthetic_heads_path), "--no-verify"])
    assert code == 0  # tensorrt is a device: onnxruntime's symmetric model, made without a TensorRT here
    out = capsys.readouterr().out
    assert out.startswith(f"onnxruntime-tensorrt: int8 model {made[2].path} (already calibrated (cached) on 1 image(s); ")
    assert main(["quantize", "--images", str(photo_paths[0].parent / "missing"), "--synthetic"]) == 1
    assert "calibration folder not found" in capsys.readouterr().err


# Issue 15, item 5: the int8 artefacts are bound to the heads model as the heads file is to its
# source. ``int8.json`` still names the right key (the stamp a planter forges or leaves), but the
# bytes are hashed against the record in ``cache_dir()/derived``: a planted or damaged artefact is
# refused, and one swapped after its check is refused by the engine.


def _victim(target: str, path):
    """The artefact file to tamper with: ``model.onnx``, or the IR's weights ``model.bin``."""
    return path.with_suffix(".bin") if target == "openvino" else path


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_a_planted_int8_model_with_its_stamp_intact_is_refused(calibrated, int8_cache, synthetic_heads_path,
                                                               monkeypatch, target):
    made, _ = calibrated
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(int8_cache))
    path = int8_model_path(synthetic_heads_path, target)
    victim = _victim(target, path)
    good, st = victim.read_bytes(), victim.stat()
    planted = bytearray(good)
    planted[len(planted) // 2] ^= 0xFF  # same size; mtime restored below, as a planter would
    try:
        if target == "onnxruntime":
            shutil.copyfile(made[2].path, victim)  # another valid int8 graph (the symmetric one)
        else:
            victim.write_bytes(bytes(planted))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        with pytest.raises(MissingInt8ModelError, match=rf"{victim.name} is not the int8 model calibrated for {target} "
                                                       r"made from its source \(sha256 \w+, recorded \w+\): it was "
                                                       r"replaced or damaged; refused: calibrate one first: "
                                                       rf"`ssd-resnet34 quantize --images DIR --engine {target}"):
            create(synthetic_heads_path, device="cpu", engine=target, precision="int8")
    finally:
        victim.write_bytes(good)
    assert int8_model_path(synthetic_heads_path, target) == path  # the calibrated bytes again: accepted


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_an_int8_model_swapped_after_its_check_is_refused_by_the_engine(calibrated, int8_cache, synthetic_heads_path,
                                                                        monkeypatch, target):
    from ssd_resnet34.engines import Choice
    from ssd_resnet34.engines.onnxruntime import OnnxRuntimeEngine
    from ssd_resnet34.engines.openvino import OpenVinoEngine

    assert calibrated
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(int8_cache))
    path = int8_model_path(synthetic_heads_path, target)  # checked: trusted with its digests
    victim = _victim(target, path)
    good = victim.read_bytes()
    engine = OnnxRuntimeEngine if target == "onnxruntime" else OpenVinoEngine
    try:
        swapped = bytearray(good)
        swapped[len(swapped) // 2] ^= 0xFF
        victim.write_bytes(bytes(swapped))  # between the check and the load
        with pytest.raises(ValueError, match=rf"{victim.name} changed after it was checked .* refused"):
            engine(path, Choice(target, "cpu", "int8"))
    finally:
        victim.write_bytes(good)
