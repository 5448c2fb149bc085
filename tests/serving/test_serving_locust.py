"""The locust bench's parts (benches/load_serving.py, benches/locustfile.py): the reader of locust's
statistics CSV, and a brief real locust run (2 users, 3 s) of the locustfile against the tiny
server, which must answer every request of both kinds (``/v1/detect`` and the V2 ``BYTES``
infer) with 200. Locust is a bench tool, not in the test extra: that test skips without it.
Locust runs in its own process (it patches the standard library with gevent when imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _paths import BENCHES, SHARED_DATA

sys.path.insert(0, str(BENCHES))

import load_serving  # noqa: E402

_HEADER = ('Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,'
           'Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,'
           '99.99%,100%\n')


def test_reads_locust_statistics(tmp_path):
    path = tmp_path / "run_stats.csv"
    path.write_text(_HEADER
                    + "POST,/v1/detect,30,0,41,45.2,30.1,120.5,5400.0,9.8,0.0,41,44,47,50,60,70,90,110,120,120,120\n"
                    + "POST,/v2/models/[model]/infer,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,"
                    "N/A,N/A\n"
                    + ",Aggregated,30,1,41,45.2,30.1,120.5,5400.0,9.8,0.3,41,44,47,50,60,70,90,110,120,120,120\n")
    rows = load_serving.read_locust_stats(path)
    assert [r["name"] for r in rows] == ["/v1/detect", "/v2/models/[model]/infer", "Aggregated"]
    assert rows[0] == {"name": "/v1/detect", "requests": 30, "failures": 0, "rps": 9.8, "p50": 41, "p90": 60,
                       "p95": 70, "p99": 110, "max": 120.5}
    assert rows[1]["p50"] is None and rows[1]["requests"] == 0
    assert rows[2]["failures"] == 1


def test_refuses_a_file_that_is_not_locust_statistics(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text(_HEADER + "POST,/v1/detect,3,0,41,45.2,30.1,120.5,5400.0,9.8,0.0,41,44,47,50,60,70,90,110,120,"
                    "120,120\n")
    with pytest.raises(ValueError, match="Aggregated"):
        load_serving.read_locust_stats(path)


def test_reads_locust_failures(tmp_path):
    path = tmp_path / "run_failures.csv"
    path.write_text('Method,Name,Error,Occurrences,First Seen,Last Seen\nPOST,/v1/detect,"HTTP 503: full",2,1,2\n')
    assert load_serving.read_locust_failures(path) == ["2 x POST /v1/detect: HTTP 503: full"]
    assert load_serving.read_locust_failures(tmp_path / "absent.csv") == []


def test_locustfile_runs_against_the_server(tiny_server, tmp_path):
    locust = load_serving.locust_command()
    if locust is None:
        pytest.skip("locust is not installed (a bench tool: pip install locust)")
    if not (SHARED_DATA / "coco-val2017-subset" / "images").is_dir():
        pytest.skip("the shared COCO photos are absent (../shared)")
    prefix = tmp_path / "run"
    env = dict(os.environ, SSD_RESNET34_DATA=str(SHARED_DATA), SSD_RESNET34_PHOTO_COUNT="4")
    done = subprocess.run([locust, "-f", str(load_serving.LOCUSTFILE), "--headless", "-u", "2", "-r", "2",
                           "--run-time", "3s", "--host", tiny_server, "--csv", str(prefix), "--only-summary"],
                          check=False, env=env, capture_output=True, text=True, timeout=90)
    stats = Path(f"{prefix}_stats.csv")
    assert stats.is_file(), done.stderr[-3000:]
    rows = {r["name"]: r for r in load_serving.read_locust_stats(stats)}
    failures = load_serving.read_locust_failures(Path(f"{prefix}_failures.csv"))
    assert rows["Aggregated"]["failures"] == 0, failures
    assert rows["/v1/detect"]["requests"] >= 1 and rows["/v2/models/[model]/infer"]["requests"] >= 1, rows
    assert done.returncode == 0, done.stderr[-3000:]
