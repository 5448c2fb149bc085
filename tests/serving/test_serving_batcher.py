"""The batcher's waiting rule (ssd_resnet34/serving/batcher.py): a lone job on an idle server is
dispatched at once, whatever ``max_delay_ms``; with concurrency the first job of a batch waits
for companions. Real tiny onnxruntime engine; bounds here are hang guards (a wrong rule would
wait ten minutes), not speed measurements."""

from __future__ import annotations

import threading
import time

import pytest

from ssd_resnet34 import engines
from ssd_resnet34.serving.batcher import Batcher, Job
from ssd_resnet34.serving.options import DEFAULT, PostprocessorCache

#: Long enough that a job which waited for it could never finish within the tests' guard.
HOUR_MS = 3_600_000
GUARD_S = 60


def _job(name, data, done=lambda job: None, deadline_s=300):
    return Job(name, DEFAULT, time.monotonic() + deadline_s, done, data=data)


def test_lone_request_is_not_held_for_max_delay(tiny_model, cat_bytes):
    engine = engines.create(tiny_model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
    sizes = []
    batcher = Batcher(engine, PostprocessorCache(tiny_model.postprocessor), max_batch=4, max_delay_ms=HOUR_MS,
                      max_queue=8, on_batch=sizes.append)
    batcher.start()
    try:
        for k in range(2):  # twice: the second lone job comes after the first batch has settled
            finished = threading.Event()
            job = _job(f"image{k}", cat_bytes, lambda _job, event=finished: event.set())
            batcher.submit([job])
            assert finished.wait(GUARD_S), f"a lone job waited for --max-delay-ms ({HOUR_MS} ms) on an idle server"
            assert job.error is None and job.answer is not None
        assert sizes == [1, 1]
    finally:
        batcher.close(GUARD_S)
        engine.close()


def test_jobs_queued_together_share_a_batch(tiny_model, cat_bytes):
    engine = engines.create(tiny_model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
    sizes = []
    batcher = Batcher(engine, PostprocessorCache(tiny_model.postprocessor), max_batch=3, max_delay_ms=HOUR_MS,
                      max_queue=8, on_batch=sizes.append)
    left = threading.Semaphore(0)
    batcher.submit([_job(f"image{k}", cat_bytes, lambda _job: left.release()) for k in range(3)])
    batcher.start()
    try:
        for _ in range(3):
            assert left.acquire(timeout=GUARD_S)
        assert sizes == [3]
    finally:
        batcher.close(GUARD_S)
        engine.close()


@pytest.mark.parametrize("in_flight, wait_when_idle", [(True, False), (False, True)],
                         ids=["a batch in flight", "wait_when_idle"])
def test_the_first_job_waits_for_companions(tiny_model, cat_bytes, in_flight, wait_when_idle):
    """The waiting rule itself, on the batcher's group iterator: with another batch in flight
    (or with ``wait_when_idle=True``, the rule before: always) a lone job waits (here up to an
    hour), and the one submitted 0.2 s later joins its batch."""
    batcher = Batcher(None, PostprocessorCache(tiny_model.postprocessor), max_batch=2, max_delay_ms=HOUR_MS,
                      max_queue=8, wait_when_idle=wait_when_idle)
    if in_flight:
        batcher._outstanding[0] = [_job("in flight", cat_bytes)]
    groups = batcher._groups()
    got = []
    taker = threading.Thread(target=lambda: got.append(next(groups)), daemon=True)
    first, second = _job("first", cat_bytes), _job("second", cat_bytes)
    batcher.submit([first])
    taker.start()
    time.sleep(0.2)
    assert not got, "the first job did not wait for companions"
    batcher.submit([second])
    taker.join(GUARD_S)
    assert got and got[0] == [first, second]
