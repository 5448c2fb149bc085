"""The accuracy pictures of ``eval``: precision-recall curves and the confusion matrix, plus the
two tables beside them (``per_class_ap.csv``, ``confusion_matrix.csv``).

- :func:`plot_pr_curves`: ``pr_curves.png``, read from the evaluator's ``eval['precision']``
  (area all, maxDets 100), nothing computed a second time: at IoU 0.5 and averaged over IoU
  0.50:0.95, the mean over all classes with ground truth plus the 10 classes with most instances.
- :func:`plot_confusion_matrix`: ``confusion_matrix.png``, row-normalized and raw
  (:mod:`.confusion` gives the definition).
- :func:`write_eval_plots`: all four files of ``eval`` into its run folder.

matplotlib (the ``plots`` extra) is imported only when a figure is drawn.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._matplotlib import new_figure, save_figure
from .confusion import CONF_THRESHOLD, ConfusionMatrix, confusion_matrix
from .per_class import ClassAP, per_class_ap, write_per_class_csv

__all__ = ["EVAL_PLOT_FILES", "plot_confusion_matrix", "plot_pr_curves", "write_eval_plots"]

#: The files :func:`write_eval_plots` writes, in order.
EVAL_PLOT_FILES = ("pr_curves.png", "per_class_ap.csv", "confusion_matrix.csv", "confusion_matrix.png")
#: Classes drawn one by one in ``pr_curves.png`` (the most frequent in the evaluated images).
TOP_CLASSES = 10
_RECALL = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs


def _curves(precision: np.ndarray, k: int | None, iou: int | None) -> np.ndarray:
    """Precision at the 101 recall points, area all / maxDets 100: class k (None: the mean over the
    classes with ground truth), IoU index ``iou`` (None: the mean over the 10 IoUs)."""
    p = precision[:, :, :, 0, 2]  # T x R x K
    p = p if iou is None else p[iou : iou + 1]
    p = p if k is None else p[:, :, k : k + 1]
    valid = p > -1
    counted = valid.sum(axis=(0, 2))
    return np.where(counted > 0, np.where(valid, p, 0).sum(axis=(0, 2)) / np.maximum(counted, 1), np.nan)


def plot_pr_curves(result: Any, classes: Sequence[ClassAP], path: Any, *, title: str = "") -> Any:
    """``pr_curves.png`` of ``result`` (a ``coco_eval.CocoEvaluation``) at ``path``: two panels
    (IoU 0.50 and IoU 0.50:0.95), each the mean over the classes with ground truth (thick) and the
    :data:`TOP_CLASSES` classes of ``classes`` (``per_class_ap`` rows) with most instances.
    1200 x 560 pixels. Returns the path."""
    precision = np.asarray(result.precision)
    frequent = sorted((c for c in classes if c.instances > 0), key=lambda c: -c.instances)[:TOP_CLASSES]
    index = {cid: k for k, cid in enumerate(result.category_ids)}
    fig = new_figure(12, 5.6)
    axes = fig.subplots(1, 2, sharey=True)
    panels = ((0, "IoU 0.50", "ap50", result.stats[1], "AP50"),
              (None, "IoU 0.50:0.95 (mean of 10 IoUs)", "ap", result.stats[0], "AP"))
    colors = [f"C{i}" for i in range(TOP_CLASSES)]
    for ax, (iou, label, field, overall, metric) in zip(axes, panels):
        for color, c in zip(colors, frequent):
            ax.plot(_RECALL, _curves(precision, index[c.category_id], iou), color=color, linewidth=1.1,
                    label=f"{c.name} ({c.instances}): {getattr(c, field):.3f}")
        ax.plot(_RECALL, _curves(precision, None, iou), color="black", linewidth=2.6,
                label=f"all classes: m{metric} {overall:.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", title=f"precision-recall, {label}")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=7.5, title=f"class (instances): {metric}", title_fontsize=8)
    axes[0].set_ylabel("precision")
    fig.suptitle(title or f"COCO precision-recall over {len(result.image_ids)} images (area all, maxDets 100)")
    return save_figure(fig, path)


def plot_confusion_matrix(cm: ConfusionMatrix, path: Any, *, title: str = "") -> Any:
    """``confusion_matrix.png`` of ``cm`` at ``path``: row-normalized (left) and raw counts on a
    log color scale (right), 81 x 81 (80 classes + background), true class down, predicted class
    across; cells with no count are left white, the others on viridis (dark at the low end, so a
    single count shows). 2400 x 1150 pixels. Returns the path."""
    from matplotlib.colors import LogNorm

    n = len(cm.names)
    fig = new_figure(24, 11.5, layout=None)  # placed by hand: 2 x 162 tick labels make layout engines slow
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.11, top=0.93, wspace=0.08)
    axes = fig.subplots(1, 2, sharey=True)
    empty = cm.matrix == 0
    panels = (
        (np.ma.masked_where(empty, cm.normalized()), {"vmin": 0.0, "vmax": 1.0},
         "normalized by row (fraction of each true class; background row: of the false positives)", "fraction"),
        (np.ma.masked_where(empty, cm.matrix), {"norm": LogNorm(vmin=0.5, vmax=max(int(cm.matrix.max()), 2))},
         "raw counts (log color scale)", "count"),
    )
    for ax, (values, scale, label, bar) in zip(axes, panels):
        image = ax.imshow(values, cmap="viridis", interpolation="nearest", **scale)  # dark even at 1 count
        ax.set_xticks(range(n), cm.names, rotation=90, fontsize=5.5)
        ax.set_xlabel("predicted class")
        ax.set_title(label, fontsize=11)
        fig.colorbar(image, ax=ax, shrink=0.6, pad=0.01, label=bar)
    axes[0].set_yticks(range(n), cm.names, fontsize=5.5)
    axes[0].set_ylabel("true class")
    axes[1].set_ylabel("true class (the rows of the left panel)")
    fig.suptitle(title or (
        f"confusion matrix at IoU > {cm.iou_threshold:g}, score >= {cm.conf_threshold:g}: {cm.correct} right class, "
        f"{cm.matched - cm.correct} wrong class, {cm.missed} missed (background column), "
        f"{cm.false_positives} false positives (background row)"), fontsize=12)
    return save_figure(fig, path)


def write_eval_plots(
    path: Callable[[str], Any],
    coco_gt: Any,
    result: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    conf_threshold: float = CONF_THRESHOLD,
    source: str = "",
) -> dict:
    """Write :data:`EVAL_PLOT_FILES` for ``eval``: ``path(name)`` gives where each goes (a
    ``RunFolder.path``). ``result``: ``coco_eval.evaluate`` of ``records`` over its images.
    Returns a summary for ``run.json`` (the confusion totals). Raises as the functions it calls
    (``MissingExtraError`` naming the ``plots`` extra without matplotlib)."""
    classes = per_class_ap(result, coco_gt)
    what = f" ({source})" if source else ""
    plot_pr_curves(result, classes, path("pr_curves.png"),
                   title=f"COCO precision-recall{what}, {len(result.image_ids)} images (area all, maxDets 100)")
    write_per_class_csv(classes, path("per_class_ap.csv"))
    cm = confusion_matrix(coco_gt, records, result.image_ids, conf_threshold=conf_threshold)
    cm.write_csv(path("confusion_matrix.csv"))
    plot_confusion_matrix(cm, path("confusion_matrix.png"))
    return {"conf_threshold": cm.conf_threshold, "iou_threshold": cm.iou_threshold, "matched": cm.matched,
            "matched_right_class": cm.correct, "missed": cm.missed, "false_positives": cm.false_positives}
