"""The speed pictures of ``bench``, and one for ``serve`` load runs.

- :func:`plot_latency`: ``latency.png`` of a LoadGen run: histogram and CDF of its latencies
  (:func:`~ssd_resnet34.evaluation.performance.loadgen.trace.read_latencies`), p50/p90/p99 marked.
- :func:`plot_stages`: ``stages.png`` of ``bench --stages``: median ms per image of each stage.
- :func:`plot_concurrency`: throughput and p99 latency against concurrency, for a serving load run
  (rows of ``(concurrency, images/s, p99 ms)``).

matplotlib (the ``plots`` extra) is imported only when a figure is drawn. Speed is only shown
here, never asserted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._matplotlib import new_figure, save_figure

__all__ = ["MARKED_PERCENTILES", "check_concurrency_rows", "plot_concurrency", "plot_latency", "plot_stages"]

#: The percentiles marked on ``latency.png`` (as fractions).
MARKED_PERCENTILES = (0.50, 0.90, 0.99)
_MARK_STYLE = {0.50: ("C2", "--"), 0.90: ("C1", "-."), 0.99: ("C3", ":")}


def plot_latency(latencies_ns: Sequence[int], path: str | Path, *, marks_ns: Mapping[float, int],
                 title: str = "", unit_label: str = "query") -> Path:
    """``latency.png`` at ``path``: histogram (left) and empirical CDF (right) of ``latencies_ns``
    (nanoseconds, any order), in milliseconds, with a vertical line at each of ``marks_ns``
    (fraction -> ns, e.g. ``{0.5: p50, 0.9: p90, 0.99: p99}``: LoadGen's summary values).
    ``unit_label``: what one latency is (``"query"`` or ``"sample"``), for the axis labels.
    1200 x 500 pixels. Raises ``ValueError`` for no latencies or a non-finite one."""
    ms = np.sort(np.asarray(latencies_ns, dtype=np.float64).reshape(-1)) / 1e6
    if ms.size == 0 or not np.all(np.isfinite(ms)):
        raise ValueError(f"latencies must be a non-empty sequence of finite numbers, got {ms.size} values")
    fig = new_figure(12, 5)
    hist_ax, cdf_ax = fig.subplots(1, 2)
    hist_ax.hist(ms, bins=min(60, max(10, ms.size // 5)), color="C0", alpha=0.8)
    hist_ax.set(xlabel="latency (ms)", ylabel=f"{unit_label} count", title=f"latency histogram ({ms.size} {unit_label} latencies)")
    cdf_ax.step(ms, np.arange(1, ms.size + 1) / ms.size, where="post", color="C0", label="empirical CDF")
    cdf_ax.set(xlabel="latency (ms)", ylabel=f"fraction of {unit_label} latencies <= x", ylim=(0, 1.02),
               title="cumulative distribution")
    for fraction, ns in sorted(marks_ns.items()):
        color, style = _MARK_STYLE.get(fraction, ("C7", "--"))
        label = f"p{fraction * 100:g} = {ns / 1e6:.2f} ms"
        for ax in (hist_ax, cdf_ax):
            ax.axvline(ns / 1e6, color=color, linestyle=style, linewidth=1.6, label=label)
    lo, hi = ms[0], max([ms[-1], *(ns / 1e6 for ns in marks_ns.values())])
    pad = 0.04 * (hi - lo) or 0.05 * hi or 1.0  # the slowest latency and its mark clear of the frame
    for ax in (hist_ax, cdf_ax):
        ax.set_xlim(lo - pad, hi + pad)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_stages(rows: Sequence[Any], path: str | Path, *, title: str = "") -> Path:
    """``stages.png`` at ``path``: one horizontal bar per ``StageTiming`` row of
    ``stages.measure_stages`` (median ms per image, log scale, value written at the bar's end),
    in pipeline order; stages in blue, whole-pipeline and bare-engine rows in orange; rows not
    measured (NaN) listed as such. 1200 x (200 + 40 per row) pixels. Raises ``ValueError`` when no
    row was measured."""
    measured = [not math.isnan(r.median_ms) and r.median_ms > 0 for r in rows]
    if not any(measured):
        raise ValueError("no stage was measured: nothing to plot")
    values = [r.median_ms if ok else 0.0 for r, ok in zip(rows, measured)]
    lo, hi = min(v for v in values if v > 0), max(values)
    names = [r.stage for r in rows]
    fig = new_figure(12, 2 + 0.4 * len(rows))
    ax = fig.subplots()
    y = np.arange(len(rows))
    whole = [r.stage.startswith(("whole pipeline", "bare engine")) for r in rows]
    ax.barh(y, [v if v > 0 else np.nan for v in values], color=["C1" if w else "C0" for w in whole])
    for i, (value, ok) in enumerate(zip(values, measured)):
        ax.text(value if ok else lo / 2.5, i, f" {value:.2f} ms" if ok else " not measured", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(lo / 3, hi * 8)
    ax.set_xlabel("median time per image (ms, log scale)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="C0", label="one stage"), Patch(color="C1", label="whole pipeline / bare engine")],
              loc="lower right", fontsize=8)
    ax.set_title(title or "bench --stages: where the time per image goes", fontsize=10)
    return save_figure(fig, path)


def check_concurrency_rows(rows: Sequence[Sequence[float]]) -> list[tuple[int, float, float]]:
    """``rows`` of ``(concurrency, images_per_s, p99_ms)`` checked and sorted by concurrency.
    Raises ``ValueError`` naming the first bad row: not 3 values, a concurrency that is not an
    int >= 1 or appears twice, a throughput or p99 that is not a finite number >= 0; or no rows."""
    checked = []
    for n, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or len(row) != 3:
            raise ValueError(f"rows[{n}] must be (concurrency, images/s, p99 ms), got {row!r}")
        concurrency, throughput, p99 = row
        if isinstance(concurrency, bool) or not float(concurrency).is_integer() or concurrency < 1:
            raise ValueError(f"rows[{n}]: concurrency must be an int >= 1, got {concurrency!r}")
        for name, value in (("images/s", throughput), ("p99 ms", p99)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"rows[{n}]: {name} must be a finite number >= 0, got {value!r}")
        checked.append((int(concurrency), float(throughput), float(p99)))
    if not checked:
        raise ValueError("rows is empty: at least one (concurrency, images/s, p99 ms) row is needed")
    levels = [c for c, _, _ in checked]
    if len(set(levels)) != len(levels):
        raise ValueError(f"each concurrency must appear once, got {levels}")
    return sorted(checked)


def plot_concurrency(rows: Sequence[Sequence[float]], path: str | Path, *, title: str = "") -> Path:
    """Throughput (images/s, left axis, blue) and p99 latency (ms, right axis, red) against
    concurrency (requests in flight; log 2 axis when it spans 4x or more), one point per row of
    ``(concurrency, images_per_s, p99_ms)`` (any order; :func:`check_concurrency_rows`), at
    ``path``. 900 x 500 pixels. Raises ``ValueError`` for bad rows."""
    data = check_concurrency_rows(rows)
    levels = [c for c, _, _ in data]
    fig = new_figure(9, 5)
    ax = fig.subplots()
    ax.plot(levels, [t for _, t, _ in data], "o-", color="C0", label="throughput (images/s)")
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("throughput (images/s)", color="C0")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.plot(levels, [p for _, _, p in data], "s--", color="C3", label="p99 latency (ms)")
    right.set_ylabel("p99 latency (ms)", color="C3")
    right.set_ylim(bottom=0)
    if levels[-1] >= 4 * levels[0]:
        ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=9)
    ax.set_title(title or "throughput and p99 latency against concurrency")
    return save_figure(fig, path)
