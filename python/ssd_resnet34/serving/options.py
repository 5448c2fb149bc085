"""Per-request postprocess options (``score_threshold``, ``classes``, ``max_detections``): read
from a query string or V2 request parameters, checked by the postprocessor itself, and the
postprocessors they need, built once per distinct set (a bounded cache)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable, Mapping, Optional, Tuple

from .. import postprocess
from .errors import HTTPError

__all__ = ["OPTION_NAMES", "Options", "PostprocessorCache", "read_options"]

#: The options a request may set.
OPTION_NAMES = ("score_threshold", "classes", "max_detections")

#: ``(score_threshold, classes, max_detections)``, each None when not asked for: hashable, so
#: requests with the same options share a batch and a postprocessor.
Options = Tuple[Optional[float], Optional[Tuple[Any, ...]], Optional[int]]

DEFAULT: Options = (None, None, None)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise HTTPError(400, f"{name} must be a number in [0, 1], got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{name} must be a number in [0, 1], got {value!r}") from None


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise HTTPError(400, f"{name} must be an integer >= 1, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{name} must be an integer >= 1, got {value!r}") from None


def _classes(value: Any) -> Tuple[Any, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise HTTPError(400, f"classes must be COCO class names or labels 1..80 (a list, or comma-separated), got {value!r}")
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            out.append(int(item) if item.isdigit() else item)
        else:
            out.append(item)
    if not out or any(item == "" for item in out):
        raise HTTPError(400, "classes is empty; expected COCO class names or labels 1..80, comma-separated")
    return tuple(out)


def read_options(source: Mapping[str, Any]) -> Options:
    """The options in ``source`` (query parameters or V2 ``parameters``; other keys are ignored).
    Raises ``HTTPError`` 400 for a value of the wrong form (ranges are the postprocessor's check)."""
    threshold = source.get("score_threshold")
    classes = source.get("classes")
    limit = source.get("max_detections")
    return (None if threshold is None else _float(threshold, "score_threshold"),
            None if classes is None else _classes(classes),
            None if limit is None else _int(limit, "max_detections"))


class PostprocessorCache:
    """The postprocessor for each set of options: ``base`` (the model's) for the default, one of
    the same kind with the options applied otherwise; at most ``size`` kept (least recently used
    dropped). ``get`` raises ``HTTPError`` 400 with the postprocessor's message for a bad option."""

    def __init__(self, base: postprocess.PostProcessorBase, size: int = 32) -> None:
        self.base = base
        self.kind = "python" if isinstance(base, postprocess.PythonPostProcessor) else "native"
        self.size = size
        self._cache: "OrderedDict[Hashable, postprocess.PostProcessorBase]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, options: Options) -> postprocess.PostProcessorBase:
        if options == DEFAULT:
            return self.base
        with self._lock:
            if options in self._cache:
                self._cache.move_to_end(options)
                return self._cache[options]
        threshold, classes, limit = options
        base = self.base
        try:
            built = postprocess.create(
                self.kind,
                score_threshold=base.score_threshold if threshold is None else threshold,
                iou_threshold=base.iou_threshold,
                max_candidates_per_class=base.max_candidates_per_class,
                max_detections=base.max_detections if limit is None else limit,
                classes=base.classes if classes is None else list(classes),
                class_agnostic=base.class_agnostic,
            )
        except (TypeError, ValueError) as error:
            raise HTTPError(400, str(error)) from None
        with self._lock:
            self._cache[options] = built
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return built
