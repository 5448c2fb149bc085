"""How ``engines.create`` resolves engine, device and precision, and how it refuses bad ones.

:func:`resolve` takes the machine's devices as arguments, so every machine kind is checked here
(AMX CPU, CPU without bf16, Intel GPU, NVIDIA GPU, no OpenVINO); the last tests ask this machine.
"""
from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest

from ssd_resnet34.cli import main
from ssd_resnet34.engines import DEVICES, ENGINES, MODES, PRECISIONS, create, resolve
from ssd_resnet34.engines._choose import openvino_devices

pytest_plugins = ["_fixtures"]

CPU_ORT = ["CPUExecutionProvider"]
CUDA_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
AMX = ["BF16", "FP32", "FP16", "INT8", "EXPORT_IMPORT"]
AVX2 = ["FP32", "INT8", "EXPORT_IMPORT"]
GPU = ["FP32", "FP16", "INT8"]


def _resolve(device="auto", engine="auto", precision="auto", *, ov=("CPU",), ort_providers=CPU_ORT, cpu=AMX):
    caps = {"CPU": cpu, "GPU": GPU, "NPU": ["FP16", "INT8"]}
    return tuple(resolve(device, engine, precision, ov_devices=None if ov is None else list(ov),
                         ort_providers=ort_providers, capabilities=lambda d: caps[d]))


def test_names():
    assert ENGINES == ("auto", "openvino", "onnxruntime")
    assert DEVICES == ("auto", "cpu", "gpu", "npu", "cuda", "tensorrt")
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "int8")
    assert MODES == ("latency", "throughput")


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
    ({"precision": "int8"}, ("openvino", "cpu", "int8")),
])
def test_resolution(kwargs, expected):
    assert _resolve(**kwargs) == expected


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"device": "tpu"}, ValueError, r"unknown device 'tpu': expected one of \('auto', 'cpu', 'gpu', 'npu', 'cuda'"),
    ({"engine": "tflite"}, ValueError, r"unknown engine 'tflite': expected one of \('auto', 'openvino', 'onnxruntime'\)"),
    ({"precision": "int4"}, ValueError, r"unknown precision 'int4': expected one of \('auto', 'fp32', 'bf16', 'fp16', 'int8'\)"),
    ({"device": 0}, TypeError, "device must be a str"),
    ({"precision": None}, TypeError, "precision must be a str"),
    ({"device": "npu"}, ValueError, r"device 'npu' is not available: this machine has OpenVINO devices \['CPU'\] "
                                    r"and onnxruntime providers \['CPUExecutionProvider'\]"),
    ({"device": "gpu"}, ValueError, r"device 'gpu' is not available"),
    ({"device": "cuda"}, ValueError, r"needs onnxruntime's CUDAExecutionProvider.*install onnxruntime-gpu.*"
                                     r"OpenVINO devices \['CPU'\]"),
    ({"device": "cuda", "engine": "openvino"}, ValueError, r"the openvino engine runs on \('auto', 'cpu', 'gpu', 'npu'\)"),
    ({"device": "gpu", "engine": "onnxruntime"}, ValueError, r"the onnxruntime engine runs on .*not 'gpu'"),
    ({"engine": "onnxruntime", "precision": "bf16"}, ValueError, r"onnxruntime on 'cpu' runs \('fp32', 'int8'\).*OpenVINO"),
    ({"engine": "onnxruntime", "precision": "fp16"}, ValueError, r"not 'fp16'"),
    ({"precision": "bf16", "cpu": AVX2}, ValueError, r"OpenVINO's CPU cannot run bf16: its capabilities are"),
    ({"engine": "openvino", "ov": None}, ValueError, r"needs the openvino package"),
])
def test_bad_choices(kwargs, error, message):
    with pytest.raises(error, match=message):
        _resolve(**kwargs)


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
        with pytest.raises(ValueError, match=r"'npu' is not available: this machine has OpenVINO devices \[.*\] and "
                                             r"onnxruntime providers \[.*'CPUExecutionProvider'\]"):
            create(synthetic_heads_path, device="npu")


@pytest.mark.parametrize(("options", "message"), [
    (["--engine", "onnxruntime", "--precision", "bf16"], r"error: onnxruntime on 'cpu' runs \('fp32', 'int8'\)"),
    (["--device", "NPU"], r"error: device 'npu' is not available: this machine has"),
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
