"""The int8 post-training quantizers, one per target, each writing its artefact into a folder.

A target is one int8 artefact, named by its backend and, where the artefact is the device's own,
its device: ``openvino`` (every OpenVINO device), ``onnxruntime`` (onnxruntime's CPU and CUDA
providers), ``onnxruntime-tensorrt`` (onnxruntime's TensorRT provider). The engine registry
(``ssd_resnet34.engines``) says which target each backend and device runs.

- ``openvino``: NNCF's ``nncf.quantize`` (min-max ranges on the calibration photos, fast bias
  correction, the default ``PERFORMANCE`` preset: symmetric int8 weights and activations) on the
  heads model with its batch fixed to 1; saved as an OpenVINO IR ``model.xml`` + ``model.bin``.
- ``onnxruntime``: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel symmetric
  int8 weights and asymmetric uint8 activations (min-max; U8S8, onnxruntime's fast CPU format:
  measured 2.9x faster than fp32 here, where symmetric S8S8 was slower than fp32), on the heads
  model converted to opset 13 (per-channel DequantizeLinear needs its ``axis``); ``model.onnx``.
- ``onnxruntime-tensorrt``: the same with symmetric int8 activations (S8S8, zero points 0: all TensorRT takes);
  TensorRT builds explicit int8 engines from its Q/DQ pairs.

Both read the calibration photos lazily (:class:`~ssd_resnet34.model.calibration.CalibrationImages`).
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, Dict, Optional

from ..layout import INPUT_SHAPE
from .calibration import CalibrationImages

__all__ = ["ARTEFACTS", "QUANTIZERS", "SETTINGS", "TARGETS", "tool_version"]

#: The int8 targets, one per artefact kind (see the module's docstring).
TARGETS = ("openvino", "onnxruntime", "onnxruntime-tensorrt")

#: What each quantizer does, in words; part of the cache key, so a change makes new artefacts.
SETTINGS = {
    "openvino": "nncf.quantize, PERFORMANCE preset, fast bias correction, batch 1, every photo",
    "onnxruntime": "quantize_static QDQ, opset 13, per-channel symmetric int8 weights, asymmetric uint8 "
                   "activations, min-max",
    "onnxruntime-tensorrt": "quantize_static QDQ, opset 13, per-channel symmetric int8 weights, symmetric int8 "
                            "activations, min-max",
}
#: The model file each quantizer writes in its folder.
ARTEFACTS = {"openvino": "model.xml", "onnxruntime": "model.onnx", "onnxruntime-tensorrt": "model.onnx"}
_QDQ_OPSET = 13


def tool_version(target: str) -> str:
    """The versions a target's artefact depends on, e.g. ``"nncf 3.4.0, openvino 2026.4.1-..."``."""
    if target == "openvino":
        import openvino

        try:
            import nncf
        except ImportError:
            return f"nncf (not installed), openvino {openvino.__version__}"
        return f"nncf {nncf.__version__}, openvino {openvino.__version__}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _quantize_openvino(model_path: Path, images: CalibrationImages, folder: Path, *,
                       ranges: Optional[Path] = None) -> None:
    try:
        import nncf
    except ImportError:
        raise ImportError("int8 calibration for OpenVINO needs NNCF: pip install nncf "
                          "(or pip install 'ssd-resnet34[int8]')") from None
    import openvino

    model = openvino.Core().read_model(str(model_path))
    model.reshape({model.inputs[0]: list(INPUT_SHAPE)})
    quantized = nncf.quantize(model, nncf.Dataset(images), subset_size=len(images))
    openvino.save_model(quantized, str(folder / ARTEFACTS["openvino"]), compress_to_fp16=False)


def _quantize_qdq(model_path: Path, images: CalibrationImages, folder: Path, *, symmetric: bool,
                  ranges: Optional[Path] = None) -> None:
    """``ranges``: a JSON file of the tensors' calibrated min/max (onnxruntime's calibration
    cache, onnxruntime >= 1.2x): read when it exists, else written, so the onnxruntime and TensorRT
    variants of one call calibrate once (the ranges are raw min/max; the symmetric variant
    symmetrizes them when it quantizes)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .graph import load_onnx

    model = load_onnx(model_path)
    name = model.graph.input[0].name
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < _QDQ_OPSET:
        model = version_converter.convert_version(model, _QDQ_OPSET)
    source = folder / "fp32-opset13.onnx"
    onnx.save(model, str(source))
    del model

    class Reader(CalibrationDataReader):
        """The photos, one range at a time (``CalibStridedMinMax`` calls :meth:`set_range`)."""

        def __init__(self) -> None:
            self._items = iter(images)

        def __len__(self) -> int:
            return len(images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._items = iter(images[start_index:end_index])

        def get_next(self):
            batch = next(self._items, None)
            return None if batch is None else {name: batch}

    cache = {}
    if ranges is not None and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        cache["calibration_cache_path"] = str(ranges)
    try:
        quantize_static(
            str(source), str(folder / ARTEFACTS["onnxruntime"]), Reader(), **cache,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                           # merge each photo's ranges into the running min/max at once: all
                           # intermediate tensors of one photo take ~1.5 GB. (Not
                           # CalibMaxIntermediateOutputs: onnxruntime 1.32 drops those ranges.)
                           "CalibStridedMinMax": 1})
    finally:
        source.unlink(missing_ok=True)


#: ``target -> quantize(model_path, calibration images, output folder, *, ranges=None)``.
QUANTIZERS: Dict[str, Callable[..., None]] = {
    "openvino": _quantize_openvino,
    "onnxruntime": functools.partial(_quantize_qdq, symmetric=False),
    "onnxruntime-tensorrt": functools.partial(_quantize_qdq, symmetric=True),
}
