"""The LoadGen test settings: :class:`LoadGenSettings` (the layers given to LoadGen) and the
checks that every value, from the options and from a ``user.conf``, passes before LoadGen sees it.

LoadGen reads a negative count as a huge unsigned one and pre-allocates its whole schedule, so an
unchecked number ends the process (SIGABRT) or exhausts memory rather than raising.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "MAX_SAMPLES",
    "MODEL",
    "MODEL_CONF",
    "FRACTIONAL_KEYS",
    "SCENARIOS",
    "TEST_MODES",
    "LoadGenSettings",
    "check_test_settings",
    "check_user_conf",
]

#: The MLPerf scenarios :func:`~ssd_resnet34.evaluation.performance.loadgen.run_loadgen` serves.
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
#: LoadGen's test modes (``TestMode``); not the engines' latency/throughput mode.
TEST_MODES = ("PerformanceOnly", "AccuracyOnly")
#: The model's name in MLPerf's configuration files.
MODEL = "ssd-resnet34"
#: This model's own entries of ``mlperf.conf`` in MLPerf Inference v2.0, the last round with
#: SSD-ResNet34 (mlcommons/inference, tag v2.0, ``mlperf.conf``); today's built-in file no
#: longer lists the model, so only its wildcard entries would apply without these.
MODEL_CONF = """\
# ssd-resnet34's entries of mlperf.conf in MLPerf Inference v2.0 (mlcommons/inference tag v2.0)
ssd-resnet34.*.performance_sample_count_override = 64
ssd-resnet34.MultiStream.target_latency = 528
ssd-resnet34.Server.target_latency = 100
"""

#: The most samples one test may ask LoadGen for (it builds the whole schedule in memory before
#: the first query): 10 million, 30 minutes at 5,000 samples/s.
MAX_SAMPLES = 10_000_000
#: LoadGen's slack on the number of samples it schedules for the minimum duration.
_SCHEDULE_SLACK = 1.1
_LINE = re.compile(r"^([^.\s=]+)\.([^.\s=]+)\.([^.\s=]+)\s*=\s*(\S+)$")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?$")
_INTEGER = re.compile(r"^[0-9]+$")
#: The keys LoadGen reads as floating-point numbers; it reads every other one as an unsigned
#: integer, stopping at the first other character ("1e3" is 1, "1.5" is 1).
FRACTIONAL_KEYS = ("target_qps", "target_latency", "target_latency_percentile")


def check_user_conf(text: str, source: str) -> None:
    """Check a LoadGen ``user.conf`` before LoadGen reads it: every line that is not blank or a
    ``#`` comment is ``model.scenario.key = value`` with a non-negative decimal number as value
    (LoadGen reads ``-5`` as 2^64 - 5 and then aborts the process), an integer unless the key
    is one of :data:`FRACTIONAL_KEYS` (LoadGen reads ``1e3`` as 1). ``source``: the file's name,
    for the message. Raises ``ValueError`` naming the line.
    """
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(
                f"{source}, line {number}: {raw.strip()!r} is not a LoadGen setting: expected "
                "'model.scenario.key = value' (e.g. 'ssd-resnet34.Offline.target_qps = 5')"
            )
        value = match.group(4)
        if not _NUMBER.match(value) or not math.isfinite(float(value)):
            raise ValueError(
                f"{source}, line {number}: {match.group(3)} = {value}: expected a non-negative decimal number"
            )
        if match.group(3) not in FRACTIONAL_KEYS and not _INTEGER.match(value):
            raise ValueError(
                f"{source}, line {number}: {match.group(3)} = {value}: expected a non-negative integer "
                f"(LoadGen would read it as {re.match(r'[0-9]*', value).group(0) or 0})"
            )


def _expected_qps(test: Any, scenario: str) -> tuple[float, str]:
    if scenario == "Offline":
        return test.offline_expected_qps, f"target_qps {test.offline_expected_qps:g}"
    if scenario == "Server":
        return test.server_target_qps, f"target_qps {test.server_target_qps:g}"
    latency = test.single_stream_expected_latency_ns if scenario == "SingleStream" \
        else test.multi_stream_expected_latency_ns
    return (1e9 / latency if latency > 0 else math.inf), f"target_latency {latency / 1e6:g} ms"


def check_test_settings(test: Any, scenario: str, source: str) -> None:
    """Check LoadGen's ``TestSettings`` as read from the configuration (``FromConfig``), before
    any test starts: whatever layer set them (the options or a ``user.conf``), counts and
    durations must be below 2^63 (a negative number in a file wraps around), rates, latencies
    and durations finite and positive, percentiles in (0, 1], and the samples LoadGen would
    schedule (the expected rate x ``min_duration`` x 1.1, at least ``min_query_count`` queries,
    x ``samples_per_query`` for MultiStream) at most :data:`MAX_SAMPLES`.
    ``source``: where the settings came from, for the message. Raises ``ValueError`` naming the
    setting and the options that set it.
    """
    limit = 2**63
    for name in ("min_query_count", "max_query_count", "min_duration_ms", "max_duration_ms",
                 "performance_sample_count_override", "multi_stream_samples_per_query",
                 "server_target_latency_ns", "server_max_async_queries", "accuracy_log_sampling_target"):
        value = getattr(test, name, 0)
        if value >= limit:
            raise ValueError(
                f"LoadGen setting {name} is {value} (a negative number read as unsigned?) in {source}: "
                "expected a non-negative integer below 2^63"
            )
    rates = [("offline_expected_qps", "--target-qps"), ("server_target_qps", "--target-qps"),
             ("single_stream_expected_latency_ns", "--target-latency-ms"),
             ("multi_stream_expected_latency_ns", "--target-latency-ms")]
    for name, option in rates:
        value = float(getattr(test, name))
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"LoadGen setting {name} is {value:g} in {source} ({option}): expected a positive number")
    for name in ("server_target_latency_percentile", "single_stream_target_latency_percentile",
                 "multi_stream_target_latency_percentile"):
        value = float(getattr(test, name))
        if not 0 < value <= 1:
            raise ValueError(f"LoadGen setting {name} is {value:g} in {source}: expected a fraction in (0, 1]")
    if scenario == "Server" and test.server_target_latency_ns < 1:
        raise ValueError(f"LoadGen setting target_latency is 0 ms in {source} (--target-latency-ms; LoadGen "
                         "reads the Server's in whole milliseconds): expected >= 1")
    if scenario == "MultiStream" and test.multi_stream_samples_per_query < 1:
        raise ValueError(f"LoadGen setting samples_per_query is 0 in {source} (--samples-per-query): expected >= 1")
    qps, rate = _expected_qps(test, scenario)
    queries = max(float(test.min_query_count), qps * test.min_duration_ms / 1e3 * _SCHEDULE_SLACK)
    if test.max_query_count:
        queries = min(queries, float(test.max_query_count))
    per_query = test.multi_stream_samples_per_query if scenario == "MultiStream" else 1
    samples = queries * per_query
    if samples > MAX_SAMPLES:
        raise ValueError(
            f"the {scenario} settings in {source} would have LoadGen schedule about {samples:.3g} samples "
            f"({rate}, min_duration {test.min_duration_ms / 1e3:g} s, min_query_count {test.min_query_count}"
            f"{f', samples_per_query {per_query}' if per_query > 1 else ''}), more than {MAX_SAMPLES:,}: lower "
            "--target-qps / raise --target-latency-ms, or lower --min-duration-ms / --min-query-count"
        )

def _positive(name: str, value: Any, *, integer: bool, zero: bool = False) -> None:
    if value is None:
        return
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not (value >= 0 if zero else value > 0) or value != value \
            or value == float("inf"):
        kind = "int" if integer else "number"
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} {kind} or None, got {value!r}")


@dataclass(frozen=True)
class LoadGenSettings:
    """The test settings this harness sets on top of LoadGen's ``mlperf.conf`` and :data:`MODEL_CONF`.

    ``scenario``: one of :data:`SCENARIOS`; ``mode``: one of :data:`TEST_MODES`. ``user_conf``: a
    LoadGen ``user.conf`` (``model.scenario.key = value`` lines) applied after the model's entries.
    ``target_qps`` (Server: the arrival rate; Offline: the expected throughput),
    ``target_latency_ms`` (SingleStream / MultiStream: the expected latency; Server: the latency
    bound), ``samples_per_query`` (MultiStream), ``min_duration_ms``, ``min_query_count``,
    ``performance_count`` (samples kept in memory): explicit overrides (None: as configured).
    ``batch_size``: images per inference for SingleStream, MultiStream and Offline;
    ``max_batch`` / ``batch_timeout_ms``: the Server's dynamic batching.
    """

    scenario: str = "SingleStream"
    mode: str = "PerformanceOnly"
    user_conf: Optional[str] = None
    target_qps: Optional[float] = None
    target_latency_ms: Optional[float] = None
    samples_per_query: Optional[int] = None
    min_duration_ms: Optional[int] = None
    min_query_count: Optional[int] = None
    performance_count: Optional[int] = None
    batch_size: int = 1
    max_batch: int = 4
    batch_timeout_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.mode not in TEST_MODES:
            raise ValueError(f"mode must be one of {TEST_MODES}, got {self.mode!r}")
        if self.user_conf is not None and not Path(self.user_conf).is_file():
            raise ValueError(f"user_conf {self.user_conf} is not a file")
        self.user_conf_text()  # checks the user's file now, before a model is loaded
        _positive("target_qps", self.target_qps, integer=False)
        _positive("target_latency_ms", self.target_latency_ms, integer=False)
        _positive("batch_timeout_ms", self.batch_timeout_ms, integer=False, zero=True)
        _positive("min_duration_ms", self.min_duration_ms, integer=True, zero=True)
        for name in ("samples_per_query", "min_query_count", "performance_count"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("batch_size", "max_batch"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be a positive int, got None")
            _positive(name, getattr(self, name), integer=True)

    def user_conf_text(self) -> str:
        """The configuration given to LoadGen on top of its built-in ``mlperf.conf``:
        :data:`MODEL_CONF`, the user's file, then the explicit overrides (later lines win).
        Raises ``ValueError`` when the user's file fails :func:`check_user_conf`."""
        parts = [MODEL_CONF]
        if self.user_conf is not None:
            try:
                text = Path(self.user_conf).read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"user_conf {self.user_conf} is not a text file: {error}") from None
            check_user_conf(text, str(self.user_conf))
            parts.append(f"# from {self.user_conf}\n" + text)
        s = f"{MODEL}.{self.scenario}"
        overrides = []
        if self.target_qps is not None and self.scenario in ("Server", "Offline"):
            overrides.append(f"{s}.target_qps = {self.target_qps!r}")
        if self.target_latency_ms is not None and self.scenario != "Offline":
            overrides.append(f"{s}.target_latency = {self.target_latency_ms!r}")
        if self.samples_per_query is not None and self.scenario == "MultiStream":
            overrides.append(f"{s}.samples_per_query = {self.samples_per_query}")
        if self.min_duration_ms is not None:
            overrides.append(f"{s}.min_duration = {self.min_duration_ms}")
        if self.min_query_count is not None:
            overrides.append(f"{s}.min_query_count = {self.min_query_count}")
        if self.performance_count is not None:
            overrides.append(f"{s}.performance_sample_count_override = {self.performance_count}")
        if overrides:
            parts.append("# explicit overrides\n" + "\n".join(overrides) + "\n")
        return "\n".join(parts)

    @property
    def is_short(self) -> bool:
        """True when a minimum was lowered: the run cannot be an MLPerf-compliant result."""
        return self.min_duration_ms is not None or self.min_query_count is not None
