"""The engine registry: every backend, the names :func:`ssd_resnet34.engines.create` accepts, and
the one resolver of ``"auto"``.

Each backend module (``openvino.py``, ``onnxruntime.py``) declares one :class:`~._base.Backend`
(``BACKEND``): its devices, its precisions per device, whether it is installed, what it sees on
this machine, the model file each precision needs, its int8 artefacts and how it opens.
:data:`BACKENDS` lists them, in the order ``engine="auto"`` prefers them; adding a backend is one
line here. Everything else is derived: :data:`ENGINES`, :data:`DEVICES`, :data:`PRECISIONS`,
:data:`CUDA_DEVICES`, :func:`int8_targets`.

Resolution (:func:`resolve`), in order:

1. ``engine="auto"`` with a device: the first installed backend that runs it (OpenVINO for
   ``cpu``, ``gpu``, ``npu``; onnxruntime for ``cuda``, ``tensorrt``, and for ``cpu`` without
   OpenVINO). Both ``"auto"``: the first device of :data:`AUTO_ORDER` that an installed backend
   sees and may pick automatically: onnxruntime's CUDA, then an (Intel) GPU through OpenVINO,
   then the CPU (OpenVINO, else onnxruntime). The NPU and TensorRT are never picked automatically;
   OpenVINO's own ``AUTO`` plugin is not used, as it hides the precision it runs.
2. ``device="auto"`` with an engine: the first device of the engine's ``auto_devices`` it sees.
3. ``precision="auto"``: the first precision the device runs here (``Probe.runnable``): OpenVINO
   bf16 on a CPU with AMX or AVX512_BF16 (``BF16`` in its ``OPTIMIZATION_CAPABILITIES``), fp16 on
   a GPU or NPU, else fp32; onnxruntime fp16 on ``cuda``/``tensorrt``, fp32 on ``cpu``. int8 is
   never chosen automatically: it needs a calibrated model (``ssd-resnet34 quantize``).

An unknown name raises ``ValueError`` listing the accepted ones (:func:`choice`, the one
validator); a device this machine lacks, or a precision a device cannot run, raises
``ValueError`` saying what this machine has.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import onnxruntime as _onnxruntime
from . import openvino as _openvino
from ._base import AUTO, Backend, Choice, Probe

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "CUDA_DEVICES",
    "DEVICES",
    "ENGINES",
    "PRECISIONS",
    "backend",
    "choice",
    "int8_targets",
    "probes",
    "resolve",
]

#: Every backend, in the order ``engine="auto"`` prefers them for a device both run.
BACKENDS: Tuple[Backend, ...] = (_openvino.BACKEND, _onnxruntime.BACKEND)


def _union(groups) -> Tuple[str, ...]:
    seen: List[str] = []
    for group in groups:
        seen += [name for name in group if name not in seen]
    return tuple(seen)


#: Engines :func:`ssd_resnet34.engines.create` accepts.
ENGINES: Tuple[str, ...] = (AUTO, *(b.name for b in BACKENDS))
#: Devices, as :func:`ssd_resnet34.engines.create` accepts them (case-insensitive).
DEVICES: Tuple[str, ...] = (AUTO, *_union(b.devices for b in BACKENDS))
#: Precisions; ``fp32`` is the faithful one.
PRECISIONS: Tuple[str, ...] = (AUTO, *_union(p for b in BACKENDS for p in b.precisions.values()))
#: Devices that need an NVIDIA GPU (a Ray actor on one asks for a GPU).
CUDA_DEVICES: Tuple[str, ...] = _onnxruntime.CUDA_DEVICES
#: The order in which ``device="auto"`` tries devices (each backend lists which it may pick).
AUTO_ORDER: Tuple[str, ...] = ("cuda", "gpu", "cpu")


def choice(kind: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` lower-cased when it is one of ``allowed``; the one validator of names.

    Raises:
        TypeError: ``value`` is not a str (the message lists ``allowed``).
        ValueError: ``value`` is not one of ``allowed`` (the message lists them).
    """
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a str, one of {tuple(allowed)}, got {type(value).__name__}")
    if value.lower() not in allowed:
        raise ValueError(f"unknown {kind} {value!r}: expected one of {tuple(allowed)}")
    return value.lower()


def backend(name: str) -> Backend:
    """The registered backend called ``name`` (``ValueError`` listing the engines otherwise)."""
    name = choice("engine", name, ENGINES[1:])
    return next(b for b in BACKENDS if b.name == name)


def probes() -> Dict[str, Optional[Probe]]:
    """What each backend sees on this machine: ``{name: Probe}``, None where its package is
    missing."""
    return {b.name: b.probe() if b.available() else None for b in BACKENDS}


def _have(seen: Mapping[str, Optional[Probe]]) -> str:
    parts = [f"no {b.name} (pip install {b.name})" if seen.get(b.name) is None else seen[b.name].seen
             for b in BACKENDS]
    return "this machine has " + " and ".join(parts)


def resolve(device: Any = AUTO, engine: Any = AUTO, precision: Any = AUTO, *,
            machine: Optional[Mapping[str, Optional[Probe]]] = None) -> Choice:
    """Resolve ``device``, ``engine`` and ``precision`` (each may be ``"auto"``) for this machine.

    Args:
        device, engine, precision: as :func:`ssd_resnet34.engines.create` takes them
            (case-insensitive).
        machine: ``{backend name: Probe or None}``, what each backend sees (default
            :func:`probes`: this machine; tests pass other machines).

    Returns:
        A :class:`~._base.Choice` with no ``"auto"`` left.

    Raises:
        TypeError: an argument is not a str.
        ValueError: an unknown name; a device the engine does not run on or this machine lacks; a
            precision the device cannot run here. The messages say what this machine has.
    """
    device = choice("device", device, DEVICES)
    engine = choice("engine", engine, ENGINES)
    precision = choice("precision", precision, PRECISIONS)
    seen = probes() if machine is None else dict(machine)
    have = _have(seen)
    installed = [b for b in BACKENDS if seen.get(b.name) is not None]

    if engine == AUTO:
        if device == AUTO:
            picks = [(b, d) for d in AUTO_ORDER for b in installed if d in b.auto_devices and d in seen[b.name].runnable]
            if not picks:
                raise ValueError(f"no backend sees a device it can run: {have}")
            chosen, device = picks[0]
        else:
            runs = [b for b in installed if device in b.devices]
            if not runs:
                names = [b.name for b in BACKENDS if device in b.devices]
                raise ValueError(f"device {device!r} needs {' or '.join(names)}, which is not installed; {have}")
            chosen = runs[0]
    else:
        chosen = backend(engine)
        if seen.get(chosen.name) is None:
            raise ValueError(f"engine {chosen.name!r} needs the {chosen.name} package (pip install {chosen.name}); "
                             f"{have}")
        if device != AUTO and device not in chosen.devices:
            raise ValueError(f"the {chosen.name} engine runs on {chosen.devices}, not {device!r}; {have}")
    probe = seen[chosen.name]
    if device == AUTO:
        device = next((d for d in chosen.auto_devices if d in probe.runnable), "")
        if not device:
            raise ValueError(f"the {chosen.name} engine sees none of {chosen.auto_devices}; {have}")
    if device not in probe.runnable:
        raise ValueError(f"device {device!r} is not available: the {chosen.name} engine needs "
                         f"{chosen.needs.get(device, 'it')}; {have}")
    runnable = probe.runnable[device]
    if precision == AUTO:
        floats = [p for p in runnable if p != "int8"]  # int8 needs a calibrated model: never automatic
        if not floats:
            raise ValueError(f"{chosen.name} on {device!r} runs only {runnable} here: ask for it by name")
        precision = floats[0]
    elif precision not in runnable:
        note = probe.notes.get(device, "")
        others = [b.name for b in BACKENDS if b is not chosen and precision in b.precisions.get(device, ())]
        hint = f"; {precision} on {device!r} is the {' or '.join(others)} engine's" if others else ""
        raise ValueError(f"{chosen.name} on {device!r} runs {runnable} here, not {precision!r}"
                         f"{f' ({note})' if note else ''}{hint}")
    return Choice(chosen.name, device, precision)


def int8_targets(engine: Any = "all", device: Any = AUTO) -> Tuple[Tuple[str, str], ...]:
    """The int8 artefacts to calibrate, as ``(backend, target)`` pairs, ``target`` being the key
    of the quantizer and of the int8 cache (:mod:`ssd_resnet34.model.quantize`), e.g.
    ``("onnxruntime", "onnxruntime-tensorrt")``.

    ``engine="all"``: every backend's targets (``device`` ignored). A named engine: its target for
    ``device`` (``"auto"``: its first device), whether or not this machine has the device (an
    artefact can be made for another machine). ``engine="auto"``: the target of the engine and
    device :func:`resolve` picks here (``device`` may narrow it).

    Raises:
        TypeError / ValueError: an unknown engine or device, or a device the engine does not run.
    """
    engine = choice("engine", engine, (*ENGINES, "all"))
    device = choice("device", device, DEVICES)
    if engine == "all":
        return tuple((b.name, target) for b in BACKENDS for target in b.int8_targets)
    if engine == AUTO:
        picked = resolve(device, AUTO, AUTO)
        engine, device = picked.engine, picked.device
    chosen = backend(engine)
    if device == AUTO:
        device = chosen.devices[0]
    for target, devices in chosen.int8_targets.items():
        if device in devices:
            return ((chosen.name, target),)
    raise ValueError(f"the {chosen.name} engine runs int8 on {_union(chosen.int8_targets.values())}, not {device!r}")

