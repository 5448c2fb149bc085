"""onnxruntime sessions over SSD-ResNet34 models (run on the synthetic model, whose
detections are meaningless: random weights); the batching arithmetic of both engines on a tiny
stand-in with the 12 head shapes."""
from __future__ import annotations

import types

import numpy as np
import onnxruntime as ort
import pytest
from ssd_resnet34.engines import Choice, Outputs, create, resolve
from ssd_resnet34.engines.onnxruntime import DEVICES, probe, providers_for
from ssd_resnet34.engines.onnxruntime import OnnxRuntimeEngine as Session
from ssd_resnet34.layout import HEAD_SHAPES

pytest_plugins = ["_fixtures"]  # shared session-scoped synthetic models, sessions, images


def test_heads_session_attributes(heads_session, synthetic_heads_path):
    assert heads_session.is_heads and heads_session.batch_size is None  # dynamic batch
    assert (heads_session.name, heads_session.device, heads_session.precision) == ("onnxruntime", "cpu", "fp32")
    assert heads_session.mode == "latency" and heads_session.requests == 1
    assert heads_session.input_name == "image"
    assert heads_session.providers == ["CPUExecutionProvider"]
    assert heads_session.model_path == synthetic_heads_path
    assert "CPUExecutionProvider" in repr(heads_session)


def test_run_returns_outputs_with_numpy(heads_reference):
    """``run`` returns the 12 arrays as a list that also has the model card's ``.numpy()``."""
    assert isinstance(heads_reference, Outputs) and isinstance(heads_reference, list)
    arrays = heads_reference.numpy()
    assert type(arrays) is list and len(arrays) == 12
    assert all(a is b for a, b in zip(arrays, heads_reference))  # the same arrays, not copies
    first, *_ = heads_reference  # unpacks and indexes as a list
    assert first is heads_reference[0] and heads_reference[-1].shape == (1, *HEAD_SHAPES[-1])


def test_run_batch_1_and_2(heads_session, heads_reference, test_images):
    assert [h.shape for h in heads_reference] == [(1, *s) for s in HEAD_SHAPES]
    batch = heads_session.run(test_images[::-1])  # image 1, then image 0
    for got, want, shape in zip(batch, heads_reference, HEAD_SHAPES):
        assert got.shape == (2, *shape) and got.dtype == np.float32
        np.testing.assert_allclose(got[1:], want, rtol=1e-4, atol=1e-4)
        assert not np.allclose(got[0], want[0], atol=1e-3)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        ([[0.0]], TypeError, r"numpy.ndarray of shape \(N, 3, 1200, 1200\) float32.*got list"),
        (np.zeros((1, 3, 1200, 1200), np.float64), TypeError, r"float32 .*got dtype float64"),
        (np.zeros((1, 3, 1200, 1200), np.uint8), TypeError, r"float32 .*got dtype uint8"),
        (np.zeros((3, 1200, 1200), np.float32), ValueError, r"shape \(N, 3, 1200, 1200\).*got \(3, 1200, 1200\)"),
        (np.zeros((1, 3, 600, 600), np.float32), ValueError, r"shape \(N, 3, 1200, 1200\).*got \(1, 3, 600, 600\)"),
        (np.zeros((1, 1200, 1200, 3), np.float32), ValueError, r"shape \(N, 3, 1200, 1200\)"),
        (np.zeros((0, 3, 1200, 1200), np.float32), ValueError, r"N >= 1, got \(0, 3, 1200, 1200\)"),
    ],
    ids=["list", "float64", "uint8", "rank3", "600px", "nhwc", "empty"],
)
def test_bad_images(heads_session, images, error, message):
    with pytest.raises(error, match=message):
        heads_session.run(images)


def test_full_graph_takes_one_image_per_call(full_session, test_images):
    assert not full_session.is_heads and full_session.batch_size == 1
    with pytest.raises(ValueError, match=r"exactly 1 image\(s\) per call.*not the 12 SSD heads"):
        full_session.run(test_images)


def test_device_choice():
    """The providers of each resolved device; the registry (not the engine) refuses a device
    whose provider this onnxruntime lacks, or an unknown one."""
    cpu = "CPUExecutionProvider"
    assert DEVICES == ("cpu", "cuda", "tensorrt")
    assert providers_for("cpu", [cpu]) == [cpu]
    assert providers_for("auto", [cpu]) == [cpu]
    assert providers_for("auto", ["CUDAExecutionProvider", cpu]) == ["CUDAExecutionProvider", cpu]
    assert providers_for("tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]

    def refused(device, providers):
        return resolve(device, "onnxruntime", machine={"openvino": None, "onnxruntime": probe(providers)})

    assert refused("AUTO", ["CUDAExecutionProvider", cpu]) == ("onnxruntime", "cuda", "fp16")
    with pytest.raises(ValueError, match=r"needs onnxruntime's CUDAExecutionProvider.*onnxruntime providers "
                                         r"\['CPUExecutionProvider'\]"):
        refused("cuda", [cpu])
    with pytest.raises(ValueError, match="TensorrtExecutionProvider"):
        refused("tensorrt", ["CUDAExecutionProvider", cpu])
    with pytest.raises(ValueError, match=r"unknown device 'tpu': expected one of \('auto', 'cpu', 'gpu', 'npu', "
                                         r"'cuda', 'tensorrt'\)"):
        refused("tpu", [cpu])
    with pytest.raises(TypeError, match="device must be a str"):
        refused(0, [cpu])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_asking_for_a_missing_provider_lists_the_available_ones(synthetic_heads_path):
    with pytest.raises(ValueError, match=r"needs onnxruntime's CUDAExecutionProvider .*onnxruntime providers "
                                         r"\[.*'CPUExecutionProvider'"):
        create(synthetic_heads_path, device="cuda")


def test_create_arguments(synthetic_heads_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        create(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match=r"\.model_path attribute"):
        create(42)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        create(synthetic_heads_path, threads=0)
    with pytest.raises(TypeError, match="threads must be a positive int"):
        create(synthetic_heads_path, threads="2")
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        create(synthetic_heads_path, max_batch=0)


def test_device_none_is_the_models_device(synthetic_heads_path):
    """``create(model)`` opens on ``model.device`` (``SSDResNet34(device=...)``), as detector.py says."""
    on_cpu = types.SimpleNamespace(model_path=synthetic_heads_path, device="cpu")
    with create(on_cpu, engine="onnxruntime") as engine:
        assert engine.device == "cpu"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match=r"device 'cuda' is not available"):
            create(types.SimpleNamespace(model_path=synthetic_heads_path, device="cuda"))
    with pytest.raises(TypeError, match="device must be a str"):  # a path has no device: "auto"; a bad one is named
        create(types.SimpleNamespace(model_path=synthetic_heads_path, device=3))


def test_model_object_threads_and_close(synthetic_heads_path):
    model = types.SimpleNamespace(model_path=synthetic_heads_path)  # what SSDResNet34 provides
    with create(model, device="auto", engine="onnxruntime", threads=1) as session:
        assert isinstance(session, Session) and session.providers[-1] == "CPUExecutionProvider"
        assert not session.closed
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        session.run(np.zeros((1, 3, 1200, 1200), np.float32))
    session.close()  # idempotent


# A cheap stand-in with the 12 head shapes: per head a 1x1 Conv with a stride that maps
# 1200x1200 to F x F. It checks batching arithmetic exactly, at a tiny cost.
_STRIDES = {50: 24, 25: 48, 13: 93, 7: 172, 3: 400}


def _tiny_heads(batch) -> tuple[bytes, list[tuple[np.ndarray, np.ndarray, int]]]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    nodes, inits, outputs, params = [], [], [], []
    for k, (channels, size, _) in enumerate(HEAD_SHAPES):
        w = rng.standard_normal((channels, 3, 1, 1), dtype=np.float32)
        b = rng.standard_normal(channels, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        stride = _STRIDES[size]
        nodes.append(helper.make_node("Conv", ["image", f"w{k}", f"b{k}"], [f"head{k}"],
                                      kernel_shape=[1, 1], strides=[stride, stride]))
        outputs.append(helper.make_tensor_value_info(f"head{k}", TensorProto.FLOAT, [batch, channels, size, size]))
        params.append((w[:, :, 0, 0], b, stride))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             [batch, 3, 1200, 1200])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString(), params


def _expected(images, params):
    return [np.einsum("oc,nchw->nohw", w, images[:, :, ::s, ::s]) + b[None, :, None, None] for w, b, s in params]


@pytest.mark.parametrize(("batch", "max_batch", "n"), [(2, None, 3), (2, None, 1), ("N", 2, 3), ("N", None, 3)])
def test_chunking_and_padding(tmp_path, batch, max_batch, n):
    data, params = _tiny_heads(batch)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    images = np.random.default_rng(n).standard_normal((n, 3, 1200, 1200), dtype=np.float32)
    with create(path, engine="onnxruntime", max_batch=max_batch) as session:
        assert session.is_heads and session.batch_size == (batch if isinstance(batch, int) else None)
        heads = session.run(images)
    for got, want, shape in zip(heads, _expected(images, params), HEAD_SHAPES):
        assert got.shape == (n, *shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_non_contiguous_images_are_accepted(tmp_path):
    data, params = _tiny_heads("N")
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    images = np.random.default_rng(0).standard_normal((2, 3, 1200, 1200), dtype=np.float32)[::-1]
    assert not images.flags.c_contiguous
    with create(path, engine="onnxruntime") as session:
        heads = session.run(images)
    np.testing.assert_allclose(heads[0], _expected(images, params)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["latency", "throughput"])
@pytest.mark.parametrize("batch", [2, "N"])
def test_openvino_runs_each_image_as_a_request(tmp_path, mode, batch):
    """OpenVINO compiles batch 1 and runs N images as N requests (in parallel in throughput mode);
    rows come back in order, through run and through submit with and without ``then``."""
    pytest.importorskip("openvino")
    data, params = _tiny_heads(batch)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    images = np.random.default_rng(3).standard_normal((3, 3, 1200, 1200), dtype=np.float32)[::-1]  # not contiguous
    want = _expected(images, params)
    with create(path, engine="openvino", precision="fp32", mode=mode) as engine:
        assert (engine.name, engine.device, engine.precision, engine.mode) == ("openvino", "cpu", "fp32", mode)
        assert engine.requests >= 1 and (mode == "throughput" or engine.requests == 1)
        heads = engine.run(images)
        assert isinstance(heads, Outputs)
        copies = engine.submit(images[:2]).result()
        assert isinstance(copies, Outputs)  # submit without then: a copy, the same type as run
        sums = [engine.submit(images[i:i + 1], then=lambda h: [float(t.sum()) for t in h]) for i in range(3)]
        sums = [future.result() for future in sums]
    for got, expected, shape in zip(heads, want, HEAD_SHAPES):
        assert got.shape == (3, *shape) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for got, expected in zip(copies, want):
        np.testing.assert_allclose(got, expected[:2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sums, [[float(w[i].sum()) for w in want] for i in range(3)], rtol=1e-3)


def test_fp16_copy_for_cuda(synthetic_heads_path, heads_reference, test_images, tmp_path, monkeypatch):
    """The float16 copy CUDA runs (``precision="fp16"`` on ``cuda``): a valid model with float32 input and
    outputs; checked here on the CPU provider."""
    import onnx

    from ssd_resnet34.evaluation.accuracy.compare import sqnr_db
    from ssd_resnet34.model.fp16 import fp16_model_path

    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path))
    path = fp16_model_path(synthetic_heads_path)
    assert path.parent == tmp_path / "fp16" and fp16_model_path(synthetic_heads_path) == path  # cached
    half = onnx.load(str(path))
    onnx.checker.check_model(half)
    assert {t.data_type for t in half.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    assert [v.type.tensor_type.elem_type for v in [*half.graph.input, *half.graph.output]] == [1] * 13
    with Session(path, Choice("onnxruntime", "cpu", "fp16")) as engine:
        assert engine.precision == "fp16" and engine.is_heads
        assert min(sqnr_db(heads_reference, engine.run(test_images[:1]))) >= 30


@pytest.mark.parametrize("threads", [None, 1, 2, 5])
def test_onnxruntime_throughput_mode_shares_the_threads_among_its_requests(synthetic_heads_path, threads):
    """``threads`` is the total in throughput mode, as for OpenVINO: one request per core, at most
    one per thread, and requests x threads per request never more than asked (a Ray actor given
    2 CPUs once ran 2 requests of 2 threads each), nor more than the cores."""
    import os
    import warnings

    cores = len(os.sched_getaffinity(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # threads > cores: test_threads_are_capped_at_the_cores
        engine = create(synthetic_heads_path, engine="onnxruntime", precision="fp32", mode="throughput",
                        threads=threads)
    with engine:
        total = min(threads or cores, cores)
        assert engine.requests == min(total, cores)
        assert engine.threads >= 1 and engine.requests * engine.threads <= total


@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_threads_are_capped_at_the_cores(synthetic_heads_path, mode):
    """``threads=10000`` once gave each of onnxruntime's requests 5,000 intra-op threads and stalled
    the machine: more threads than cores are capped at the cores, with a warning saying so."""
    import os

    cores = len(os.sched_getaffinity(0))
    with pytest.warns(RuntimeWarning, match=rf"threads=10000 is more than the {cores} core\(s\) this process may "
                                            rf"use: using {cores}"):
        engine = create(synthetic_heads_path, engine="onnxruntime", precision="fp32", mode=mode, threads=10000)
    with engine:
        assert engine.requests * engine.threads <= cores
        assert engine.threads == (cores if mode == "latency" else 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at or below the cores
        create(synthetic_heads_path, engine="onnxruntime", precision="fp32", threads=cores).close()


def _unknown_op_model(path, domain):
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 1200, 1200])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 1200, 1200])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["image"], ["out"], domain=domain)], "g", [image], [out])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path.write_bytes(helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString())
    return path


@pytest.mark.parametrize("domain", ["", "com.example"])
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino", "auto"])
def test_an_unknown_operator_is_a_clear_error(tmp_path, engine, domain):
    """onnxruntime's ``Fail`` / ``InvalidGraph`` (not ``RuntimeError`` subclasses: the command line
    reported them as "internal error") and OpenVINO's conversion failure become ``ValueError``
    naming the file and the operator."""
    if engine != "onnxruntime":
        pytest.importorskip("openvino")
    path = _unknown_op_model(tmp_path / "unknown.onnx", domain)
    with pytest.raises(ValueError, match=rf"{path}: (onnxruntime cannot run|OpenVINO cannot read) this model.*NoSuchOp"):
        create(path, engine=engine)


def test_an_unknown_operator_is_reported_by_the_command_line(tmp_path, capsys):
    """Through the CLI's engine opener: one ``error:`` line saying what is wrong, not "internal error"."""
    import argparse

    from ssd_resnet34.cli._common import CommandError, open_engine

    path = _unknown_op_model(tmp_path / "unknown.onnx", "com.example")
    args = argparse.Namespace(device="cpu", engine="onnxruntime", precision="auto", threads=None)
    with pytest.raises(CommandError, match=r"onnxruntime cannot run this model \(Fail\): .*NoSuchOp"):
        open_engine(args, path)
