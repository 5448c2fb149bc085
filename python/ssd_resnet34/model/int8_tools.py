"""The two int8 post-training quantizers, each writing its artefact into a folder.

- OpenVINO: NNCF's ``nncf.quantize`` (min-max ranges on the calibration photos, fast bias
  correction, the default ``PERFORMANCE`` preset: symmetric int8 weights and activations) on the
  heads model with its batch fixed to 1; saved as an OpenVINO IR ``model.xml`` + ``model.bin``.
- onnxruntime: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel int8
  weights and symmetric int8 activations (min-max), on the heads model converted to opset 13
  (per-channel DequantizeLinear needs its ``axis``); saved as ``model.onnx``. onnxruntime's CPU
  and CUDA providers run it, and TensorRT builds explicit int8 engines from the Q/DQ pairs
  (TensorRT takes symmetric int8 only).

Both read the calibration photos lazily (:class:`~ssd_resnet34.model.calibration.CalibrationImages`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from ..layout import INPUT_SHAPE
from .calibration import CalibrationImages

__all__ = ["ARTEFACTS", "QUANTIZERS", "tool_version"]

#: The model file each quantizer writes in its folder.
ARTEFACTS = {"openvino": "model.xml", "onnxruntime": "model.onnx"}
_QDQ_OPSET = 13


def tool_version(engine: str) -> str:
    """The versions an artefact depends on, e.g. ``"nncf 3.4.0, openvino 2026.4.1-..."``."""
    if engine == "openvino":
        import openvino

        try:
            import nncf
        except ImportError:
            return f"nncf (not installed), openvino {openvino.__version__}"
        return f"nncf {nncf.__version__}, openvino {openvino.__version__}"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _quantize_openvino(model_path: Path, images: CalibrationImages, folder: Path) -> None:
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


def _quantize_onnxruntime(model_path: Path, images: CalibrationImages, folder: Path) -> None:
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

    try:
        quantize_static(
            str(source), str(folder / ARTEFACTS["onnxruntime"]), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           # merge each photo's ranges into the running min/max at once: all
                           # intermediate tensors of one photo take ~1.5 GB. (Not
                           # CalibMaxIntermediateOutputs: onnxruntime 1.32 drops those ranges.)
                           "CalibStridedMinMax": 1})
    finally:
        source.unlink(missing_ok=True)


#: ``engine -> quantize(model_path, calibration images, output folder)``.
QUANTIZERS: Dict[str, Callable[[Path, CalibrationImages, Path], None]] = {
    "openvino": _quantize_openvino,
    "onnxruntime": _quantize_onnxruntime,
}
