"""The engine registry: how ``engines.create`` resolves engine, device and precision, and how it
refuses bad ones; the int8 targets.

:func:`resolve` takes what each backend sees (its ``probe``, built here from each backend's own
``probe`` function over a made-up machine), so every machine kind is checked here (AMX CPU, CPU
without bf16, AMD Zen 4 (BF16, no FP16), Intel GPU, NVIDIA GPU, no OpenVINO); the last tests ask
this machine.
"""
from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
from ssd_resnet34.cli import main
from ssd_resnet34.engines import (
    AUTO,
    BACKENDS,
    CUDA_DEVICES,
    DEVICES,
    ENGINE_MODES,
    ENGINES,
    LATENCY,
    PRECISIONS,
    THROUGHPUT,
    Choice,
    choice,
    create,
    int8_targets,
    resolve,
)
from ssd_resnet34.engines import onnxruntime as ort_backend
from ssd_resnet34.engines import openvino as ov_backend
from ssd_resnet34.engines.openvino import openvino_devices

pytest_plugins = ["_fixtures"]

CPU_ORT = ["CPUExecutionProvider"]
CUDA_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
AMX = ["BF16", "FP32", "FP16", "INT8", "EXPORT_IMPORT"]
AVX2 = ["FP32", "INT8", "EXPORT_IMPORT"]
ZEN4 = ["BF16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT"]  # AMD EPYC Zen 4: AVX-512 BF16, no FP16
GPU = ["FP32", "FP16", "INT8"]


def _machine(ov=("CPU",), ort_providers=CPU_ORT, cpu=AMX):
    caps = {"CPU": cpu, "GPU": GPU, "NPU": ["FP16", "INT8"]}
    return {"openvino": None if ov is None else ov_backend.probe(list(ov), lambda d: caps[d]),
            "onnxruntime": ort_backend.probe(ort_providers)}


def _resolve(device="auto", engine="auto", precision="auto", **machine):
    chosen = resolve(device, engine, precision, machine=_machine(**machine))
    assert isinstance(chosen, Choice) and AUTO not in chosen
    return tuple(chosen)


def test_names():
    assert ENGINES == ("auto", "openvino", "onnxruntime")
    assert DEVICES == ("auto", "cpu", "gpu", "npu", "cuda", "tensorrt")
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "int8")
    assert ENGINE_MODES == (LATENCY, THROUGHPUT) == ("latency", "throughput")
    assert CUDA_DEVICES == ("cuda", "tensorrt")
    # everything is derived from the registry: one entry per backend module
    assert [b.name for b in BACKENDS] == list(ENGINES[1:])
    assert set(DEVICES[1:]) == {d for b in BACKENDS for d in b.devices}
    for entry in BACKENDS:
        assert set(entry.precisions) == set(entry.devices) and set(entry.auto_devices) <= set(entry.devices)
        assert {d for devices in entry.int8_targets.values() for d in devices} == {
            d for d in entry.devices if "int8" in entry.precisions[d]}


def test_choice_is_the_one_validator():
    assert choice("device", "CPU", DEVICES) == "cpu"
    with pytest.raises(ValueError, match=r"unknown device 'tpu': expected one of \('auto', 'cpu'"):
        choice("device", "tpu", DEVICES)
    with pytest.raises(TypeError, match=r"mode must be a str, one of \('latency', 'throughput'\), got int"):
        choice("mode", 1, ENGINE_MODES)
    with pytest.raises(AttributeError):
        resolve(machine=_machine()).device = "gpu"  # a Choice is frozen


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, ("openvino", "cpu", "bf16")),  # AMX / AVX512_BF16 CPU: OpenVINO's own default
    ({"cpu": AVX2}, ("openvino", "cpu", "fp32")),  # no bf16 on this CPU
    ({"device": "CPU", "precision": "FP32"}, ("openvino", "cpu", "fp32")),  # case-insensitive
    ({"ov": ("CPU", "GPU.0")}, ("openvino", "gpu", "fp16")),  # an Intel GPU
    ({"ov": ("CPU", "NPU"), "device": "npu"}, ("openvino", "npu", "fp16")),
    ({"ort_providers": CUDA_ORT}, ("onnxruntime", "cuda", "fp16")),  # NVIDIA: onnxruntime CUDA
    ({"ort_providers": CUDA_ORT, "device": "tensorrt", "precision": "int8"}, ("onnxruntime", "tensorrt", "int8")),
    ({"ort_providers": CUDA_ORT, "device": "cpu"}, ("openvino", "cpu", "bf16")),
    ({"engine": "onnxruntime"}, ("onnxruntime", "cpu", "fp32")),
    ({"engine": "onnxruntime", "precision": "int8"}, ("onnxruntime", "cpu", "int8")),
    ({"ov": None}, ("onnxruntime", "cpu", "fp32")),  # openvino not installed
    ({"ov": None, "device": "cpu", "precision": "int8"}, ("onnxruntime", "cpu", "int8")),
    ({"precision": "int8"}, ("openvino", "cpu", "int8")),
    ({"cpu": ZEN4}, ("openvino", "cpu", "bf16")),  # AMD Zen 4: AVX-512 BF16
    ({"cpu": []}, ("openvino", "cpu", "fp32")),  # capabilities unreadable: fp32, nothing refused
    ({"cpu": [], "precision": "fp16"}, ("openvino", "cpu", "fp16")),
    ({"ov": ("CPU", "GPU.0"), "ort_providers": CUDA_ORT}, ("onnxruntime", "cuda", "fp16")),  # CUDA first
    ({"ov": ("CPU", "GPU.0"), "engine": "openvino", "device": "cpu"}, ("openvino", "cpu", "bf16")),
    ({"ort_providers": CUDA_ORT, "engine": "onnxruntime", "device": "cpu"}, ("onnxruntime", "cpu", "fp32")),
])
def test_resolution(kwargs, expected):
    assert _resolve(**kwargs) == expected


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"device": "tpu"}, ValueError, r"unknown device 'tpu': expected one of \('auto', 'cpu', 'gpu', 'npu', 'cuda'"),
    ({"engine": "tflite"}, ValueError, r"unknown engine 'tflite': expected one of \('auto', 'openvino', 'onnxruntime'\)"),
    ({"precision": "int4"}, ValueError, r"unknown precision 'int4': expected one of \('auto', 'fp32', 'bf16', 'fp16', 'int8'\)"),
    ({"device": 0}, TypeError, "device must be a str"),
    ({"precision": None}, TypeError, "precision must be a str"),
    ({"device": "npu"}, ValueError, (r"device 'npu' is not available: the openvino engine needs an Intel NPU.*; "
                                    r"this machine has OpenVINO devices \['CPU'\] "
                                    r"and onnxruntime providers \['CPUExecutionProvider'\]")),
    ({"device": "gpu"}, ValueError, r"device 'gpu' is not available"),
    ({"device": "cuda"}, ValueError, (r"needs onnxruntime's CUDAExecutionProvider.*install onnxruntime-gpu.*"
                                     r"OpenVINO devices \['CPU'\]")),
    ({"device": "tensorrt", "ort_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, ValueError,
     r"needs onnxruntime's TensorrtExecutionProvider"),
    ({"device": "cuda", "engine": "openvino"}, ValueError, (r"the openvino engine runs on \('cpu', 'gpu', 'npu'\), "
                                                           r"not 'cuda'")),
    ({"device": "gpu", "engine": "onnxruntime"}, ValueError, r"the onnxruntime engine runs on .*not 'gpu'"),
    ({"engine": "onnxruntime", "precision": "bf16"}, ValueError,
     r"onnxruntime on 'cpu' runs \('fp32', 'int8'\) here, not 'bf16'; bf16 on 'cpu' is the openvino engine's"),
    ({"engine": "onnxruntime", "precision": "fp16"}, ValueError, r"not 'fp16'"),
    ({"precision": "bf16", "cpu": AVX2}, ValueError,
     r"openvino on 'cpu' runs \('fp32', 'int8'\) here, not 'bf16' \(OpenVINO's CPU capabilities are \['FP32'"),
    ({"precision": "fp16", "cpu": ZEN4}, ValueError,
     r"openvino on 'cpu' runs \('bf16', 'fp32', 'int8'\) here, not 'fp16' \(OpenVINO's CPU capabilities are"),
    ({"engine": "openvino", "ov": None}, ValueError, r"engine 'openvino' needs the openvino package"),
    ({"device": "gpu", "ov": None}, ValueError, r"device 'gpu' needs openvino, which is not installed"),
    ({"ov": ("NPU",), "engine": "openvino"}, ValueError, r"the openvino engine sees none of \('gpu', 'cpu'\)"),
])
def test_bad_choices(kwargs, error, message):
    with pytest.raises(error, match=message):
        _resolve(**kwargs)


@pytest.mark.parametrize(("engine", "device", "expected"), [
    ("all", "auto", [("openvino", "openvino"), ("onnxruntime", "onnxruntime"),
                     ("onnxruntime", "onnxruntime-tensorrt")]),
    ("openvino", "auto", [("openvino", "openvino")]),
    ("openvino", "gpu", [("openvino", "openvino")]),  # one IR for every OpenVINO device
    ("onnxruntime", "auto", [("onnxruntime", "onnxruntime")]),
    ("onnxruntime", "cuda", [("onnxruntime", "onnxruntime")]),  # the CPU's QDQ model runs on CUDA too
    ("ONNXRUNTIME", "TensorRT", [("onnxruntime", "onnxruntime-tensorrt")]),  # its own: symmetric; not here
])
def test_int8_targets(engine, device, expected):
    """``tensorrt`` is a device: its int8 artefact is onnxruntime's, for that device (the cache is
    keyed by backend and device)."""
    assert list(int8_targets(engine, device)) == expected


def test_int8_targets_refuse_what_no_engine_runs():
    with pytest.raises(ValueError, match=r"unknown engine 'tensorrt': expected one of \('auto', 'openvino', "
                                         r"'onnxruntime', 'all'\)"):
        int8_targets("tensorrt")
    with pytest.raises(ValueError, match=r"the openvino engine runs int8 on \('cpu', 'gpu', 'npu'\), not 'cuda'"):
        int8_targets("openvino", "cuda")
    with pytest.raises(TypeError, match="device must be a str"):
        int8_targets("openvino", None)


def test_this_machine(synthetic_heads_path):
    """Whatever this machine has: ``auto`` resolves to something it can run, and what it lacks
    is refused with the list of what it has."""
    engine, device, precision = resolve()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert (engine, device) == ("openvino", "gpu" if any(d.startswith("GPU") for d in openvino_devices()) else "cpu")
    with pytest.raises(ValueError, match=r"unknown mode 'fast': expected one of \('latency', 'throughput'\)"):
        create(synthetic_heads_path, mode="fast")
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        create(synthetic_heads_path, precision="fp64")
    if "NPU" not in openvino_devices():
        with pytest.raises(ValueError, match=r"'npu' is not available: .*this machine has OpenVINO devices \[.*\] "
                                             r"and onnxruntime providers \[.*'CPUExecutionProvider'\]"):
            create(synthetic_heads_path, device="npu")


@pytest.mark.parametrize(("options", "message"), [
    (["--engine", "onnxruntime", "--precision", "bf16"], r"error: onnxruntime on 'cpu' runs \('fp32', 'int8'\)"),
    (["--engine", "openvino", "--device", "cuda"], r"error: the openvino engine runs on \('cpu', 'gpu', 'npu'\)"),
    (["--device", "NPU"], r"error: device 'npu' is not available: .*this machine has"),
])
def test_cli_engine_options_are_checked(options, message, tmp_path, capsys, native, photo_paths):
    if "npu" in message and "NPU" in (openvino_devices() or []):
        pytest.skip("this machine has an NPU")
    code = main(["detect", str(photo_paths[0]), "--synthetic", "--out", str(tmp_path / "out"), *options])
    assert code == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_cli_rejects_unknown_names(capsys):
    assert main(["detect", "x", "--synthetic", "--precision", "fp64"]) == 2
    assert "invalid choice: 'fp64'" in capsys.readouterr().err


def test_sqnr_and_agreement_helpers():
    from ssd_resnet34.evaluation.accuracy.compare import detection_agreement, sqnr_db
    from ssd_resnet34.types import LtrbBoundingBox, ObjectDetectionResult

    ref = [np.ones((1, 4), np.float32) * 10]
    assert sqnr_db(ref, ref) == [float("inf")]
    assert sqnr_db(ref, [ref[0] * 1.01]) == pytest.approx([40.0])  # 1% error: 40 dB
    with pytest.raises(ValueError, match="shape"):
        sqnr_db(ref, [np.ones((2, 4))])

    def det(box, label, score=0.5):
        return ObjectDetectionResult(LtrbBoundingBox(*box), score, "x", label)

    reference = [[det((0, 0, 10, 10), 1, 0.9), det((20, 20, 30, 30), 2)], []]
    same = [[det((0, 0, 10, 9), 1), det((20, 20, 30, 30), 3)], [det((0, 0, 1, 1), 1)]]
    assert detection_agreement(reference, same) == 0.5  # label 2 is missing; extra boxes don't count
    assert detection_agreement(reference, reference) == 1.0
    assert detection_agreement([[]], [[]]) == 1.0
    with pytest.raises(ValueError, match="2 images"):
        detection_agreement(reference, [[]])


def test_the_cli_precision_reaches_the_engine_through_one_resolver(tmp_path, monkeypatch, capsys, native,
                                                                  photo_paths):
    """``--precision`` goes from argparse (its choices are the registry's) to the engine through one
    ``resolve`` and one name check; the engine constructor takes the resolved ``Choice`` as it is.
    The real functions run; the wrappers only count the calls."""
    from ssd_resnet34 import engines
    from ssd_resnet34.engines import _registry
    from ssd_resnet34.engines.onnxruntime import OnnxRuntimeEngine

    calls = {"resolve": 0, "precision": 0, "engines": []}
    real_resolve, real_choice, real_init = _registry.resolve, _registry.choice, OnnxRuntimeEngine.__init__

    def counting_resolve(*args, **kwargs):
        calls["resolve"] += 1
        return real_resolve(*args, **kwargs)

    def counting_choice(kind, value, allowed):
        calls["precision"] += kind == "precision"
        return real_choice(kind, value, allowed)

    def recording_init(self, model_path, choice, *args, **kwargs):
        calls["engines"].append(choice)
        real_init(self, model_path, choice, *args, **kwargs)

    monkeypatch.setattr(engines, "resolve", counting_resolve)
    monkeypatch.setattr(_registry, "choice", counting_choice)
    monkeypatch.setattr(OnnxRuntimeEngine, "__init__", recording_init)
    code = main(["detect", str(photo_paths[0]), "--synthetic", "--out", str(tmp_path / "out"), "--no-draw",
                 "--engine", "onnxruntime", "--device", "cpu", "--precision", "FP32"])
    assert code == 0, capsys.readouterr().err
    assert calls == {"resolve": 1, "precision": 1, "engines": [Choice("onnxruntime", "cpu", "fp32")]}


def test_cli_threads_are_capped_at_the_cores_with_a_warning(tmp_path, capsys, native, photo_paths):
    """``--threads 10000`` once stalled the machine (5,000 intra-op threads per onnxruntime request);
    the command runs on the cores it has and says so, in the command's own warning format."""
    import os

    cores = len(os.sched_getaffinity(0))
    code = main(["detect", str(photo_paths[0]), "--synthetic", "--out", str(tmp_path / "out"), "--no-draw",
                 "--engine", "onnxruntime", "--threads", "10000"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"warning: threads=10000 is more than the {cores} core(s) this process may use: using {cores}\n" in err


def test_one_set_of_defaults():
    """Every layer defaults to the registry's AUTO device and states latency versus throughput with
    the engine's constants: ``create`` serves one ``run`` call (latency), streams use throughput."""
    import inspect

    from ssd_resnet34 import SSDResNet34
    from ssd_resnet34.distributed.dataset import build_dataset, detect_dataset
    from ssd_resnet34.distributed.worker import ImageDetector, ModelSpec
    from ssd_resnet34.evaluation.performance.stages import measure_stages

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    assert default(create, "device") is None  # the model's device, else AUTO
    assert default(create, "engine") == default(create, "precision") == AUTO
    assert default(create, "mode") == LATENCY
    for function in (SSDResNet34.__init__, SSDResNet34.load, SSDResNet34.synthetic, detect_dataset, build_dataset,
                     ImageDetector.__init__, ModelSpec.build, measure_stages):
        assert default(function, "device") == AUTO, function.__qualname__
