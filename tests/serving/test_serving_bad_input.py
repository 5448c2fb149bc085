"""Every class of bad input gets its 4xx with a message naming what was wrong and what was
expected, never a 5xx: not images, truncated images, decompression bombs, oversize and
compressed bodies, wrong tensor names/shapes/datatypes, malformed JSON, unknown models, bad
options, too many images, a full queue, a passed deadline."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import cv2
import httpx
import numpy as np
import pytest

INFER = "/v2/models/ssd-resnet34/infer"


def _png_header(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR is rewritten to declare width x height (CRC fixed): a
    decompression bomb's header."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _files_request(*images: bytes) -> dict:
    import base64

    return {"inputs": [{"name": "image_files", "shape": [len(images)], "datatype": "BYTES",
                        "data": [base64.b64encode(i).decode() for i in images]}]}


def _binary_request(header: dict, *blobs: bytes) -> tuple:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(len(text))}


def _expect(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, (reply.status_code, reply.text)
    message = reply.json()["error"]
    for word in words:
        assert word in message, (word, message)


@pytest.fixture(scope="module")
def http(tiny_server):
    with httpx.Client(base_url=tiny_server, timeout=30) as client:
        yield client


# -- images ---------------------------------------------------------------------------------
def test_not_an_image(http):
    _expect(http.post("/v1/detect", content=b"hello, not an image"), 400, "image", "expected an image file")
    _expect(http.post(INFER, json=_files_request(b"GIF89a but no")), 400, "image_files[0]")
    _expect(http.post("/v1/detect", content=b""), 400, "empty")


def test_truncated_image(http, cat_bytes):
    cut = cat_bytes[: len(cat_bytes) // 2]
    _expect(http.post("/v1/detect", content=cut), 400, "truncated JPEG")
    _expect(http.post(INFER, json=_files_request(cat_bytes, cut)), 400, "image_files[1]", "truncated")


def test_decompression_bombs_refused_from_the_header(http):
    _expect(http.post("/v1/detect", content=_png_header(5000, 5000)), 413, "25,000,000 pixels", "limit")
    _expect(http.post("/v1/detect", content=_png_header(100_000, 100_000)), 413, "10,000,000,000 pixels", "limit")
    _expect(http.post(INFER, json=_files_request(_png_header(5000, 5000))), 413, "image_files[0]")


# -- bodies ---------------------------------------------------------------------------------
def test_oversize_body(http):
    big = b"\0" * (20 * 2**20 + 1)
    _expect(http.post("/v1/detect", content=big), 413, "larger than the limit")

    def chunks():  # no Content-Length: counted while read
        for _ in range(21):
            yield b"\0" * 2**20

    _expect(http.post("/v1/detect", content=chunks()), 413, "larger than the limit")


def test_compressed_bodies(http, cat_bytes):
    bomb = gzip.compress(b"\0" * (64 * 2**20))  # 64 KB that inflate to 64 MB
    _expect(http.post("/v1/detect", content=bomb, headers={"content-encoding": "gzip"}), 413, "limit")
    _expect(http.post("/v1/detect", content=b"not gzip", headers={"content-encoding": "gzip"}), 400, "gzip")
    _expect(http.post("/v1/detect", content=cat_bytes, headers={"content-encoding": "br"}), 415, "gzip")
    good = http.post("/v1/detect", content=gzip.compress(cat_bytes), headers={"content-encoding": "gzip"})
    assert good.status_code == 200


# -- tensors --------------------------------------------------------------------------------
def test_wrong_tensor_names_datatypes_shapes(http):
    _expect(http.post(INFER, json={"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}),
            400, "unknown input 'image'", "image_files", "images")
    _expect(http.post(INFER, json={"inputs": [{"name": "image_files", "shape": [1], "datatype": "FP32",
                                               "data": [1.0]}]}), 400, "expected BYTES")
    _expect(http.post(INFER, json={"inputs": [{"name": "image_files", "shape": [1, 2], "datatype": "BYTES",
                                               "data": ["AA==", "AA=="]}]}), 400, "expected [N] or [N, 1]")
    _expect(http.post(INFER, json={"inputs": [{"name": "images", "shape": [1, 3, 2, 2], "datatype": "FP32",
                                               "data": [0.0] * 12}]}), 400, "[N, 3, 1200, 1200]")
    _expect(http.post(INFER, json={"inputs": [{"name": "images", "shape": [1, 3, 2, 2], "datatype": "INT8",
                                               "data": [0] * 12}]}), 400, "expected FP32")
    _expect(http.post(INFER, json={"inputs": [{"name": "image_files", "shape": [2], "datatype": "BYTES",
                                               "data": ["AA=="]}]}), 400, "1 BYTES elements for shape with 2")
    _expect(http.post(INFER, json={"inputs": [{"name": "image_files", "shape": [1], "datatype": "BYTES",
                                               "data": ["***"]}]}), 400, "base64")
    _expect(http.post(INFER, json={"inputs": [{"name": "image_files", "shape": [1], "datatype": "STRING",
                                               "data": ["AA=="]}]}), 400, "unknown datatype")


def test_preprocessed_tensor_checks(http):
    pixels = np.zeros((1, 3, 1200, 1200), np.float32)
    tensor = {"name": "images", "shape": [1, 3, 1200, 1200], "datatype": "FP32",
              "parameters": {"binary_data_size": pixels.nbytes}}
    body, headers = _binary_request({"inputs": [tensor]}, pixels.tobytes())
    _expect(http.post(INFER, content=body, headers=headers), 400, "needs 'image_sizes'")
    sizes = {"name": "image_sizes", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}
    body, headers = _binary_request({"inputs": [tensor, sizes]}, pixels.tobytes())
    _expect(http.post(INFER, content=body, headers=headers), 400, "expected [1, 2]")
    short = dict(tensor, parameters={"binary_data_size": 100})
    body, headers = _binary_request({"inputs": [short]}, b"\0" * 100)
    _expect(http.post(INFER, content=body, headers=headers), 400, "100 binary bytes", str(pixels.nbytes))
    pixels[0, 0, 0, 0] = np.nan
    sizes = {"name": "image_sizes", "shape": [1, 2], "datatype": "INT32", "data": [640, 480]}
    body, headers = _binary_request({"inputs": [tensor, sizes]}, pixels.tobytes())
    _expect(http.post(INFER, content=body, headers=headers), 400, "NaN")


def test_binary_extension_framing(http):
    header = {"inputs": [{"name": "image_files", "shape": [1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": 8}}]}
    body, headers = _binary_request(header, struct.pack("<I", 100) + b"abcd")
    _expect(http.post(INFER, content=body, headers=headers), 400, "declares 100 bytes")
    body, headers = _binary_request(header, struct.pack("<I", 4) + b"abcd", b"extra")
    _expect(http.post(INFER, content=body, headers=headers), 400, "belong to no input")
    _expect(http.post(INFER, content=b"{}", headers={"Inference-Header-Content-Length": "99"}), 400,
            "Inference-Header-Content-Length")
    _expect(http.post(INFER, content=b"{}", headers={"Inference-Header-Content-Length": "x"}), 400, "integer")


def test_malformed_json(http):
    _expect(http.post(INFER, content=b'{"inputs": [', headers={"content-type": "application/json"}), 400,
            "malformed JSON")
    _expect(http.post(INFER, json=[1, 2]), 400, "JSON object")
    _expect(http.post(INFER, json={"inputs": []}), 400, "non-empty list")
    _expect(http.post(INFER, content=b"\xff\xfe\x00"), 400, "malformed JSON")


def test_unknown_models_versions_outputs_routes(http):
    _expect(http.get("/v2/models/yolo"), 404, "unknown model 'yolo'", "ssd-resnet34")
    _expect(http.post("/v2/models/yolo/infer", json=_files_request(b"x")), 404, "unknown model")
    _expect(http.get("/v2/models/ssd-resnet34/versions/7"), 404, "unknown version")
    _expect(http.post(INFER, json=dict(_files_request(b"x"), outputs=[{"name": "masks"}])), 400,
            "unknown output 'masks'", "boxes")
    _expect(http.get("/etc/passwd"), 404, "Not Found")
    assert http.get("/v2/models/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_bad_options(http, cat_bytes):
    _expect(http.post("/v1/detect", params={"score_threshold": 2}, content=cat_bytes), 400, "score_threshold")
    _expect(http.post("/v1/detect", params={"classes": "unicorn"}, content=cat_bytes), 400, "unicorn")
    _expect(http.post("/v1/detect", params={"max_detections": 0}, content=cat_bytes), 400, "max_detections")
    _expect(http.post("/v1/detect", params={"draw": "maybe"}, content=cat_bytes), 400, "draw")
    _expect(http.post(INFER, json=dict(_files_request(cat_bytes), parameters={"score_threshold": "high"})), 400,
            "score_threshold")
    _expect(http.post("/v1/detect", content=b"--x\r\n\r\n", headers={"content-type": "multipart/form-data; boundary=x"}),
            400, "multipart")


def test_too_many_images_full_queue_and_deadline(http, cat_bytes):
    _expect(http.post(INFER, json=_files_request(*[cat_bytes] * 9)), 413, "9 images", "limit is 8")
    full = http.post(INFER, json=_files_request(*[cat_bytes] * 5))  # more than --max-queue 4 can ever hold
    _expect(full, 503, "busy")
    assert full.headers["retry-after"] == "1"
    late = http.post(INFER, json=dict(_files_request(cat_bytes), parameters={"timeout": 1}))  # 1 us
    _expect(late, 504, "deadline")
    assert http.post(INFER, json=_files_request(cat_bytes)).status_code == 200  # and the server goes on
