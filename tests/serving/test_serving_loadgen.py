"""LoadGen over the network (``bench --sut-url``): LoadGen in this process, the queries answered
by a real server through the V2 endpoint. The served model is the lookup "oracle" network of
the first 5 annotated COCO photos (real onnxruntime, heads encoded from their ground truth), so
the AccuracyOnly mAP is meaningful and must equal the in-process bench's on the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
from _models import lookup_heads_model
from conftest import running_server

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from ssd_resnet34 import engines  # noqa: E402
from ssd_resnet34.cli import main  # noqa: E402
from ssd_resnet34.detector import SSDResNet34  # noqa: E402
from ssd_resnet34.evaluation.accuracy.coco_eval import load_ground_truth  # noqa: E402
from ssd_resnet34.evaluation.accuracy.ground_truth import list_images  # noqa: E402
from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth  # noqa: E402
from ssd_resnet34.image import preprocess  # noqa: E402
from ssd_resnet34.serving import ServerSettings  # noqa: E402


@pytest.fixture(scope="module")
def oracle_path(coco_annotations, tmp_path_factory) -> Path:
    gt = load_ground_truth(coco_annotations)
    images = list_images(gt, Path(coco_annotations).parent / "images", 5)
    batch, _ = preprocess([str(im.path) for im in images])
    heads = [encode_ground_truth(im.boxes, im.labels, seed=im.image_id) for im in images]
    return lookup_heads_model(tmp_path_factory.mktemp("oracle") / "oracle.onnx", batch, heads)


@pytest.fixture(scope="module")
def oracle_server(oracle_path):
    model = SSDResNet34(oracle_path)
    engine = engines.create(model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
    settings = ServerSettings(max_batch=4, max_delay_ms=2, max_body_bytes=128 * 2**20)
    with running_server(settings, model, engine) as base:
        yield base


def _map(output: str) -> float:
    return float(output.split("mAP=")[1].split()[0])


@pytest.mark.parametrize("scenario", ["Server", "Offline", "SingleStream"])
def test_accuracy_over_the_network_equals_in_process(oracle_server, oracle_path, coco_annotations, tmp_path, capsys,
                                                     scenario):
    common = ["--images", str(Path(coco_annotations).parent / "images"), "--annotations", str(coco_annotations),
              "--count", "5", "--scenario", scenario, "--mode", "AccuracyOnly", "--target-qps", "50",
              "--batch-size", "2"]
    assert main(["bench", "--model", str(oracle_path), "--no-verify", "--engine", "onnxruntime", "--precision",
                 "fp32", *common, "--out", str(tmp_path / "here")]) == 0
    here = capsys.readouterr().out
    assert main(["bench", "--sut-url", oracle_server, *common, "--out", str(tmp_path / "there")]) == 0
    there = capsys.readouterr().out
    assert _map(here) > 0.9 and _map(there) == _map(here)
    assert [line for line in there.splitlines() if "Average" in line] == \
        [line for line in here.splitlines() if "Average" in line]


def test_performance_over_the_network(oracle_server, coco_annotations, tmp_path, capsys):
    assert main(["bench", "--sut-url", oracle_server, "--images", str(Path(coco_annotations).parent / "images"),
                 "--count", "5", "--scenario", "Server", "--target-qps", "20", "--target-latency-ms", "2000",
                 "--short", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Scenario : Server" in out and "Result is :" in out


def test_unreachable_server_is_one_error(coco_annotations, tmp_path, capsys):
    from ssd_resnet34.serving import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    code = main(["bench", "--sut-url", f"http://127.0.0.1:{port}", "--images",
                 str(Path(coco_annotations).parent / "images"), "--count", "1", "--short", "--out", str(tmp_path)])
    assert code == 1
    assert "error:" in capsys.readouterr().err
    assert main(["bench", "--sut-url", "http://x:1", "--synthetic", "--images", ".", "--out", str(tmp_path)]) == 1
    assert "do not combine" in capsys.readouterr().err
