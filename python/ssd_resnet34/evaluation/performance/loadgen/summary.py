"""LoadGen's verdict: :class:`LoadGenResult`, parsed from ``mlperf_log_summary.txt``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

__all__ = ["LoadGenResult", "parse_summary"]


@dataclass(frozen=True)
class LoadGenResult:
    """What LoadGen reported: ``summary`` is the text of ``mlperf_log_summary.txt``.

    ``valid``: LoadGen's "Result is : VALID" verdict; ``invalid_reasons``: the summary's
    checks that failed (e.g. ``Min duration satisfied``). ``samples_per_second``: Offline's
    result line (``completed_samples_per_second`` and ``scheduled_samples_per_second`` for the
    Server); ``latency_ns``: the percentile latencies by percentile ("50.00", "90.00", ...).
    ``samples_completed``: responses the SUT sent. ``accuracy_log``: ``mlperf_log_accuracy.json``.
    """

    scenario: str
    mode: str
    summary: str
    log_dir: Path
    valid: bool
    samples_completed: int
    invalid_reasons: Tuple[str, ...] = ()
    samples_per_second: Optional[float] = None
    completed_samples_per_second: Optional[float] = None
    scheduled_samples_per_second: Optional[float] = None
    latency_ns: Dict[str, int] = field(default_factory=dict)

    @property
    def accuracy_log(self) -> Path:
        return self.log_dir / "mlperf_log_accuracy.json"


_RESULT_RE = re.compile(r"^Result is\s*:\s*(\S+)", re.M)
_SPS_RE = re.compile(r"^Samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_COMPLETED_RE = re.compile(r"^Completed samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_SCHEDULED_RE = re.compile(r"^Scheduled samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_PCT_RE = re.compile(r"^([0-9.]+) percentile latency \(ns\)\s*:\s*(\d+)", re.M)
_FAILED_RE = re.compile(r"^\s*(.+?)\s*:\s*NO\s*$", re.M)


def parse_summary(scenario: str, mode: str, text: str, log_dir: Path, completed: int) -> LoadGenResult:
    """A :class:`LoadGenResult` from the text of ``mlperf_log_summary.txt``."""

    def number(pattern: re.Pattern) -> Optional[float]:
        match = pattern.search(text)
        return float(match.group(1)) if match else None

    verdict = _RESULT_RE.search(text)
    return LoadGenResult(
        scenario=scenario,
        mode=mode,
        summary=text,
        log_dir=log_dir,
        valid=bool(verdict) and verdict.group(1) == "VALID",
        samples_completed=completed,
        invalid_reasons=tuple(m.strip() for m in _FAILED_RE.findall(text)),
        samples_per_second=number(_SPS_RE),
        completed_samples_per_second=number(_COMPLETED_RE),
        scheduled_samples_per_second=number(_SCHEDULED_RE),
        latency_ns={p: int(v) for p, v in _PCT_RE.findall(text)},
    )
