"""Per-query latencies of a LoadGen run, exactly as LoadGen measured them, from its trace.

With ``run_loadgen(..., trace=True)`` LoadGen writes ``mlperf_log_trace.json`` (a Chrome trace).
Each answered sample has a ``"Sample"`` begin event whose ``args`` hold ``query_seq`` and
``complete_ns``: the nanoseconds from the query's scheduled start to the sample's
``QuerySamplesComplete``, the number LoadGen's summary is computed from. (The file is not strict
JSON, LoadGen writes some ``args`` with doubled quotes, so the sample events are read line by line.)

:func:`read_latencies` returns the latencies LoadGen's percentiles are taken over: one per sample
(SingleStream, Server, Offline) or, for MultiStream, one per query (its slowest sample).
:func:`percentile` is LoadGen's own rule (sorted, index ``min(int(p * n), n - 1)``), so
``percentile(read_latencies(...), 0.99)`` equals the summary's ``99.00 percentile latency (ns)``
(checked in ``tests/evaluation/performance/test_loadgen_plots.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["TRACE_FILE", "percentile", "read_latencies"]

#: The trace LoadGen writes into its log folder.
TRACE_FILE = "mlperf_log_trace.json"

_SAMPLE = re.compile(r'^\{"name":"Sample",.*"ph":"b".*"query_seq":(\d+).*"complete_ns":(\d+)')


def read_latencies(trace_path: str | Path, scenario: str) -> np.ndarray:
    """LoadGen's latencies of the run traced at ``trace_path``: (N,) int64 nanoseconds, sorted;
    per query for ``scenario`` ``"MultiStream"``, else per sample. Raises ``FileNotFoundError``
    when the file is missing and ``ValueError`` when it holds no sample (a run without
    ``trace=True`` leaves it empty)."""
    per_query: dict[int, int] = {}
    samples = []
    with open(trace_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _SAMPLE.match(line)
            if match:
                query, ns = int(match.group(1)), int(match.group(2))
                samples.append(ns)
                per_query[query] = max(per_query.get(query, 0), ns)
    if not samples:
        raise ValueError(f"{trace_path} holds no LoadGen sample events (was the run traced? run_loadgen(trace=True))")
    values = list(per_query.values()) if scenario == "MultiStream" else samples
    return np.sort(np.asarray(values, dtype=np.int64))


def percentile(latencies: np.ndarray, fraction: float) -> int:
    """LoadGen's percentile of ``latencies`` (ns): the sorted value at ``min(int(fraction * n), n - 1)``;
    ``fraction`` in [0, 1] (0.99 for p99). Raises ``ValueError`` for an empty array or a bad fraction."""
    values = np.sort(np.asarray(latencies).reshape(-1))
    if values.size == 0:
        raise ValueError("no latencies")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return int(values[min(int(fraction * values.size), values.size - 1)])
