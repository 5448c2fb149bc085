"""Which engine, device and precision :func:`ssd_resnet34.engines.create` runs: the names it accepts,
what this machine has, and how ``"auto"`` resolves.

Resolution (:func:`resolve`), in order:

1. ``engine="auto"``: onnxruntime for ``cuda``/``tensorrt``; OpenVINO for ``cpu``, ``gpu``, ``npu``
   (``cpu`` falls back to onnxruntime when the ``openvino`` package is missing);
   ``device="auto"`` takes onnxruntime's CUDA when this onnxruntime build has it, else OpenVINO.
2. ``device="auto"``: onnxruntime: ``cuda`` when available, else ``cpu``. OpenVINO: ``gpu`` when
   OpenVINO sees an (Intel) GPU, else ``cpu`` (the NPU is never picked automatically; OpenVINO's
   own ``AUTO`` plugin is not used, as it hides the precision it runs and moves between devices).
3. ``precision="auto"``: OpenVINO: bf16 on a CPU with AMX or AVX512_BF16 (``BF16`` in the
   device's ``OPTIMIZATION_CAPABILITIES``; OpenVINO's own default there), fp16 on a GPU or NPU, fp32
   elsewhere; onnxruntime: fp16 on ``cuda``/``tensorrt``, fp32 on ``cpu``. int8 is never chosen
   automatically: it needs a calibrated model (``ssd-resnet34 quantize``).

An unknown name raises ``ValueError`` listing the accepted ones; a device this machine lacks, or a
precision a device cannot run, raises ``ValueError`` listing what it has.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence

__all__ = [
    "DEVICES",
    "ENGINES",
    "MODES",
    "PRECISIONS",
    "Choice",
    "choice",
    "machine_devices",
    "onnxruntime_providers",
    "openvino_capabilities",
    "openvino_core",
    "openvino_devices",
    "resolve",
]

#: Engines :func:`ssd_resnet34.engines.create` can open.
ENGINES = ("auto", "openvino", "onnxruntime")
#: Devices, as :func:`ssd_resnet34.engines.create` accepts them (case-insensitive).
DEVICES = ("auto", "cpu", "gpu", "npu", "cuda", "tensorrt")
#: Precisions: ``fp32`` is the faithful one.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: ``"latency"``: one request at a time, all cores on it; ``"throughput"``: several requests in
#: flight (OpenVINO streams; pipelines, LoadGen Offline/Server).
MODES = ("latency", "throughput")

#: Devices each engine runs on.
ENGINE_DEVICES = {"openvino": ("auto", "cpu", "gpu", "npu"), "onnxruntime": ("auto", "cpu", "cuda", "tensorrt")}
#: Precisions onnxruntime runs on each device (bf16 is OpenVINO's).
ORT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "int8"), "tensorrt": ("fp32", "fp16", "int8")}
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
_CUDA = "CUDAExecutionProvider"


class Choice(NamedTuple):
    """A resolved choice: ``engine`` (``openvino``/``onnxruntime``), ``device`` (lower case, e.g.
    ``cpu``, ``gpu``, ``cuda``) and ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``)."""

    engine: str
    device: str
    precision: str


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` lower-cased if it is one of ``choices``; ``TypeError`` for a non-str,
    ``ValueError`` naming the accepted values otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {tuple(choices)}, got {type(value).__name__}")
    if value.lower() not in choices:
        raise ValueError(f"unknown {name} {value!r}: expected one of {tuple(choices)}")
    return value.lower()


@functools.lru_cache(maxsize=1)
def openvino_core() -> Optional[Any]:
    """One shared ``openvino.Core`` for the process, or None when ``openvino`` is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.Core()


def openvino_devices() -> Optional[list]:
    """OpenVINO's ``available_devices`` (e.g. ``['CPU', 'GPU.0']``), or None without openvino."""
    core = openvino_core()
    return None if core is None else list(core.available_devices)


def openvino_capabilities(device: str) -> list:
    """The ``OPTIMIZATION_CAPABILITIES`` of an OpenVINO device (``CPU``, ``GPU``, ``NPU``), e.g.
    ``['BF16', 'FP32', 'FP16', 'INT8', ...]``; [] when it cannot be read."""
    core = openvino_core()
    try:
        return list(core.get_property(device.upper(), "OPTIMIZATION_CAPABILITIES")) if core else []
    except RuntimeError:
        return []


def onnxruntime_providers() -> list:
    """onnxruntime's available execution providers."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def machine_devices() -> str:
    """What this machine has, for error messages: OpenVINO's devices and onnxruntime's providers."""
    ov = openvino_devices()
    ov_text = "OpenVINO is not installed" if ov is None else f"OpenVINO devices {ov}"
    return f"this machine has {ov_text} and onnxruntime providers {onnxruntime_providers()}"


def _has_ov_device(devices: Sequence[str], device: str) -> bool:
    return any(d.split(".")[0].lower() == device for d in devices)


def resolve(device: Any = "auto", engine: Any = "auto", precision: Any = "auto", *,
            ov_devices: Optional[Sequence[str]] = ..., ort_providers: Optional[Sequence[str]] = None,
            capabilities: Optional[Any] = None) -> Choice:
    """Resolve ``device``, ``engine`` and ``precision`` (each may be ``"auto"``) for this machine.

    Args:
        device, engine, precision: as :func:`ssd_resnet34.engines.create` takes them.
        ov_devices: OpenVINO's devices (default: :func:`openvino_devices`; None: not installed).
        ort_providers: onnxruntime's providers (default: :func:`onnxruntime_providers`).
        capabilities: ``capabilities(device) -> list`` of OpenVINO optimization capabilities
            (default: :func:`openvino_capabilities`).

    Returns:
        A :class:`Choice` with no ``"auto"`` left.

    Raises:
        TypeError: an argument is not a str.
        ValueError: an unknown name; a device the engine does not run on or this machine lacks;
            a precision the device cannot run. The messages list what is available.
    """
    device = choice("device", device, DEVICES)
    engine = choice("engine", engine, ENGINES)
    precision = choice("precision", precision, PRECISIONS)
    ov = openvino_devices() if ov_devices is ... else ov_devices
    providers = onnxruntime_providers() if ort_providers is None else list(ort_providers)
    capabilities = capabilities or openvino_capabilities
    have = (f"this machine has {'no OpenVINO (pip install openvino)' if ov is None else f'OpenVINO devices {list(ov)}'}"
            f" and onnxruntime providers {providers}")

    if engine == "auto":
        if device in ("cuda", "tensorrt") or (device == "auto" and _CUDA in providers) or ov is None:
            engine = "onnxruntime"
        else:
            engine = "openvino"
    if engine == "openvino" and ov is None:
        raise ValueError(f"engine 'openvino' needs the openvino package (pip install openvino); {have}")
    if device not in ENGINE_DEVICES[engine]:
        raise ValueError(f"the {engine} engine runs on {ENGINE_DEVICES[engine]}, not {device!r}; {have}")

    if engine == "openvino":
        if device == "auto":
            device = "gpu" if _has_ov_device(ov, "gpu") else "cpu"
        if not _has_ov_device(ov, device):
            raise ValueError(f"device {device!r} is not available: {have}")
        caps = capabilities(device.upper())
        if precision == "auto":
            precision = ("bf16" if "BF16" in caps else "fp32") if device == "cpu" else (
                "fp16" if "FP16" in caps else "fp32")
        elif caps and _CAPABILITY[precision] not in caps:
            raise ValueError(f"OpenVINO's {device.upper()} cannot run {precision}: its capabilities are {caps}")
        return Choice(engine, device, precision)

    if device == "auto":
        device = "cuda" if _CUDA in providers else "cpu"
    provider = {"cpu": "CPUExecutionProvider", "cuda": _CUDA, "tensorrt": "TensorrtExecutionProvider"}[device]
    if provider not in providers:
        raise ValueError(f"device {device!r} needs onnxruntime's {provider}, which this onnxruntime build lacks "
                         f"(install onnxruntime-gpu for cuda/tensorrt); {have}")
    if precision == "auto":
        precision = "fp32" if device == "cpu" else "fp16"
    if precision not in ORT_PRECISIONS[device]:
        hint = " (bf16 and fp16 on a CPU are OpenVINO's: engine='openvino')" if device == "cpu" else ""
        raise ValueError(f"onnxruntime on {device!r} runs {ORT_PRECISIONS[device]}, not {precision!r}{hint}")
    return Choice(engine, device, precision)
