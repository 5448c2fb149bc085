"""schemathesis (property-based API fuzzing) against the server's own OpenAPI document, briefly
(at most 25 generated requests per operation, 90 s in all): no answer may be a 5xx. The longer
run is in benches/bench_serving.py."""

from __future__ import annotations

import sys

import pytest
from _paths import BENCHES

pytest.importorskip("schemathesis", reason="schemathesis is not installed (the test extra)")
sys.path.insert(0, str(BENCHES))

from _fuzz import fuzz  # noqa: E402


def test_no_server_error_on_generated_requests(tiny_server):
    report = fuzz(tiny_server, max_examples=25, seconds=90)
    print(f"schemathesis: {report['cases']} cases over {report['operations']} operations in "
          f"{report['seconds']:.1f} s; statuses {dict(sorted(report['statuses'].items()))}")
    assert report["operations"] >= 10 and report["cases"] >= 100
    assert report["server_errors"] == [], report["server_errors"][:5]
