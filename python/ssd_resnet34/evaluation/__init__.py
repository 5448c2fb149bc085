"""Tooling around the detector, apart from the inference path, in two subpackages:

- ``accuracy/``: COCO mAP (``coco_eval.py``), the COCO ground truth (``ground_truth.py``), the
  oracle (``oracle.py``), engine-against-reference proxies (``compare.py``), IoU (``iou.py``);
- ``performance/``: the MLPerf LoadGen harness (``loadgen/``) and per-stage timings (``stages.py``).
"""
