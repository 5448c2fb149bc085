"""The score of an AccuracyOnly run: ``mlperf_log_accuracy.json`` scored as MLCommons'
``tools/accuracy-coco.py`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Sequence

import numpy as np

from ...accuracy.coco_eval import evaluate
from .codec import decode_response

__all__ = ["score_accuracy_log"]


def score_accuracy_log(accuracy_log: str | Path, coco_gt: Any, images: Sequence[Any], *,
                       evaluator: str = "pycocotools") -> Any:
    """COCO mAP of a LoadGen ``mlperf_log_accuracy.json``, as MLCommons' ``tools/accuracy-coco.py``.

    ``images``: the QSL's images in sample order (``CocoImage``: ``image_id``, ``width``,
    ``height``), so ``qsl_idx`` i is ``images[i]``; ``coco_gt``: the annotations
    (:func:`ssd_resnet34.evaluation.accuracy.coco_eval.load_ground_truth`). As the reference script: a
    sample logged twice counts once; each detection ``[idx, top, left, bottom, right, score,
    label]`` is scaled to pixels in float32 (``ymin *= height`` ...), its label mapped through
    ``[0] + coco_gt.getCatIds()`` (``--use-inv-map``); every logged image counts, with or
    without detections. Returns :class:`~ssd_resnet34.evaluation.accuracy.coco_eval.CocoEvaluation`.

    Raises ``ValueError`` for a malformed log or a sample index outside ``images``.
    """
    try:
        entries = json.loads(Path(accuracy_log).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{accuracy_log} is not LoadGen's accuracy log (JSON): {error}") from None
    inv_map = [0] + list(coco_gt.getCatIds())
    records: List[dict] = []
    seen: set = set()
    image_ids: List[int] = []
    for entry in entries:
        idx = int(entry["qsl_idx"])
        if idx in seen:
            continue
        seen.add(idx)
        if not 0 <= idx < len(images):
            raise ValueError(f"{accuracy_log}: qsl_idx {idx} is outside the {len(images)} images of the QSL")
        image = images[idx]
        image_ids.append(image.image_id)
        for row in decode_response(bytes.fromhex(entry["data"])):
            _, ymin, xmin, ymax, xmax, score, label = row
            height, width = np.float32(image.height), np.float32(image.width)
            ymin, xmin, ymax, xmax = ymin * height, xmin * width, ymax * height, xmax * width
            records.append({
                "image_id": image.image_id,
                "category_id": inv_map[int(label)],
                "bbox": [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)],
                "score": float(score),
            })
    if not image_ids:
        raise ValueError(f"{accuracy_log} holds no sample: was the run in AccuracyOnly mode?")
    return evaluate(coco_gt, records, image_ids, evaluator=evaluator)
