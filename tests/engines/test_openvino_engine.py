"""The OpenVINO engine on the synthetic model (random weights: its detections are meaningless, the
numbers are real) against the faithful onnxruntime fp32, on real COCO photos.

Floors: SQNR of every head >= 80 dB for fp32, >= 30 dB for bf16 and fp16 (the benchmark,
``benches/bench_engines.py``, reports them on 20+ photos). Speed is never asserted.

A test of a precision skips, with the CPU plugin's capabilities, where the CPU lacks it (bf16 needs
AMX or AVX512_BF16: Intel Sapphire Rapids and later, AMD Zen 4; fp16 an Intel CPU whose plugin
lists FP16); tests of the plumbing run at :data:`FAST`, the quickest precision this CPU has.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from ssd_resnet34.engines import create
from ssd_resnet34.evaluation.accuracy.compare import detection_agreement, sqnr_db
from ssd_resnet34.layout import HEAD_SHAPES

pytest_plugins = ["_fixtures"]  # shared session-scoped synthetic models, engines, photos

pytest.importorskip("openvino")

from ssd_resnet34.engines.openvino import (
    NotHeadsModelError,
    compiled_cache_dir,
    openvino_capabilities,
)

CAPABILITIES = openvino_capabilities("CPU")
#: The quickest precision this CPU runs: bf16 with AMX or AVX512_BF16, else fp32.
FAST = "bf16" if "BF16" in CAPABILITIES else "fp32"
needs_bf16 = pytest.mark.skipif("BF16" not in CAPABILITIES, reason=(
    f"OpenVINO's CPU plugin lists no BF16 on this CPU (capabilities {CAPABILITIES}): it needs AMX or AVX512_BF16"))


def _report(name, db):
    print(f"{name}: head SQNR {min(db):.1f}..{max(db):.1f} dB against onnxruntime fp32")


def test_fp32_matches_onnxruntime(openvino_engine, photo_batch, photo_reference):
    engine = openvino_engine("fp32")
    assert (engine.name, engine.device, engine.precision, engine.requests) == ("openvino", "cpu", "fp32", 1)
    heads = engine.run(photo_batch[0][:1])  # fp32 costs ~3 s per image here: one photo
    db = sqnr_db([r[:1] for r in photo_reference], heads)
    _report("OpenVINO fp32", db)
    assert min(db) >= 80


@needs_bf16
def test_bf16_latency_and_detections(openvino_engine, photo_batch, photo_reference, native_pp):
    engine = openvino_engine("bf16")
    assert (engine.precision, engine.mode, engine.requests, engine.streams) == ("bf16", "latency", 1, 1)
    images, contexts = photo_batch
    heads = engine.run(images)
    assert [h.shape for h in heads] == [(2, *s) for s in HEAD_SHAPES] and all(h.dtype == np.float32 for h in heads)
    db = sqnr_db(photo_reference, heads)
    _report("OpenVINO bf16", db)
    assert min(db) >= 30
    agreement = detection_agreement(native_pp(photo_reference, contexts=contexts), native_pp(heads, contexts=contexts))
    print(f"OpenVINO bf16: {agreement:.1%} of the fp32 detections matched (same label, IoU >= 0.5)")
    assert agreement > 0.5


def test_fp16_runs_on_this_cpu(openvino_engine, photo_batch, photo_reference):
    """Where the CPU plugin lists FP16 (Intel Xeon with AVX-512/AMX) it runs f16, slowly without
    AMX-FP16; auto never picks it on a CPU. AMD Zen 4 lists no FP16: there the engine refuses it,
    which ``test_fp16_is_refused_where_the_cpu_lacks_it`` checks."""
    caps = CAPABILITIES
    if "FP16" not in caps:
        pytest.skip(f"OpenVINO's CPU plugin lists no FP16 on this CPU (capabilities {caps}): it needs an Intel CPU with AVX512_FP16 or AMX-FP16 (AMD Zen 3 and Zen 4 have none)")
    engine = openvino_engine("fp16")
    assert engine.precision == "fp16"
    db = sqnr_db([r[1:] for r in photo_reference], engine.run(photo_batch[0][1:]))
    _report("OpenVINO fp16", db)
    assert min(db) >= 30


def test_fp16_is_refused_where_the_cpu_lacks_it(openvino_engine):
    caps = CAPABILITIES
    if "FP16" in caps:
        pytest.skip(f"this CPU's OpenVINO plugin runs FP16 (capabilities {caps})")
    with pytest.raises(ValueError, match=r"openvino on 'cpu' runs .* here, not 'fp16' \(OpenVINO's CPU capabilities "
                                         r"are \["):
        openvino_engine("fp16")


def test_throughput_submit_runs_then_in_the_callback(openvino_engine, photo_batch, photo_reference):
    engine = openvino_engine(FAST, "throughput")
    assert engine.mode == "throughput" and engine.requests >= 1 and engine.streams >= 1
    images = photo_batch[0]
    seen = []

    def then(heads):
        # the request's own output tensors: valid now, for one image
        seen.append((threading.current_thread().name, [h.shape for h in heads], heads[0].flags.owndata))
        return [np.array(h) for h in heads]

    futures = [engine.submit(images[i:i + 1], then=then) for i in range(2)]
    results = [f.result(timeout=60) for f in futures]
    assert len(seen) == 2 and all(shapes == [(1, *s) for s in HEAD_SHAPES] for _, shapes, _ in seen)
    assert all(name != threading.current_thread().name for name, _, _ in seen)
    for i, heads in enumerate(results):
        assert min(sqnr_db([r[i:i + 1] for r in photo_reference], heads)) >= 30


def test_errors_reach_the_future_and_close(synthetic_heads_path, photo_batch):
    engine = create(synthetic_heads_path, device="cpu", engine="openvino", precision=FAST)
    future = engine.submit(photo_batch[0][:1], then=lambda heads: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=60)
    with pytest.raises(TypeError, match="float32"):
        engine.submit(photo_batch[0].astype(np.float64))
    with pytest.raises(ValueError, match=r"shape \(N, 3, 1200, 1200\)"):
        engine.run(np.zeros((1, 3, 600, 600), np.float32))
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        engine.run(photo_batch[0][:1])
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(photo_batch[0][:1])
    assert any(compiled_cache_dir().iterdir())  # compiled models are cached for the next start


def test_a_full_graph_is_refused_by_openvino_and_left_to_onnxruntime_by_auto(synthetic_full_path):
    with pytest.raises(NotHeadsModelError, match="heads models .*engine='onnxruntime'"):
        create(synthetic_full_path, engine="openvino")
    with create(synthetic_full_path) as engine:  # engine="auto", precision="auto": resolved for onnxruntime
        assert (engine.name, engine.device, engine.precision) == ("onnxruntime", "cpu", "fp32") and not engine.is_heads


def test_a_precision_onnxruntime_cannot_run_is_refused_for_a_full_graph(synthetic_full_path):
    """Never silently reset to fp32. Where OpenVINO's CPU plugin runs bf16 (AMX, AVX512_BF16),
    the refusal says the full graph is onnxruntime's, which has no bf16; where it does not (an
    AVX2 Zen 3), bf16 is refused before that, as for any model, naming what this CPU runs."""
    if "BF16" in CAPABILITIES:
        expected = (r"is a full graph \(not the 12 heads\), which only onnxruntime runs: "
                    r"onnxruntime on 'cpu' runs \('fp32', 'int8'\) here, not 'bf16'")
    else:
        expected = r"on 'cpu' runs \('fp32', 'int8'\) here, not 'bf16' \(OpenVINO's CPU capabilities are \["
    with pytest.raises(ValueError, match=expected):
        create(synthetic_full_path, device="cpu", precision="bf16")


def test_a_process_may_exit_without_closing_its_engines(synthetic_heads_path):
    """Engines left open are closed at exit (OpenVINO could otherwise abort the process)."""
    import subprocess
    import sys

    code = ("import numpy as np; from ssd_resnet34.engines import create; "
            f"e = create({str(synthetic_heads_path)!r}, device='cpu', engine='openvino', precision={FAST!r}); "
            "e.run(np.zeros((1, 3, 1200, 1200), np.float32)); print('ran')")
    for _ in range(2):  # the abort was intermittent
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout == "ran\n", done.stderr[-2000:]


_WRITER = r"""
import fcntl, os, sys, time
lock, blob, source, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
data = open(source, "rb").read()
with open(lock, "a+b") as handle:
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    with open(blob, "wb") as out:  # as OpenVINO writes a blob: in place
        out.write(data[: len(data) // 3])
        out.flush()
        inode = os.fstat(out.fileno()).st_ino
        print("partial", flush=True)
        time.sleep(hold)
        out.write(data[len(data) // 3:])
    os.chmod(blob, 0o440)  # where OpenVINO failed: "cannot set permissions ... <hash>.blob"
    print("same file" if os.stat(blob).st_ino == inode else "replaced", flush=True)
"""


def test_a_half_written_cache_blob_is_never_read(synthetic_heads_path, tmp_path, monkeypatch):
    """Parallel first runs on a fresh cache failed about 1 in 4 (``filesystem error: cannot set
    permissions ... openvino/<hash>.blob``, or SIGBUS): OpenVINO writes a blob in place and another
    process read it half-written, removed it as invalid and compiled again. Here a real second
    process writes the blob as OpenVINO does, holding the cache lock, and stops a third of the way;
    the engine opened meanwhile must wait for it and load the complete blob, leaving the writer's
    file in place."""
    import subprocess
    import sys
    import time

    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path / "first"))
    with create(synthetic_heads_path, device="cpu", engine="openvino", precision=FAST) as engine:
        want = engine.run(np.zeros((1, 3, 1200, 1200), np.float32))
    (blob,) = list(compiled_cache_dir().glob("*.blob"))
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path / "second"))
    folder = compiled_cache_dir()
    folder.mkdir(parents=True)
    hold = 4.0
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder / ".lock"), str(folder / blob.name), str(blob),
                               str(hold)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "partial\n"
        start = time.perf_counter()
        with create(synthetic_heads_path, device="cpu", engine="openvino", precision=FAST) as engine:
            waited = time.perf_counter() - start
            got = engine.run(np.zeros((1, 3, 1200, 1200), np.float32))
        rest, _ = writer.communicate(timeout=120)
    finally:
        writer.kill()
    assert writer.returncode == 0 and rest == "same file\n", rest
    assert waited >= hold * 0.5  # it waited for the writer
    assert [p.name for p in folder.glob("*.blob")] == [blob.name]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


_FIRST_RUN = """
import sys, warnings
warnings.simplefilter("ignore")
from ssd_resnet34 import SSDResNet34, session
with session.create(SSDResNet34.synthetic(), device="cpu", engine="openvino", mode="throughput") as engine:
    print(engine.name, engine.precision)
"""


def test_parallel_first_runs_share_a_fresh_cache(tmp_path):
    """Three processes open the synthetic model at once on a fresh cache (as Ray actors and
    server workers on one node do): all of them start, one compiled blob is left."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SSD_RESNET34_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", _FIRST_RUN], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outcomes):
        assert run.returncode == 0 and out.startswith("openvino "), err[-2000:]
    assert len(list((tmp_path / "cache" / "openvino").glob("*.blob"))) == 1


_CREATE_AND_DROP = """
import gc, json, sys, weakref
import numpy as np
from ssd_resnet34.engines import create

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

path, engine_name, precision, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
image = np.zeros((1, 3, 1200, 1200), np.float32)
first = create(path, device="cpu", engine=engine_name, precision=precision)
first.run(image)
del first
gc.collect()
base = rss_mb()
alive = 0
for _ in range(rounds):
    engine = create(path, device="cpu", engine=engine_name, precision=precision)
    engine.run(image)
    opened = rss_mb()
    ref = weakref.ref(engine)
    del engine  # never closed
    alive += ref() is not None  # freed by reference counting alone: no cycle
    gc.collect()
print(json.dumps({"base": base, "opened": opened, "after": rss_mb(), "alive": alive}))
"""


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc (Linux) for the RSS")
def test_a_dropped_engine_releases_everything(synthetic_heads_path):
    """An OpenVINO engine garbage-collected without ``close()`` kept its compiled model: 20
    ``session.create(model)`` took RSS from 153 MB to 4,193 MB (the AsyncInferQueue's callback held
    the engine: a cycle through a C++ object). Ten unclosed engines, each run once, in a fresh
    process: each is freed as soon as it is dropped, and RSS ends near where it began."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CREATE_AND_DROP, str(synthetic_heads_path), "openvino", FAST, "10"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rss = json.loads(done.stdout)
    print(f"OpenVINO RSS: {rss['base']:.0f} MB after one engine, {rss['opened']:.0f} MB with one open, "
          f"{rss['after']:.0f} MB after 10 dropped")
    assert rss["alive"] == 0
    assert rss["after"] - rss["base"] < 150  # one engine's compiled model is ~140 MB here; 10 leaked ~1.4 GB
