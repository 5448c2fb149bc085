"""``bench --oracle``: LoadGen over head outputs encoded from the ground truth, with no model.

The accuracy path of the harness (QSL, SUT, response encoding, ``accuracy-coco.py`` scoring)
checked with a meaningful mAP: the samples are the oracle's heads of each image
(:func:`ssd_resnet34.evaluation.accuracy.oracle.encode_coco_image`, seed = ``seed`` + image id,
as ``eval --oracle``), encoded while LoadGen loads them (untimed, as the images' preprocessing),
and the "engine" passes them to the postprocessor unchanged. ``bench --mode AccuracyOnly
--oracle`` therefore gives exactly the mAP of ``eval --oracle`` on the same images.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ...accuracy.ground_truth import CocoImage
from ...accuracy.oracle import encode_coco_image
from .qsl import ImageSampleLibrary

__all__ = ["OracleEngine", "OracleSampleLibrary"]


class OracleSampleLibrary(ImageSampleLibrary):
    """A QSL whose sample ``i`` is the oracle's 12 heads (batch axis 1) of ``images[i]``.

    ``images``: :class:`CocoImage` with their ground truth (``ground_truth.list_images``);
    ``seed``: image ``i`` is encoded with ``seed + images[i].image_id``. :meth:`batch` returns
    the 12 heads of the samples, concatenated on the batch axis; :meth:`contexts` their sizes.
    """

    def __init__(self, images: Sequence[CocoImage], seed: int = 0) -> None:
        super().__init__([image.path or image.file_name for image in images], None)
        self.images = list(images)
        self.seed = seed

    def _make(self, i: int) -> tuple[Any, dict]:
        image = self.images[i]
        return encode_coco_image(image, seed=self.seed), {"width": image.width, "height": image.height}

    def _stack(self, inputs: list) -> Any:
        return inputs[0] if len(inputs) == 1 else [np.concatenate(parts, axis=0) for parts in zip(*inputs)]


class OracleEngine:
    """The "engine" of :class:`OracleSampleLibrary`: its batches already are the 12 heads.

    ``run(heads)`` returns them; ``submit(heads, then)`` calls ``then(heads)`` at once and
    returns a finished ``Future`` (an error of ``then`` is the future's exception). One
    request (``requests`` 1); a context manager, as the engines are.
    """

    name = "oracle"
    device = "none"
    precision = "none"
    mode = "latency"
    requests = 1
    is_heads = True

    def run(self, heads: List[np.ndarray]) -> List[np.ndarray]:
        return heads

    def submit(self, heads: List[np.ndarray], then: Optional[Callable[[List[np.ndarray]], Any]] = None) -> "Future[Any]":
        future: "Future[Any]" = Future()
        try:
            future.set_result(then(heads) if then is not None else heads)
        except BaseException as error:  # the future carries it, as an engine's would
            future.set_exception(error)
        return future

    def close(self) -> None:
        pass

    def __enter__(self) -> "OracleEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
