"""The model's tensors on the open inference protocol: its inputs and outputs (names, datatypes,
shapes: the metadata), turning a request's inputs into images to detect, and the detections into
padded output tensors.

Inputs (one of the two ways per request):

- ``image_files``: ``BYTES`` ``[N]`` (or ``[N, 1]``): one encoded image file (JPEG, PNG, ...) per
  row, decoded and preprocessed by the server;
- ``images``: ``FP32`` ``[N, 3, 1200, 1200]``, preprocessed (RGB, NCHW, normalized as
  ``ssd_resnet34.image.preprocess``), with ``image_sizes``: ``INT32`` or ``INT64`` ``[N, 2]``,
  each row the original image's (width, height) in pixels, to which the boxes are scaled.

Outputs, padded to K = the largest detection count in the response (rows ``count[i]`` and beyond
of image i are padding: zero boxes and scores, label and category id 0):

- ``boxes``: ``FP32`` ``[N, K, 4]``, ltrb (left, top, right, bottom) in pixels of the original;
- ``labels``: ``INT64`` ``[N, K]``, the model's labels 1..80 (``COCO_CLASSES[label]``);
- ``category_ids``: ``INT64`` ``[N, K]``, the COCO category ids (1..90);
- ``scores``: ``FP32`` ``[N, K]``, descending per image;
- ``count``: ``INT64`` ``[N]``, the detections of each image.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..coco import COCO_CATEGORY_IDS
from ..layout import INPUT_SHAPE
from .batcher import Answer
from .errors import HTTPError
from .limits import check_image
from .settings import ServerSettings
from .v2 import Tensor

__all__ = ["INPUTS", "OUTPUTS", "items_from_inputs", "output_tensors"]

_CHW = list(INPUT_SHAPE[1:])
#: The inputs: name, datatype, shape (-1: any size).
INPUTS = (("image_files", "BYTES", [-1]), ("images", "FP32", [-1, *_CHW]), ("image_sizes", "INT32", [-1, 2]))
#: The outputs: name, datatype, shape.
OUTPUTS = (("boxes", "FP32", [-1, -1, 4]), ("labels", "INT64", [-1, -1]), ("category_ids", "INT64", [-1, -1]),
           ("scores", "FP32", [-1, -1]), ("count", "INT64", [-1]))
_OUTPUT_NAMES = [name for name, _, _ in OUTPUTS]
_CATEGORY = np.array([0 if c is None else c for c in COCO_CATEGORY_IDS], dtype=np.int64)
_EXPECTED = ("image_files (BYTES [N], encoded image files) or images (FP32 [N, 3, 1200, 1200], preprocessed) "
             "with image_sizes (INT32 [N, 2], width and height in pixels)")


def _bad(message: str) -> HTTPError:
    return HTTPError(400, message)


def _count(tensor: Tensor, settings: ServerSettings) -> int:
    count = tensor.shape[0] if tensor.shape else 0
    if count < 1:
        raise _bad(f"input {tensor.name!r} has shape {list(tensor.shape)}; expected at least one image (N >= 1)")
    if count > settings.max_images_per_request:
        raise HTTPError(413, f"{count} images in one request; the limit is {settings.max_images_per_request} "
                             "(--max-images-per-request)")
    return count


def items_from_inputs(inputs: Dict[str, Tensor], settings: ServerSettings) -> List[Dict[str, Any]]:
    """The images a request's inputs hold, as the items of ``Service.detect``. Raises
    ``HTTPError`` 400 naming the expected inputs for a wrong name, datatype or shape; 413 for too
    many images or an image over the pixel limit."""
    unknown = sorted(set(inputs) - {name for name, _, _ in INPUTS})
    if unknown:
        raise _bad(f"unknown input {unknown[0]!r}; expected {_EXPECTED}")
    if ("image_files" in inputs) == ("images" in inputs):
        raise _bad(f"give exactly one of image_files and images; expected {_EXPECTED}")
    if "image_files" in inputs:
        files = inputs["image_files"]
        if "image_sizes" in inputs:
            raise _bad("image_sizes goes with images (preprocessed), not with image_files: the server reads each "
                       "file's size itself")
        if files.datatype != "BYTES":
            raise _bad(f"input 'image_files' has datatype {files.datatype}; expected BYTES (encoded image files)")
        if len(files.shape) not in (1, 2) or (len(files.shape) == 2 and files.shape[1] != 1):
            raise _bad(f"input 'image_files' has shape {list(files.shape)}; expected [N] or [N, 1]")
        _count(files, settings)
        items = []
        for k, data in enumerate(files.data):
            name = f"image_files[{k}]"
            check_image(data, name, settings.max_image_pixels)
            items.append({"name": name, "data": data})
        return items
    images = inputs["images"]
    if images.datatype != "FP32":
        raise _bad(f"input 'images' has datatype {images.datatype}; expected FP32 [N, 3, 1200, 1200]")
    if len(images.shape) != 4 or list(images.shape[1:]) != _CHW:
        raise _bad(f"input 'images' has shape {list(images.shape)}; expected [N, 3, 1200, 1200] (NCHW, RGB, "
                   "normalized)")
    count = _count(images, settings)
    sizes = inputs.get("image_sizes")
    if sizes is None:
        raise _bad("input 'images' needs 'image_sizes' (INT32 [N, 2]: each original image's width and height in "
                   "pixels, to which the boxes are scaled)")
    if sizes.datatype not in ("INT32", "INT64"):
        raise _bad(f"input 'image_sizes' has datatype {sizes.datatype}; expected INT32 (or INT64) [N, 2]")
    if list(sizes.shape) != [count, 2]:
        raise _bad(f"input 'image_sizes' has shape {list(sizes.shape)}; expected [{count}, 2] (width, height per "
                   "image of 'images')")
    values = np.asarray(sizes.data, dtype=np.int64)
    if (values < 1).any() or (values > 1_000_000).any():
        raise _bad("image_sizes must be widths and heights in pixels, 1..1000000")
    pixels = np.asarray(images.data)
    if not np.isfinite(pixels).all():
        raise _bad("input 'images' holds NaN or infinite values; expected preprocessed pixels")
    return [{"name": f"images[{k}]", "tensor": pixels[k], "size": (int(values[k, 0]), int(values[k, 1]))}
            for k in range(count)]


def output_tensors(answers: Sequence[Answer], wanted: Sequence[str] = ()) -> List[Tuple[str, np.ndarray]]:
    """The outputs (name, array) for ``answers``, padded as the module says; only ``wanted``
    (all when empty), in the order asked. Raises ``HTTPError`` 400 for an unknown output name."""
    for name in wanted:
        if name not in _OUTPUT_NAMES:
            raise _bad(f"unknown output {name!r}; the outputs are {', '.join(_OUTPUT_NAMES)}")
    count = np.array([len(a.detections) for a in answers], dtype=np.int64)
    k = int(count.max()) if len(count) else 0
    n = len(answers)
    boxes = np.zeros((n, k, 4), np.float32)
    labels = np.zeros((n, k), np.int64)
    scores = np.zeros((n, k), np.float32)
    for row, answer in enumerate(answers):
        found = answer.detections
        m = len(found)
        boxes[row, :m] = found.xyxy(answer.context["width"], answer.context["height"])
        labels[row, :m] = found.labels
        scores[row, :m] = found.scores
    arrays = {"boxes": boxes, "labels": labels, "category_ids": _CATEGORY[labels], "scores": scores, "count": count}
    return [(name, arrays[name]) for name in (wanted or _OUTPUT_NAMES)]
