"""Detections over HTTP equal in-process ``detect`` on the shared photos: the synthetic
SSD-ResNet34 (seed 0) on OpenVINO fp32 (one image per request in throughput mode, so batch
composition cannot change the numbers), through a standard V2 client (tritonclient.http) with
both input kinds. The synthetic model costs seconds per image here, so five images are run in
all (the warm-up included), on one engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import CAT, running_server
from ssd_resnet34 import engines
from ssd_resnet34.detector import SSDResNet34
from ssd_resnet34.serving import ServerSettings

tritonhttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")


@pytest.fixture(scope="module")
def synthetic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SSDResNet34.synthetic(0)


def _arrays(results):
    return (np.array([list(r.boundingbox) for r in results], np.float64).reshape(-1, 4),
            np.array([r.index for r in results], np.int64), np.array([r.score for r in results], np.float32))


def test_served_detections_equal_in_process_detect(synthetic, coco_photos, cat_bytes):
    """(/v1/detect's JSON equals ``detect`` exactly too: test_serving_protocol.py, on the tiny model.)"""
    photos = [CAT, coco_photos[0]]
    options = {"engine": "openvino", "precision": "fp32"}
    engine = engines.create(synthetic, mode=engines.THROUGHPUT, **options)
    expected = synthetic.detect([str(p) for p in photos], engine, batch_size=2)
    assert all(len(e) > 0 for e in expected)
    settings = ServerSettings(max_batch=2, max_delay_ms=50, max_body_bytes=32 * 2**20, request_timeout_s=300)
    with running_server(settings, synthetic, engine) as base:  # the same engine; the server closes it
        client = tritonhttp.InferenceServerClient(base.removeprefix("http://"), network_timeout=300)
        try:
            assert client.get_model_metadata("ssd-resnet34")["parameters"]["precision"] == "fp32"
            files = tritonhttp.InferInput("image_files", [2], "BYTES")
            files.set_data_from_numpy(np.array([p.read_bytes() for p in photos], dtype=object))
            by_files = client.infer("ssd-resnet34", [files])
            batch, contexts = synthetic.preprocess(str(photos[1]))
            images = tritonhttp.InferInput("images", list(batch.shape), "FP32")
            images.set_data_from_numpy(batch)
            sizes = tritonhttp.InferInput("image_sizes", [1, 2], "INT32")
            sizes.set_data_from_numpy(np.array([[contexts[0]["width"], contexts[0]["height"]]], np.int32))
            by_tensor = client.infer("ssd-resnet34", [images, sizes])
        finally:
            client.close()

    for row, want in enumerate(expected):
        boxes, labels, scores = _arrays(want)
        n = int(by_files.as_numpy("count")[row])
        assert n == len(want)
        np.testing.assert_array_equal(by_files.as_numpy("boxes")[row, :n], boxes.astype(np.float32))
        np.testing.assert_array_equal(by_files.as_numpy("labels")[row, :n], labels)
        np.testing.assert_array_equal(by_files.as_numpy("scores")[row, :n], scores)
    boxes, labels, scores = _arrays(expected[1])
    n = int(by_tensor.as_numpy("count")[0])
    assert n == len(expected[1])
    np.testing.assert_array_equal(by_tensor.as_numpy("boxes")[0, :n], boxes.astype(np.float32))
    np.testing.assert_array_equal(by_tensor.as_numpy("labels")[0, :n], labels)
    np.testing.assert_array_equal(by_tensor.as_numpy("scores")[0, :n], scores)
