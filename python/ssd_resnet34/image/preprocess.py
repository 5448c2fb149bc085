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
from typing import Any, Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

from .._extension import load_native
from ..layout import INPUT_SIZE
from .reading import EncodedImage, decode_image, read_image

__all__ = ["MEAN", "STD", "ImageInput", "as_bgr", "load_image", "preprocess", "preprocess_into"]

#: ImageNet mean and standard deviation per RGB channel (MLPerf ``pre_process_coco_resnet34``).
MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

_MEAN32 = np.array(MEAN, dtype=np.float32)
_STD32 = np.array(STD, dtype=np.float32)

ImageInput = Union[str, "os.PathLike[str]", np.ndarray]


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


def _as_items(images: Any) -> List[ImageInput]:
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        # (N, H, W, C) is a stack of images; anything else is one image.
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (bytes, bytearray)):
        raise TypeError("images: expected a path, a numpy image or a sequence of them, got bytes")
    if not isinstance(images, Sequence):
        raise TypeError(
            "images: expected a path, a numpy image or a sequence of them, "
            f"got {type(images).__name__}"
        )
    items = list(images)
    if not items:
        raise ValueError("images: expected at least one image, got an empty sequence")
    return items


def preprocess(
    images: Union[ImageInput, Sequence[ImageInput]], *, exact: bool = False
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Turn images into the model's input batch (MLPerf ``pre_process_coco_resnet34``).

    ``images``: one image or a sequence of them; an image is a path (``str`` or
    ``os.PathLike``) to a file OpenCV decodes (JPEG, PNG, ...), or a numpy uint8 array: BGR
    (H, W, 3), grayscale (H, W) or (H, W, 1), BGRA (H, W, 4) (alpha dropped). A 4-d array
    (N, H, W, C) is a stack of N images.

    ``exact``: False (default): uint8 bilinear resize + fused native normalization (bit-equal to
    the MLPerf formula on the uint8-resized pixels; less than one grey level, 0.0175 in
    normalized units, from the float-resized reference). True: MLPerf's float32 code path as written, bit-for-bit, several times slower.

    Returns ``(batch, contexts)``: ``batch`` float32 (N, 3, 1200, 1200), RGB, NCHW, normalized
    with ``MEAN``/``STD``; ``contexts`` one dict per image with ``"width"`` and ``"height"`` of the
    original image in pixels (what the postprocessor needs to scale boxes back), plus
    ``"file_name"`` (base name) and ``"path"`` for files.

    Raises :class:`ImageError` (``ValueError``) naming the file for a bad file (see
    :func:`read_image`), ``TypeError``/``ValueError`` naming ``images[i]`` for a bad array or
    argument.
    """
    items = _as_items(images)
    batch = np.empty((len(items), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    contexts: List[Dict[str, Any]] = []
    many = len(items) > 1 or not isinstance(images, (str, os.PathLike, np.ndarray))
    for index, item in enumerate(items):
        image, context = load_image(item, f"images[{index}]" if many else "image")
        preprocess_into(image, batch[index], exact=exact)
        contexts.append(context)
    return batch, contexts


def load_image(item: ImageInput, name: str = "image") -> Tuple[np.ndarray, Dict[str, Any]]:
    """One input as ``(uint8 BGR (H, W, 3) image, context)``: a path is read with
    :func:`~ssd_resnet34.image.read_image`, an :class:`~ssd_resnet34.image.EncodedImage` (bytes
    already read) decoded with :func:`~ssd_resnet34.image.decode_image`, an array checked with
    :func:`as_bgr`. The context
    holds ``width`` and ``height`` in pixels, plus ``file_name`` and ``path`` for a file.

    Raises :class:`~ssd_resnet34.image.ImageError` for a bad file, ``TypeError``/``ValueError``
    naming ``name`` for a bad array or another type.
    """
    if isinstance(item, EncodedImage):
        image = decode_image(item.data, item.path)
        extra = {"file_name": os.path.basename(item.path), "path": item.path}
    elif isinstance(item, (str, os.PathLike)):
        image = read_image(item)
        extra = {"file_name": os.path.basename(os.fspath(item)), "path": os.fspath(item)}
    elif isinstance(item, np.ndarray):
        image = as_bgr(item, name)
        extra = {}
    else:
        raise TypeError(
            f"{name}: expected a path (str or os.PathLike) or a numpy image, got {type(item).__name__}"
        )
    return image, {"width": int(image.shape[1]), "height": int(image.shape[0]), **extra}


def preprocess_into(image_bgr: np.ndarray, out: np.ndarray, *, exact: bool = False) -> None:
    """Preprocess one uint8 BGR (H, W, 3) C-contiguous image into ``out``, a (3, 1200, 1200)
    float32 C-contiguous array (e.g. ``batch[i]``): the fast path, or MLPerf's float path with
    ``exact=True`` (see the module docstring)."""
    (_preprocess_exact if exact else _preprocess_fast)(image_bgr, out)
