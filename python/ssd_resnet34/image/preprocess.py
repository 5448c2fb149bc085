"""Preprocessing for SSD-ResNet34: image files or BGR arrays -> a (N, 3, 1200, 1200) batch.

The model input is MLPerf's ``pre_process_coco_resnet34`` (mlcommons/inference,
``vision/classification_and_detection/python/dataset.py``, with ``maybe_resize``): the image
resized to 1200x1200 with bilinear interpolation, channels BGR -> RGB, each value
``(x / 255 - mean) / std`` with the ImageNet ``MEAN``/``STD`` in float32, laid out NCHW.

Two ways to compute it:

- the fast path (default): ``cv2.resize(..., INTER_LINEAR)`` on the uint8 image, then the fused
  native kernel ``ssd_resnet34._native.normalize_image`` (a 256-entry lookup table per channel,
  BGR -> RGB and HWC -> CHW in one pass) writes straight into the preallocated batch. Its values
  are bit-equal to MLPerf's formula applied to the uint8-resized pixels. They differ from the
  reference as written only in the resize: OpenCV's uint8 ``INTER_LINEAR`` uses 11-bit fixed-point
  weights and rounds each resized pixel to an integer, so a pixel differs from the float32 resize
  by less than one grey level (measured maximum 0.80 over COCO photos; about 11% of values differ
  by more than half a level), i.e. less than 1 / 255 / 0.224 = 0.0175 in normalized units
  (measured maximum 0.0139).
- ``exact=True``: the reference as written: a float32 image, BGR -> RGB, ``cv2.resize`` on float32,
  ``img / 255.0 - mean``, ``/ std``, transpose; bit-for-bit MLPerf. Several times slower
  (see ``benches/bench_preprocess.py``).

Both release the GIL (OpenCV and the native kernel), so images can be preprocessed on threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .._extension import load_native
from ..layout import INPUT_SIZE
from .reading import EncodedImage, ImageError, decode_image, read_image

__all__ = [
    "INPUT_ERRORS",
    "MEAN",
    "STD",
    "BatchEntry",
    "ImageInput",
    "as_bgr",
    "as_images",
    "build_batch",
    "is_single_image",
    "load_image",
    "preprocess",
    "preprocess_into",
]

#: ImageNet mean and standard deviation per RGB channel (MLPerf ``pre_process_coco_resnet34``).
MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

_MEAN32 = np.array(MEAN, dtype=np.float32)
_STD32 = np.array(STD, dtype=np.float32)

ImageInput = Union[str, "os.PathLike[str]", bytes, EncodedImage, np.ndarray]


def as_bgr(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check a numpy image and return it as contiguous uint8 BGR (H, W, 3).

    Accepted: uint8 BGR (H, W, 3), grayscale (H, W) or (H, W, 1) (replicated to 3 channels), BGRA
    (H, W, 4) (alpha dropped, as ``cv2.imread`` does). ``TypeError`` for a non-array or a dtype
    other than uint8; ``ValueError`` for another shape or an empty image. ``name`` is used in the
    messages.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected a uint8 image (0..255), got dtype {image.dtype}; "
            "convert it, e.g. np.clip(image, 0, 255).astype(np.uint8)"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"{name}: expected an image of shape (H, W, 3) BGR, (H, W) or (H, W, 1) grayscale "
            f"or (H, W, 4) BGRA, got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image, shape {image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _preprocess_fast(image_bgr: np.ndarray, out: np.ndarray) -> None:
    resized = cv2.resize(image_bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    # The extension is imported on first use, so the exact path works without it.
    load_native().normalize_image(resized, out, mean=MEAN, std=STD)


def _preprocess_exact(image_bgr: np.ndarray, out: np.ndarray) -> None:
    # MLPerf's maybe_resize + pre_process_coco_resnet34, operation for operation: the same
    # float32 operations on every value (x / 255, - mean[c], / std[c]), done per contiguous
    # channel plane straight into ``out`` instead of on the HWC image and then transposed.
    image = np.array(image_bgr, dtype=np.float32)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    for channel, plane in enumerate(cv2.split(image)):
        target = out[channel]
        np.divide(plane, np.float32(255.0), out=target)
        np.subtract(target, _MEAN32[channel], out=target)
        np.divide(target, _STD32[channel], out=target)


#: Exceptions that concern one input (a bad file, bytes or array): what :func:`build_batch`
#: collects per image instead of raising.
INPUT_ERRORS = (ImageError, TypeError, ValueError)

_ENCODED = (bytes, bytearray, memoryview)


def is_single_image(images: Any) -> bool:
    """The one rule for "one image or many", used by :func:`preprocess`, ``iter_detect`` and
    ``detect``: a path (``str``/``os.PathLike``), an :class:`~ssd_resnet34.image.EncodedImage`,
    encoded bytes (``bytes``, ``bytearray``, ``memoryview``) or a numpy array of any rank but 4
    is one image; a 4-d array (N, H, W, C) is a stack of N images; anything else is a sequence
    or iterable of images."""
    if isinstance(images, (str, os.PathLike, EncodedImage) + _ENCODED):
        return True
    return isinstance(images, np.ndarray) and images.ndim != 4


def as_images(images: Any) -> Iterable[Any]:
    """``images`` as an iterable of single images, by :func:`is_single_image`: one image becomes
    a one-item list, a 4-d array the list of its N images; another iterable is returned as it is
    (a generator stays lazy). Raises ``TypeError`` for a value that is neither an image nor an
    iterable (naming what is accepted)."""
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images)
    if isinstance(images, Mapping) or not isinstance(images, Iterable):
        raise TypeError(
            "images: expected a path, encoded bytes, an EncodedImage, a numpy image or a sequence of "
            f"them, got {type(images).__name__}"
        )
    return images


@dataclass
class BatchEntry:
    """One input of a batch built by :func:`build_batch`: its position ``index`` and the
    input itself (``source``); ``row``: its row in the batch (None when ``error`` is set);
    ``context``: ``width``/``height`` in pixels (and ``path``/``file_name`` for files), None when
    it could not be read; ``image``: the decoded uint8 BGR image when asked for."""

    index: int
    source: Any
    row: Optional[int] = None
    context: Optional[Dict[str, Any]] = None
    error: Optional[BaseException] = None
    image: Optional[np.ndarray] = None


def build_batch(
    items: Sequence[Tuple[int, Any]],
    *,
    exact: bool = False,
    keep_images: bool = False,
    raise_errors: bool = False,
    name: Optional[str] = None,
) -> Tuple[Optional[np.ndarray], List[BatchEntry]]:
    """Read and preprocess ``(index, input)`` pairs into one (n, 3, 1200, 1200) float32 batch:
    the one batch builder of :func:`preprocess` and of the detection pipeline.

    Each input is loaded with :func:`load_image` (named ``images[index]``, or ``name`` when
    given) and written straight into its row (:func:`preprocess_into`, ``exact`` choosing
    MLPerf's float path); only one decoded image is alive at a time unless ``keep_images``.
    A bad input (:data:`INPUT_ERRORS`) is raised when ``raise_errors``, else recorded in its
    entry and left out of the batch. Returns ``(batch, entries)``: ``batch`` holds the n good
    inputs in input order (None when there is none), ``entries`` one :class:`BatchEntry` per
    input, in order.
    """
    batch = np.empty((len(items), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32) if items else None
    entries: List[BatchEntry] = []
    rows = 0
    for index, item in items:
        entry = BatchEntry(index, item)
        entries.append(entry)
        try:
            image, entry.context = load_image(item, name or f"images[{index}]")
        except INPUT_ERRORS as error:
            if raise_errors:
                raise
            entry.error = error
            continue
        preprocess_into(image, batch[rows], exact=exact)
        entry.row, rows = rows, rows + 1
        if keep_images:
            entry.image = image
    # The rows of bad inputs are never written: np.empty's untouched pages cost no memory.
    return (batch[:rows] if rows else None), entries


def preprocess(
    images: Union[ImageInput, Sequence[ImageInput]], *, exact: bool = False
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Turn images into the model's input batch (MLPerf ``pre_process_coco_resnet34``).

    ``images``: one image or a sequence of them (:func:`is_single_image`); an image is a path
    (``str`` or ``os.PathLike``) to a file OpenCV decodes (JPEG, PNG, ...), its bytes already
    read (``bytes`` or an :class:`~ssd_resnet34.image.EncodedImage` with the path they came
    from), or a numpy uint8 array: BGR (H, W, 3), grayscale (H, W) or (H, W, 1), BGRA
    (H, W, 4) (alpha dropped). A 4-d array (N, H, W, C) is a stack of N images.

    ``exact``: False (default): uint8 bilinear resize + fused native normalization (bit-equal to
    the MLPerf formula on the uint8-resized pixels; less than one grey level, 0.0175 in
    normalized units, from the float-resized reference). True: MLPerf's float32 code path as written, bit-for-bit, several times slower.

    Returns ``(batch, contexts)``: ``batch`` float32 (N, 3, 1200, 1200), RGB, NCHW, normalized
    with ``MEAN``/``STD``; ``contexts`` one dict per image with ``"width"`` and ``"height"`` of the
    original image in pixels (what the postprocessor needs to scale boxes back), plus
    ``"file_name"`` (base name) and ``"path"`` for files.

    Raises :class:`ImageError` (``ValueError``) naming the file for a bad file (see
    :func:`read_image`), ``TypeError``/``ValueError`` naming ``images[i]`` (``image`` for a
    single one) for a bad array or argument, ``ValueError`` for an empty sequence.
    """
    items = list(as_images(images))
    if not items:
        raise ValueError("images: expected at least one image, got an empty sequence")
    single = is_single_image(images)
    batch, entries = build_batch(list(enumerate(items)), exact=exact, raise_errors=True,
                                 name="image" if single else None)
    return batch, [entry.context for entry in entries]


def load_image(item: ImageInput, name: str = "image") -> Tuple[np.ndarray, Dict[str, Any]]:
    """One input as ``(uint8 BGR (H, W, 3) image, context)``: a path is read with
    :func:`~ssd_resnet34.image.read_image`, an :class:`~ssd_resnet34.image.EncodedImage` (bytes
    already read) or bare bytes decoded with :func:`~ssd_resnet34.image.decode_image` (bare bytes
    are named ``name`` in errors), an array checked with :func:`as_bgr`. The context
    holds ``width`` and ``height`` in pixels, plus ``file_name`` and ``path`` for a file.

    Raises :class:`~ssd_resnet34.image.ImageError` for a bad file, ``TypeError``/``ValueError``
    naming ``name`` for a bad array or another type.
    """
    if isinstance(item, EncodedImage):
        image = decode_image(item.data, item.path)
        extra = {"file_name": os.path.basename(item.path), "path": item.path}
    elif isinstance(item, _ENCODED):
        image = decode_image(item, name)  # an image file's bytes, named by their position
        extra = {}
    elif isinstance(item, (str, os.PathLike)):
        image = read_image(item)
        extra = {"file_name": os.path.basename(os.fspath(item)), "path": os.fspath(item)}
    elif isinstance(item, np.ndarray):
        image = as_bgr(item, name)
        extra = {}
    else:
        raise TypeError(
            f"{name}: expected a path (str or os.PathLike), encoded bytes, an EncodedImage or a numpy image, "
            f"got {type(item).__name__}"
        )
    return image, {"width": int(image.shape[1]), "height": int(image.shape[0]), **extra}


def preprocess_into(image_bgr: np.ndarray, out: np.ndarray, *, exact: bool = False) -> None:
    """Preprocess one uint8 BGR (H, W, 3) C-contiguous image into ``out``, a (3, 1200, 1200)
    float32 C-contiguous array (e.g. ``batch[i]``): the fast path, or MLPerf's float path with
    ``exact=True`` (see the module docstring)."""
    (_preprocess_exact if exact else _preprocess_fast)(image_bgr, out)
