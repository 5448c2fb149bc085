"""Accuracy: COCO mAP, the ground truth it is measured against, and proxies without the weights.

- ``ground_truth.py``: the one reader of a COCO instances file and the one :class:`CocoImage`
  (normalized ltrb boxes, model labels);
- ``coco_eval.py``: COCO bbox AP / AR with pycocotools (or faster-coco-eval);
- ``oracle.py``: head outputs encoded from ground truth (a near-perfect detector without weights);
- ``compare.py``: accuracy proxies of an engine against onnxruntime fp32 (head SQNR, detection agreement);
- ``iou.py``: the IoU of ltrb boxes for these tools (the bit-exact reference keeps its own);
- ``confusion.py``: the detection confusion matrix (80 classes + background; its definition);
- ``per_class.py``: per-class AP read from the evaluator's precision array;
- ``plots.py``: ``eval``'s PR curves and confusion matrix pictures, and the tables beside them.
"""
