"""Speed: the MLPerf LoadGen harness and the per-stage timings of the pipeline.

- ``loadgen/``: the LoadGen SUT and QSL in MLPerf's four scenarios and both test modes
  (:func:`~ssd_resnet34.evaluation.performance.loadgen.run_loadgen`);
- ``stages.py``: where the time per image goes (:func:`~ssd_resnet34.evaluation.performance.stages.measure_stages`);
- ``plots.py``: ``bench``'s latency and stages pictures, and throughput / p99 against concurrency
  for serving load runs (per-query latencies from LoadGen's trace: ``loadgen/trace.py``).

Speed is only reported here, never asserted.
"""
