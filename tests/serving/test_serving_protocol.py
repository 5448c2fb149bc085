"""The open inference protocol with a standard client (tritonclient.http, unchanged) and the
/v1/detect endpoint with httpx, against a real server of the tiny model: metadata, both input
kinds, JSON and binary outputs, and the same detections as in-process ``detect``."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest
from ssd_resnet34 import engines
from ssd_resnet34.coco import COCO_CATEGORY_IDS, COCO_CLASSES

tritonhttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")

MODEL = "ssd-resnet34"


@pytest.fixture(scope="module")
def client(tiny_server):
    client = tritonhttp.InferenceServerClient(tiny_server.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def expected(tiny_model, cat_bytes):
    """In-process ``detect`` of cat.jpg on the same model (a real engine of its own)."""
    with engines.create(tiny_model, engine="onnxruntime", precision="fp32") as engine:
        return tiny_model.detect([cat_bytes], engine)[0]


def _as_arrays(results):
    boxes = np.array([list(r.boundingbox) for r in results], np.float64).reshape(-1, 4)
    return boxes, np.array([r.index for r in results]), np.array([r.score for r in results], np.float32)


def test_health_and_metadata(client, tiny_server):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert {(i["name"], i["datatype"]) for i in meta["inputs"]} == {
        ("image_files", "BYTES"), ("images", "FP32"), ("image_sizes", "INT32")}
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "labels", "category_ids", "scores", "count"]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert httpx.get(f"{tiny_server}/v2/models/{MODEL}/versions/1").status_code == 200


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-outputs", "json-outputs"])
def test_infer_image_files_equals_detect(client, cat_bytes, expected, binary_out):
    files = tritonhttp.InferInput("image_files", [2], "BYTES")
    files.set_data_from_numpy(np.array([cat_bytes, cat_bytes], dtype=object))
    outputs = [tritonhttp.InferRequestedOutput(n, binary_data=binary_out)
               for n in ("boxes", "labels", "category_ids", "scores", "count")]
    result = client.infer(MODEL, [files], outputs=outputs)
    count = result.as_numpy("count")
    boxes, labels, scores = _as_arrays(expected)
    assert count.tolist() == [len(expected)] * 2
    for row in range(2):
        np.testing.assert_array_equal(result.as_numpy("boxes")[row, :count[row]], boxes.astype(np.float32))
        np.testing.assert_array_equal(result.as_numpy("labels")[row, :count[row]], labels)
        np.testing.assert_array_equal(result.as_numpy("scores")[row, :count[row]], scores)
        ids = result.as_numpy("category_ids")[row, :count[row]]
        assert ids.tolist() == [COCO_CATEGORY_IDS[label] for label in labels]


def test_infer_preprocessed_tensor_equals_detect(client, tiny_model, cat_bytes, expected):
    batch, contexts = tiny_model.preprocess(cat_bytes)
    images = tritonhttp.InferInput("images", list(batch.shape), "FP32")
    images.set_data_from_numpy(batch)
    sizes = tritonhttp.InferInput("image_sizes", [1, 2], "INT32")
    sizes.set_data_from_numpy(np.array([[contexts[0]["width"], contexts[0]["height"]]], np.int32))
    result = client.infer(MODEL, [images, sizes])  # no outputs named: all, binary (tritonclient's default)
    boxes, labels, scores = _as_arrays(expected)
    (n,) = result.as_numpy("count")
    np.testing.assert_array_equal(result.as_numpy("boxes")[0, :n], boxes.astype(np.float32))
    np.testing.assert_array_equal(result.as_numpy("labels")[0, :n], labels)
    np.testing.assert_array_equal(result.as_numpy("scores")[0, :n], scores)


def test_padding_convention(client, cat_bytes):
    """Rows past count[i] are zeros: a gray image with few detections next to the cat."""
    gray = cv2.imencode(".png", np.full((64, 64, 3), 127, np.uint8))[1].tobytes()
    files = tritonhttp.InferInput("image_files", [2, 1], "BYTES")
    files.set_data_from_numpy(np.array([[cat_bytes], [gray]], dtype=object))
    result = client.infer(MODEL, [files], parameters={"max_detections": 3})
    count = result.as_numpy("count")
    k = int(count.max())
    assert result.as_numpy("boxes").shape == (2, k, 4) and count[0] == 3
    for name in ("boxes", "labels", "category_ids", "scores"):
        array = result.as_numpy(name)
        assert not array[1, count[1]:].any(), name


def test_json_request_with_base64_and_request_id(tiny_server, cat_bytes, expected):
    body = {"id": "r-1", "inputs": [{"name": "image_files", "shape": [1], "datatype": "BYTES",
                                     "data": [base64.b64encode(cat_bytes).decode()]}],
            "outputs": [{"name": "count"}, {"name": "scores"}]}
    reply = httpx.post(f"{tiny_server}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["id"] == "r-1" and [o["name"] for o in answer["outputs"]] == ["count", "scores"]
    assert answer["outputs"][0]["data"] == [len(expected)]
    assert answer["outputs"][1]["data"][:3] == [np.float32(r.score).item() for r in expected[:3]]


def test_postprocess_options_match_a_configured_postprocessor(client, tiny_model, cat_bytes):
    from ssd_resnet34 import postprocess

    files = tritonhttp.InferInput("image_files", [1], "BYTES")
    files.set_data_from_numpy(np.array([cat_bytes], dtype=object))
    result = client.infer(MODEL, [files], parameters={"score_threshold": 0.3, "classes": "sheep,cat",
                                                      "max_detections": 5})
    configured = postprocess.create("native", score_threshold=0.3, classes=["sheep", "cat"], max_detections=5)
    batch, _ = tiny_model.preprocess(cat_bytes)
    with engines.create(tiny_model, engine="onnxruntime", precision="fp32") as engine:
        (found,) = configured.decode(engine.run(batch))
    n = int(result.as_numpy("count")[0])
    assert n == len(found)
    np.testing.assert_array_equal(result.as_numpy("labels")[0, :n], found.labels)
    np.testing.assert_array_equal(result.as_numpy("scores")[0, :n], found.scores)


def test_v1_detect_json_multipart_and_drawing(tiny_server, cat_bytes, expected):
    url = f"{tiny_server}/v1/detect"
    raw = httpx.post(url, content=cat_bytes, headers={"content-type": "image/jpeg"}, timeout=30)
    form = httpx.post(url, files={"image": ("cat.jpg", cat_bytes, "image/jpeg")}, timeout=30)
    assert raw.status_code == form.status_code == 200, (raw.text, form.text)
    assert raw.json() == form.json()
    answer = raw.json()
    assert (answer["width"], answer["height"], answer["count"]) == (1024, 768, len(expected))
    for got, want in zip(answer["detections"], expected):
        assert got["box"] == list(want.boundingbox) and got["score"] == want.score
        assert got["name"] == COCO_CLASSES[want.index] == want.label
        assert got["category_id"] == COCO_CATEGORY_IDS[want.index] and got["label"] == want.index
    limited = httpx.post(url, params={"score_threshold": 0.5, "max_detections": 2}, content=cat_bytes, timeout=30)
    assert limited.status_code == 200 and limited.json()["count"] <= 2
    assert all(d["score"] > 0.5 for d in limited.json()["detections"])
    drawn = httpx.post(url, params={"draw": 1}, content=cat_bytes, timeout=30)
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (768, 1024, 3)
    png = httpx.post(url, content=cat_bytes, headers={"accept": "image/png"}, timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
