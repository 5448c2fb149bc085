"""Small ONNX graph utilities: loading with clear errors, producer/consumer maps, shape
inference at a fixed input size.

Used by :mod:`ssd_resnet34.model.truncate` (to find and check the 12 SSD heads) and
:mod:`ssd_resnet34.model.optimize`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper

from ..layout import INPUT_SHAPE

__all__ = [
    "consumers",
    "infer_shapes",
    "load_onnx",
    "model_file",
    "model_input",
    "producers",
]

# Initializers with more elements than this are replaced by typed graph inputs
# before shape inference, so the weights are never copied.
_SMALL_INITIALIZER = 4096

Shape = tuple  # tuple[int | None, ...]; None for a dimension inference left unknown


#: The most bytes of a model, its ``.onnx`` file and external data together, that are read:
#: 1 GiB, 13 times the official model (80,363,696 bytes); an export of this network in float32
#: is about that size, so a larger one is not this network (and would cost its size in memory,
#: twice over, before any check).
MAX_MODEL_BYTES = 2**30


def _too_large(path: Path, size: int, what: str) -> ValueError:
    return ValueError(f"{path}: {what} {size:,} bytes, more than an SSD-ResNet34 model can be (the official "
                      f"resnet34-ssd1200.onnx is 80,363,696 bytes; at most "
                      f"ssd_resnet34.model.graph.MAX_MODEL_BYTES = {MAX_MODEL_BYTES:,} bytes are read)")


def check_model_size(path: str | os.PathLike) -> int:
    """The size in bytes of the model file ``path``, checked before it is read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it is empty, or larger than ``MAX_MODEL_BYTES``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not an ONNX model")
    if size > MAX_MODEL_BYTES:
        raise _too_large(path, size, "the file has")
    return size


def _external_bytes(model: onnx.ModelProto, folder: Path) -> int:
    """Bytes of the external data files ``model``'s tensors name (each file once; a missing or
    unsafe location is left to onnx, which refuses it when it loads)."""
    files = set()
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            files.add(external_data_helper.ExternalDataInfo(tensor).location)
    total = 0
    for location in files:
        try:
            total += (folder / location).stat().st_size
        except (OSError, ValueError):
            pass
    return total


def load_onnx(path: str | os.PathLike, *, data: bytes | None = None) -> onnx.ModelProto:
    """Load an ONNX model file; with ``data``, parse those bytes (the file's, already read and
    checked) instead of reading the file again. Its size, and then the size of the external
    data its tensors name, are checked against ``MAX_MODEL_BYTES`` before they are read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, larger than ``MAX_MODEL_BYTES`` with its external data,
            or is not an ONNX model (protobuf cannot parse it); the message names the file.
    """
    path = Path(path)
    if data is None:
        size = check_model_size(path)
    else:
        size = len(data)
        if size == 0:
            raise ValueError(f"{path} is empty (0 bytes), not an ONNX model")
        if size > MAX_MODEL_BYTES:
            raise _too_large(path, size, "the file has")
    try:
        model = onnx.load(str(path), load_external_data=False) if data is None else onnx.load_model_from_string(data)
    except Exception as error:  # google.protobuf DecodeError, onnx's own parse errors
        raise ValueError(f"{path} is not an ONNX model ({size:,} bytes that protobuf cannot parse as "
                         f"onnx.ModelProto: {type(error).__name__}: {error})") from None
    external = _external_bytes(model, path.parent)
    if size + external > MAX_MODEL_BYTES:
        raise _too_large(path, size + external, "with its external data, it has")
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as error:  # a location outside the model's folder, a missing or short file
        raise ValueError(f"{path}: cannot load its external data ({type(error).__name__}: {error})") from None
    return model


def model_file(model: object) -> Path:
    """The ``.onnx`` file of ``model``: an object with ``model_path`` (``SSDResNet34``) or a path.

    Raises ``TypeError`` for another type, ``FileNotFoundError`` when the file does not exist,
    ``IsADirectoryError`` for a folder.
    """
    if hasattr(model, "model_path"):
        model = model.model_path
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError("model must be a str or os.PathLike path of an .onnx file, or an object "
                        f"with a .model_path attribute (SSDResNet34), got {type(model).__name__}")
    path = Path(model).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an .onnx model file")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Map each tensor name to the node that outputs it."""
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Map each tensor name to the nodes that take it as an input (in graph order)."""
    result: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                result.setdefault(name, []).append(node)
    return result


def model_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The graph's single data input (graph inputs that are initializers do not count).

    Raises:
        ValueError: the graph has no data input or more than one.
    """
    init = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if len(inputs) != 1:
        raise ValueError(
            f"expected a graph with exactly one data input (the NCHW image), "
            f"got {len(inputs)}: {[i.name for i in inputs]}")
    return inputs[0]


def _dims(value: onnx.ValueInfoProto) -> Shape | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def infer_shapes(model: onnx.ModelProto, input_shape: Sequence[int] = INPUT_SHAPE,
                 names: Iterable[str] | None = None) -> dict[str, Shape]:
    """Shapes of the graph's tensors when its data input has ``input_shape``.

    Runs ``onnx.shape_inference`` on a weightless copy of the graph (large
    initializers become typed inputs), so it is cheap on an 80 MB model.

    Args:
        model: the model; not modified.
        input_shape: the concrete shape of the data input (default one
            1200x1200 image, NCHW).
        names: only return these tensors (default: all that were inferred).

    Returns:
        ``{tensor name: shape}``, each dimension an int or None when unknown.
        Tensors inference could not type are missing.

    Raises:
        ValueError: the graph does not have exactly one data input, or its
            declared static dimensions contradict ``input_shape``.
    """
    graph = model.graph
    data_input = model_input(graph)
    declared = _dims(data_input)
    if declared is not None:
        if len(declared) != len(input_shape) or any(
                d is not None and d != 0 and d != want for d, want in zip(declared, input_shape)):
            raise ValueError(
                f"the model input {data_input.name!r} has shape {list(declared)}, "
                f"which cannot take an input of shape {list(input_shape)}")
    elem = data_input.type.tensor_type.elem_type or TensorProto.FLOAT
    small, typed = [], [helper.make_tensor_value_info(data_input.name, elem, list(input_shape))]
    for t in graph.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) > _SMALL_INITIALIZER:
            typed.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            small.append(t)
    light_graph = helper.make_graph(list(graph.node), "shapes", typed, list(graph.output),
                                    initializer=small)
    light = helper.make_model(light_graph, opset_imports=list(model.opset_import),
                              ir_version=model.ir_version)
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    shapes: dict[str, Shape] = {}
    for value in [*typed, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(value)
        if dims is not None:
            shapes[value.name] = dims
    for t in small:
        shapes[t.name] = tuple(t.dims)
    if names is not None:
        wanted = set(names)
        shapes = {k: v for k, v in shapes.items() if k in wanted}
    return shapes
