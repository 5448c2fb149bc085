"""Tooling around the detector, apart from the inference path: accuracy and speed.

- ``coco_eval.py``: COCO bbox mAP with pycocotools (or faster-coco-eval);
- ``loadgen.py``: the MLPerf LoadGen harness (SUT and QSL);
- ``stages.py``: per-stage timings of the pipeline;
- ``oracle.py``: head outputs encoded from ground truth (a near-perfect detector without weights);
- ``compare.py``: accuracy proxies of an engine against onnxruntime fp32 (head SQNR, detection agreement).
"""
