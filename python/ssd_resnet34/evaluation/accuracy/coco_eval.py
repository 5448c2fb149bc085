"""COCO bbox evaluation (AP / AR) of detection results, restricted to the images that were run.

The metric is COCO's: ``pycocotools.cocoeval.COCOeval`` with ``iouType="bbox"`` and
``params.imgIds`` set to exactly the evaluated images, as MLCommons' accuracy script does
(``vision/classification_and_detection/tools/accuracy-coco.py`` in mlcommons/inference).
``faster-coco-eval`` (optional, not a dependency of this package) can be used instead; it
gives the same twelve numbers (checked in ``tests/evaluation/accuracy/test_coco_eval.py``).

Results records are COCO results dicts: ``image_id`` (int), ``category_id`` (one of the
80 official COCO category ids), ``bbox`` ``[x, y, width, height]`` in pixels of the
original image, ``score`` (float).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..._extras import require
from .ground_truth import read_annotations

__all__ = [
    "EVALUATORS",
    "CocoEvaluation",
    "available_evaluators",
    "evaluate",
    "load_ground_truth",
]

#: Names accepted by :func:`evaluate` (``evaluator=``) and ``ssd-resnet34 eval --evaluator``.
EVALUATORS = ("pycocotools", "faster-coco-eval")

#: The twelve summary metrics in the order of ``COCOeval.stats``.
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)

_RESULT_KEYS = ("image_id", "category_id", "bbox", "score")


@dataclass(frozen=True)
class CocoEvaluation:
    """The outcome of :func:`evaluate`.

    ``stats``: the 12 numbers of ``COCOeval.stats`` (AP@[.5:.95], AP50, AP75, AP small/medium/
    large, AR@1, AR@10, AR@100, AR small/medium/large); -1.0 where the selected images have no
    ground truth in that range. ``summary``: the 12 lines as the evaluator prints them.
    ``precision``: the evaluator's ``eval['precision']``, float64 (T=10 IoU thresholds .50:.05:.95,
    R=101 recall points 0:.01:1, K categories in the order of ``category_ids``, A=4 area ranges
    all/small/medium/large, M=3 maxDets 1/10/100); -1 where a category has no ground truth.
    ``category_ids``: the COCO category ids of its K axis (``params.catIds``).
    """

    stats: tuple[float, ...]
    summary: str
    image_ids: tuple[int, ...]
    num_detections: int
    evaluator: str
    precision: Any = field(default=None, repr=False, compare=False)
    category_ids: tuple[int, ...] = ()

    @property
    def map(self) -> float:
        """COCO mAP, AP averaged over IoU 0.50:0.05:0.95 (``stats[0]``)."""
        return self.stats[0]

    def as_dict(self) -> dict[str, float]:
        """The 12 metrics by name (``AP``, ``AP50``, ... ``AR_large``)."""
        return dict(zip(STAT_NAMES, self.stats))


def available_evaluators() -> list[str]:
    """The names in :data:`EVALUATORS` whose package can be imported here."""
    names = []
    for name, module in zip(EVALUATORS, ("pycocotools", "faster_coco_eval")):
        try:
            __import__(module)
        except ImportError:
            continue
        names.append(name)
    return names


def _pycocotools(module: str) -> Any:
    return require(module, "eval", "COCO evaluation", package="pycocotools")


def load_ground_truth(annotation_json: str | Path) -> Any:
    """Load a COCO instances file (e.g. ``instances_val2017.json``) as a ``pycocotools`` COCO object.

    The file is read and checked by :func:`ssd_resnet34.evaluation.accuracy.ground_truth.read_annotations`
    (raises ``FileNotFoundError`` when it does not exist, ``ValueError`` naming the first bad entry
    or when it is not a COCO instances JSON). Raises ``ImportError`` naming the ``eval`` extra
    without pycocotools.
    """
    COCO = _pycocotools("pycocotools.coco").COCO
    dataset = read_annotations(annotation_json)
    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _check_records(records: Iterable[Mapping[str, Any]], image_ids: set[int], category_ids: set[int]) -> list[dict]:
    checked = []
    for n, rec in enumerate(records):
        if not isinstance(rec, Mapping) or not all(k in rec for k in _RESULT_KEYS):
            raise ValueError(f"records[{n}] must be a dict with keys {_RESULT_KEYS}, got {rec!r}")
        if rec["image_id"] not in image_ids:
            raise ValueError(f"records[{n}] has image_id {rec['image_id']!r}, which is not among the evaluated images")
        if rec["category_id"] not in category_ids:
            raise ValueError(
                f"records[{n}] has category_id {rec['category_id']!r}, which is not a category of the annotation file"
            )
        bbox = rec["bbox"]
        if len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox):
            raise ValueError(f"records[{n}]['bbox'] must be 4 finite numbers [x, y, width, height], got {bbox!r}")
        if not math.isfinite(float(rec["score"])):
            raise ValueError(f"records[{n}]['score'] must be a finite number, got {rec['score']!r}")
        checked.append(
            {
                "image_id": int(rec["image_id"]),
                "category_id": int(rec["category_id"]),
                "bbox": [float(v) for v in bbox],
                "score": float(rec["score"]),
            }
        )
    return checked


def _empty_results(coco_cls: Any, gt: Any) -> Any:
    # loadRes([]) fails in pycocotools (it reads anns[0]); an index without annotations
    # evaluates to AP 0 for every category that has ground truth.
    dt = coco_cls()
    dt.dataset = {
        "images": copy.deepcopy(gt.dataset["images"]),
        "categories": copy.deepcopy(gt.dataset["categories"]),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def _summary_lines(text: Iterable[str]) -> str:
    lines = [ln for ln in text if ln.lstrip().startswith(("Average Precision", "Average Recall"))]
    return "\n".join(lines[:12])


def _run_pycocotools(gt: Any, records: list[dict], image_ids: list[int]) -> tuple[list[float], str, Any]:
    COCO = _pycocotools("pycocotools.coco").COCO
    COCOeval = _pycocotools("pycocotools.cocoeval").COCOeval

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        dt = gt.loadRes(records) if records else _empty_results(COCO, gt)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:12]], _summary_lines(log.getvalue().splitlines()), ev


def _run_faster_coco_eval(gt: Any, records: list[dict], image_ids: list[int]) -> tuple[list[float], str, Any]:
    try:
        import faster_coco_eval
    except ImportError:
        raise ValueError(
            "evaluator 'faster-coco-eval' needs the faster-coco-eval package (pip install faster-coco-eval); "
            "or use evaluator 'pycocotools'"
        ) from None
    printed: list[str] = []
    fgt = faster_coco_eval.COCO(copy.deepcopy(gt.dataset))
    dt = fgt.loadRes(records) if records else _empty_results(faster_coco_eval.COCO, fgt)
    ev = faster_coco_eval.COCOeval_faster(fgt, dt, iouType="bbox", print_function=printed.append)
    ev.params.imgIds = image_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats[:12]], _summary_lines(printed), ev


def evaluate(
    coco_gt: Any,
    records: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int],
    *,
    evaluator: str = "pycocotools",
) -> CocoEvaluation:
    """COCO bbox AP/AR of ``records`` over exactly the images ``image_ids`` (``params.imgIds``).

    ``coco_gt``: from :func:`load_ground_truth`. ``records``: COCO results dicts (bbox xywh in
    pixels); may be empty (every AP and AR is then 0, or -1 where there is no ground truth).
    ``image_ids``: the images that were run, all present in ``coco_gt``.
    ``evaluator``: one of :data:`EVALUATORS`.

    Raises ``ValueError`` for an unknown evaluator, an empty or unknown ``image_ids``, a record
    for an image outside ``image_ids``, an unknown category id, or a non-finite bbox/score.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise ValueError("image_ids is empty: nothing to evaluate")
    unknown = [i for i in ids if i not in coco_gt.imgs]
    if unknown:
        raise ValueError(f"image_ids not in the annotation file: {unknown[:5]}")
    checked = _check_records(records, set(ids), set(coco_gt.cats))
    run = _run_pycocotools if evaluator == "pycocotools" else _run_faster_coco_eval
    stats, summary, ev = run(coco_gt, checked, ids)
    return CocoEvaluation(tuple(stats), summary, tuple(ids), len(checked), evaluator,
                          precision=ev.eval["precision"], category_ids=tuple(int(c) for c in ev.params.catIds))
