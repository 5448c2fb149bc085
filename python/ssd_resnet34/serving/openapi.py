"""Request bodies in the OpenAPI document (``/openapi.json``): the routes read their bodies
themselves (size and time limits, the binary extension), so the schemas are declared here."""

from __future__ import annotations

from typing import Any, Dict

__all__ = ["DETECT_BODY", "INFER_BODY"]

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BYTES", "FP32", "INT32", "INT64", "FP64", "UINT8", "BOOL"]},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        "data": {"type": "array", "items": {}},
    },
}

INFER_BODY: Dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object", "properties": {
                        "score_threshold": {"type": "number"}, "max_detections": {"type": "integer"},
                        "classes": {"type": "string"}, "binary_data_output": {"type": "boolean"},
                        "timeout": {"type": "integer"}}},
                    "inputs": {"type": "array", "items": _TENSOR},
                    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}},
                },
            }},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

DETECT_BODY: Dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "image": {"type": "string", "format": "binary"}}}},
        },
    }
}
