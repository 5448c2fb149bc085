"""MLPerf LoadGen harness: a real SUT and QSL over image files, in MLPerf's four scenarios and
both modes (PerformanceOnly, AccuracyOnly).

It follows the structure of MLCommons' reference harness
(``vision/classification_and_detection/python/main.py`` in mlcommons/inference):

- the QSL (query sample library, :class:`ImageSampleLibrary`, ``qsl.py``) preprocesses the images LoadGen
  asks for into memory before the timed run;
- the SUT (system under test, ``sut.py``) runs inference + postprocess on the samples of each query and
  answers ``lg.QuerySamplesComplete`` with the detections encoded as the reference does for
  SSD-ResNet34 (``PostProcessCocoPt``; ``codec.py``): per detection 7 float32 values
  ``[qsl_index, top, left, bottom, right, score, label]``, box corners normalized to the image
  and ``label`` the model label 1..80 (``accuracy-coco.py --use-inv-map`` maps it to the COCO
  category id).

How each scenario is served:

- SingleStream, MultiStream, Offline: the query's samples go through the detector's pipeline
  (:func:`ssd_resnet34.pipeline.run_pipeline`: batches of ``batch_size`` with the engine's
  requests in flight, the postprocess as each batch arrives), answered sample by sample;
- Server: queries arrive one sample at a time on LoadGen's schedule; a batcher thread groups
  them dynamically (up to ``max_batch`` samples, waiting at most ``batch_timeout_ms`` after the
  first) and submits each batch to the engine without waiting, so requests overlap.

Settings: LoadGen's built-in ``mlperf.conf`` (loaded by LoadGen itself), then this model's own
entries from the last MLPerf round that had SSD-ResNet34 (v2.0, :data:`MODEL_CONF`), then the
user's ``user.conf``, then explicit overrides (``settings.py``, which checks every value before
LoadGen sees it); everything but the built-in file is written to
``<out>/user.conf`` and given to LoadGen as one user configuration, so the logs folder records the
exact settings. AccuracyOnly writes ``mlperf_log_accuracy.json``, which :func:`score_accuracy_log`
(``scoring.py``) scores as MLCommons' ``tools/accuracy-coco.py`` does. :func:`run_loadgen`
(``runner.py``) runs one test; :func:`parse_summary` (``summary.py``) reads its verdict;
``oracle_source.py`` serves head outputs encoded from the ground truth instead of a model (``bench --oracle``);
``network.py`` sends the queries to a server on the open inference protocol instead (``bench --sut-url``,
MLPerf's network division).

Requires ``mlcommons-loadgen`` (``import mlperf_loadgen``): ``pip install 'ssd-resnet34[eval]'``.
"""

from __future__ import annotations

from .codec import RESPONSE_WIDTH, Detections, decode_response, encode_response
from .oracle_source import OracleEngine, OracleSampleLibrary
from .qsl import ImageSampleLibrary
from .runner import run_loadgen
from .scoring import score_accuracy_log
from .settings import (
    MAX_SAMPLES,
    MODEL,
    MODEL_CONF,
    SCENARIOS,
    TEST_MODES,
    LoadGenSettings,
)
from .summary import LoadGenResult, parse_summary

__all__ = [
    "MAX_SAMPLES",
    "MODEL",
    "MODEL_CONF",
    "RESPONSE_WIDTH",
    "SCENARIOS",
    "TEST_MODES",
    "Detections",
    "ImageSampleLibrary",
    "LoadGenResult",
    "LoadGenSettings",
    "OracleEngine",
    "OracleSampleLibrary",
    "decode_response",
    "encode_response",
    "parse_summary",
    "run_loadgen",
    "score_accuracy_log",
]
