"""Tooling around the detector, apart from the inference path, in two subpackages:

- ``accuracy/``: COCO mAP (``coco_eval.py``), the COCO ground truth (``ground_truth.py``), the
  oracle (``oracle.py``), engine-against-reference proxies (``compare.py``), IoU (``iou.py``),
  ``eval``'s plots and tables (``plots.py``, ``confusion.py``, ``per_class.py``);
- ``performance/``: the MLPerf LoadGen harness (``loadgen/``), per-stage timings (``stages.py``)
  and ``bench``'s plots (``plots.py``).

``_matplotlib.py``: the one place matplotlib is imported (the ``plots`` extra), only to draw.
"""
