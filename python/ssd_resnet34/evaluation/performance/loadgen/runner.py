"""One LoadGen test: the settings handed to LoadGen, the SUT and QSL constructed, the summary read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np

from ...._extras import require
from .codec import Detections
from .qsl import ImageSampleLibrary
from .settings import MODEL, LoadGenSettings, check_test_settings
from .summary import LoadGenResult, parse_summary
from .sut import PipelineSUT, Responder, ServerSUT

__all__ = ["run_loadgen"]


def _loadgen() -> Any:
    return require("mlperf_loadgen", "eval", "MLPerf LoadGen (ssd-resnet34 bench)", package="mlcommons-loadgen")


def run_loadgen(
    library: ImageSampleLibrary,
    engine: Any,
    decode: Callable[[List[np.ndarray]], List[Detections]],
    settings: LoadGenSettings,
    out_dir: str | Path,
    *,
    progress: Optional[Callable[[int], None]] = None,
    trace: bool = False,
    sut_url: Optional[str] = None,
    api_key: Optional[str] = None,
) -> LoadGenResult:
    """Run one LoadGen test and return its summary.

    ``library``: the samples (QSL total = ``len(library)``). ``engine``: an open engine
    (:func:`ssd_resnet34.engines.create`). ``decode``: the 12 heads of a batch -> per image
    normalized detections (``postprocessor.decode``). ``out_dir``: LoadGen's log folder
    (created); it also receives the ``user.conf`` given to LoadGen. ``progress(n)``: called
    as n more samples are answered. ``trace``: LoadGen also writes ``mlperf_log_trace.json`` (its
    Chrome trace; each sample's latency as LoadGen measured it, read by :mod:`.trace`; off by
    default, as MLPerf runs it).
    ``sut_url``: run no model here but send the queries to the
    V2 server there (:class:`~.network.NetworkSUT`; ``engine`` and ``decode`` unused; ``api_key``
    its bearer token). Re-raises the first error
    of the SUT or the QSL (the queries it failed are answered empty so LoadGen finishes).
    Raises ``ValueError`` for settings that fail :func:`~.settings.check_test_settings` (before
    LoadGen starts), ``RuntimeError`` when LoadGen rejects the configuration or wrote no summary,
    ``ImportError`` naming the ``eval`` extra without LoadGen.
    """
    lg = _loadgen()
    log_dir = Path(out_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    summary_path = log_dir / "mlperf_log_summary.txt"
    for stale in ("mlperf_log_summary.txt", "mlperf_log_accuracy.json"):
        (log_dir / stale).unlink(missing_ok=True)

    conf = log_dir / "user.conf"
    conf.write_text(settings.user_conf_text(), encoding="utf-8")
    test = lg.TestSettings()
    status = test.FromConfig(str(conf), MODEL, settings.scenario)
    if status != 0:  # LoadGen logs nothing here: the test has not started
        raise RuntimeError(
            f"LoadGen refused the configuration {conf} (status {status}): a line it cannot read "
            "(expected 'model.scenario.key = value')"
        )
    source = "the options" + (f" and {settings.user_conf}" if settings.user_conf else "") + f" (written to {conf})"
    check_test_settings(test, settings.scenario, source)
    test.scenario = getattr(lg.TestScenario, settings.scenario)
    test.mode = getattr(lg.TestMode, settings.mode)
    performance_count = min(len(library), test.performance_sample_count_override or len(library))

    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = output
    log.enable_trace = bool(trace)

    responder = Responder(lg, progress)
    if sut_url is not None:
        from .network import NetworkSUT

        batch = settings.batch_size if settings.scenario == "Offline" else 1
        sut_impl: Any = NetworkSUT(library, sut_url, responder, batch_size=batch, api_key=api_key,
                                   concurrency=max(16, 4 * settings.max_batch))
    elif settings.scenario == "Server":
        sut_impl = ServerSUT(library, engine, decode, settings.max_batch, settings.batch_timeout_ms / 1e3, responder)
    else:
        sut_impl = PipelineSUT(library, engine, decode, settings.batch_size, responder)

    def load_samples(indices: list) -> None:
        if responder.error is None:
            try:
                library.load(indices)
            except BaseException as e:  # never let an exception unwind into LoadGen
                responder.fail(e)

    sut = lg.ConstructSUT(sut_impl.issue_queries, sut_impl.flush_queries)
    qsl = lg.ConstructQSL(len(library), performance_count, load_samples, library.unload)
    try:
        lg.StartTestWithLogSettings(sut, qsl, test, log)
    finally:
        sut_impl.close()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        library.unload(list(range(len(library))))
    if responder.error is not None:
        raise responder.error
    if not summary_path.is_file():
        raise RuntimeError(f"LoadGen wrote no summary to {summary_path}")
    return parse_summary(settings.scenario, settings.mode, summary_path.read_text(encoding="utf-8"), log_dir,
                         responder.completed)
