"""The open inference protocol (KServe V2) over HTTP: request parsing and response encoding.

Requests are JSON, or JSON followed by binary tensors (the binary tensor extension: the JSON
header's length in ``Inference-Header-Content-Length``, each binary input's size in its
``parameters.binary_data_size``, the tensors in input order after the header). Tensors are
decoded into numpy arrays; ``BYTES`` tensors into lists of ``bytes`` (binary: each element a
4-byte little-endian length and its bytes; JSON: each element a base64 string, since image files
are not UTF-8 text). Every problem raises :class:`~ssd_resnet34.serving.errors.HTTPError` 400
naming what was wrong and what was expected.

Responses put each output in JSON (``data``, row-major, flattened) or, when asked
(``parameters.binary_data`` on a requested output, or ``binary_data_output`` on the request, as
tritonclient does), as binary data after the JSON header.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import HTTPError

__all__ = ["DATATYPES", "InferRequest", "Tensor", "encode_response", "parse_request"]

#: V2 datatypes and their little-endian numpy dtypes (``BYTES`` has none).
DATATYPES: Dict[str, Optional[str]] = {
    "BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BYTES": None,
}
_NUMPY_TO_V2 = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}


@dataclass
class Tensor:
    """One input tensor: ``name``, ``datatype``, ``shape``, and ``data``: a numpy array of that
    shape, or for ``BYTES`` a flat list of ``bytes`` (row-major)."""

    name: str
    datatype: str
    shape: Tuple[int, ...]
    data: Union[np.ndarray, List[bytes]]


@dataclass
class InferRequest:
    """A parsed inference request: ``inputs`` by name, the ``outputs`` asked for (None: all) with
    whether each is wanted binary, the request ``parameters`` and its ``id``."""

    inputs: Dict[str, Tensor]
    outputs: Optional[Dict[str, bool]]
    parameters: Dict[str, Any] = field(default_factory=dict)
    id: Optional[str] = None

    @property
    def binary_output(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


def _bad(message: str) -> HTTPError:
    return HTTPError(400, message)


def _header_length(value: Optional[str], body_size: int) -> Optional[int]:
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        raise _bad(f"Inference-Header-Content-Length must be an integer, got {value!r}") from None
    if not 0 < length <= body_size:
        raise _bad(f"Inference-Header-Content-Length is {length}; expected 1..{body_size} (the body's size)")
    return length


def _load_json(data: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise _bad(f"malformed JSON in the inference request: {error}") from None
    if not isinstance(value, dict):
        raise _bad(f"the inference request must be a JSON object, got {type(value).__name__}")
    return value


def _shape(value: Any, where: str) -> Tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise _bad(f"{where}.shape must be a list of integers >= 0, got {value!r}")
    if len(value) > 8:
        raise _bad(f"{where}.shape has {len(value)} dimensions; expected at most 8")
    return tuple(value)


def _count(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _split_bytes(raw: memoryview, count: int, where: str) -> List[bytes]:
    """A binary ``BYTES`` tensor: ``count`` elements, each a uint32 LE length and its bytes."""
    items, offset = [], 0
    for k in range(count):
        if offset + 4 > len(raw):
            raise _bad(f"{where}: binary BYTES data ends in element {k} of {count} (each element is a 4-byte "
                       "little-endian length, then its bytes)")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad(f"{where}: element {k} declares {length} bytes but only {len(raw) - offset} remain")
        items.append(bytes(raw[offset:offset + length]))
        offset += length
    if offset != len(raw):
        raise _bad(f"{where}: {len(raw) - offset} bytes left after its {count} BYTES elements")
    return items


def _flatten(data: Any, where: str) -> List[Any]:
    if not isinstance(data, list):
        raise _bad(f"{where}.data must be a list (flat or nested, row-major), got {type(data).__name__}")
    flat: List[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 8:
                    raise _bad(f"{where}.data is nested more than 8 levels deep")
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_bytes(data: Any, count: int, where: str) -> List[bytes]:
    items = _flatten(data, where)
    if len(items) != count:
        raise _bad(f"{where}: {len(items)} BYTES elements for shape with {count}")
    out = []
    for k, item in enumerate(items):
        if not isinstance(item, str):
            raise _bad(f"{where}.data[{k}]: BYTES in JSON must be base64 strings, got {type(item).__name__}")
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise _bad(f"{where}.data[{k}]: not valid base64 (image files in JSON are base64 strings; or send "
                       "them binary, with the binary tensor extension)") from None
    return out


def _json_numbers(data: Any, dtype: str, shape: Tuple[int, ...], where: str) -> np.ndarray:
    items = _flatten(data, where)
    count = _count(shape)
    if len(items) != count:
        raise _bad(f"{where}: {len(items)} values for shape {list(shape)} ({count} values)")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items) and dtype != "|b1":
        raise _bad(f"{where}.data must hold numbers only")
    try:
        return np.asarray(items, dtype=np.dtype(dtype)).reshape(shape)
    except (ValueError, OverflowError, TypeError) as error:
        raise _bad(f"{where}.data cannot be read as {dtype}: {error}") from None


def _tensor(spec: Any, position: int, binary: memoryview, offset: int) -> Tuple[Tensor, int]:
    where = f"inputs[{position}]"
    if not isinstance(spec, dict):
        raise _bad(f"{where} must be an object with name, shape, datatype and data, got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.name must be a non-empty string")
    where = f"input {name!r}"
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise _bad(f"{where}: unknown datatype {datatype!r}; expected one of {sorted(DATATYPES)}")
    shape = _shape(spec.get("shape"), where)
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad(f"{where}.parameters must be an object")
    size = parameters.get("binary_data_size")
    count = _count(shape)
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"{where}: binary_data_size must be an integer >= 0, got {size!r}")
        if offset + size > len(binary):
            raise _bad(f"{where}: binary_data_size {size} but only {len(binary) - offset} binary bytes remain "
                       "after the JSON header")
        raw = binary[offset:offset + size]
        offset += size
        if datatype == "BYTES":
            return Tensor(name, datatype, shape, _split_bytes(raw, count, where)), offset
        dtype = np.dtype(DATATYPES[datatype])
        if size != count * dtype.itemsize:
            raise _bad(f"{where}: {size} binary bytes for shape {list(shape)} of {datatype}; expected "
                       f"{count * dtype.itemsize}")
        return Tensor(name, datatype, shape, np.frombuffer(raw, dtype=dtype).reshape(shape)), offset
    if "data" not in spec:
        raise _bad(f"{where} has neither data nor parameters.binary_data_size")
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, _json_bytes(spec["data"], count, where)), offset
    return Tensor(name, datatype, shape, _json_numbers(spec["data"], DATATYPES[datatype], shape, where)), offset


def _outputs(value: Any) -> Optional[Dict[str, bool]]:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad("outputs must be a list of objects with a name")
    wanted: Dict[str, bool] = {}
    for k, spec in enumerate(value):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad(f"outputs[{k}] must be an object with a string name")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _bad(f"outputs[{k}].parameters must be an object")
        wanted[spec["name"]] = bool(parameters.get("binary_data", False))
    return wanted


def parse_request(body: bytes, header_length: Optional[str]) -> InferRequest:
    """Parse an inference request body; ``header_length``: the ``Inference-Header-Content-Length``
    header (None: the body is all JSON). Raises ``HTTPError`` 400 naming what is wrong."""
    length = _header_length(header_length, len(body))
    view = memoryview(body)
    header = _load_json(body[:length] if length is not None else body)
    binary = view[length:] if length is not None else memoryview(b"")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("the inference request needs inputs: a non-empty list of tensors")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad("parameters must be an object")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("id must be a string")
    tensors: Dict[str, Tensor] = {}
    offset = 0
    for position, spec in enumerate(inputs):
        tensor, offset = _tensor(spec, position, binary, offset)
        if tensor.name in tensors:
            raise _bad(f"input {tensor.name!r} is given twice")
        tensors[tensor.name] = tensor
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes after the JSON header belong to no input (binary_data_size)")
    return InferRequest(tensors, _outputs(header.get("outputs")), parameters, request_id)


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Sequence[Tuple[str, np.ndarray]],
    binary: Dict[str, bool],
    request_id: Optional[str] = None,
) -> Tuple[bytes, Dict[str, str]]:
    """The response body and its headers: ``outputs`` (name, array) in order, each in JSON or
    binary (``binary[name]``). Binary data follows the JSON header, whose length is then in
    ``Inference-Header-Content-Length``."""
    entries, blobs = [], []
    for name, array in outputs:
        entry: Dict[str, Any] = {"name": name, "datatype": _NUMPY_TO_V2[array.dtype], "shape": list(array.shape)}
        if binary.get(name, False):
            blob = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    document: Dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        document["id"] = request_id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {"content-type": "application/octet-stream",
                                        "inference-header-content-length": str(len(header))}
