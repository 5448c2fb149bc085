"""Image preprocessing for SSD-ResNet34: image files or BGR arrays -> a (N, 3, 1200, 1200) batch.

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

Image files are read as bytes and decoded with ``cv2.imdecode(..., IMREAD_COLOR)`` (so unicode
paths work and every file becomes 3-channel BGR, as MLPerf's ``cv2.imread``: grayscale is
replicated, alpha dropped, EXIF orientation applied). Before decoding, the header is read with
Pillow and an image above ``MAX_IMAGE_PIXELS`` is refused (decompression bombs). Every problem
with a file raises :class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from .postprocess import load_native

__all__ = [
    "INPUT_SIZE",
    "MEAN",
    "STD",
    "MAX_IMAGE_PIXELS",
    "ImageError",
    "read_image",
    "as_bgr",
    "preprocess",
]

#: Side of the square model input, in pixels.
INPUT_SIZE = 1200
#: ImageNet mean and standard deviation per RGB channel (MLPerf ``pre_process_coco_resnet34``).
MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Images with more pixels than this (width * height; 100 megapixels, e.g. 12000 x 8333) are
#: refused before decoding: decoding one takes 300 MB as uint8 BGR.
MAX_IMAGE_PIXELS = 100_000_000

_MEAN32 = np.array(MEAN, dtype=np.float32)
_STD32 = np.array(STD, dtype=np.float32)

ImageInput = Union[str, "os.PathLike[str]", np.ndarray]


class ImageError(ValueError):
    """An image file that cannot be used: missing, unreadable, empty, not an image, too large.

    ``path`` is the file as given, ``reason`` what is wrong; ``str(error)`` is ``"path: reason"``.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def _read_bytes(path: Union[str, "os.PathLike[str]"]) -> bytes:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as error:
        raise ImageError(path, f"cannot read it ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(path, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(path, "not a regular file")
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageError(path, f"cannot read it ({error.strerror or error})") from None
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    return data


def _check_header(data: bytes, path) -> None:
    """Refuse an image whose header (read by Pillow, nothing decoded) declares too many pixels.

    Formats Pillow does not know are left to OpenCV, whose own limit (``CV_IO_MAX_IMAGE_PIXELS``,
    2**30 by default) applies and whose result is checked against ``MAX_IMAGE_PIXELS`` after
    decoding.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns between its own limit and twice that; this module decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as error:
        raise ImageError(path, f"image too large to decode safely ({error})") from None
    except Exception:  # not a format Pillow knows (or a broken header): OpenCV decides
        return
    _check_pixels(width, height, path)


def _check_pixels(width: int, height: int, path) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            path,
            f"image too large to decode safely: {width}x{height} = {width * height:,} pixels "
            f"(the limit, ssd_resnet34.preprocessing.MAX_IMAGE_PIXELS, is {MAX_IMAGE_PIXELS:,})",
        )


def _jpeg_is_complete(data: bytes) -> bool:
    """False for a JPEG cut short: no end-of-image marker after its first scan.

    Walks the marker segments up to the first start-of-scan (so EXIF thumbnails, which carry
    their own end-of-image marker inside APP1, are skipped), then looks for an end-of-image
    marker (``FF D9`` cannot occur inside entropy-coded data). Data after the end-of-image marker
    (camera trailers) is allowed. A malformed header returns True: OpenCV decides.
    """
    position = 2
    size = len(data)
    while position + 4 <= size:
        if data[position] != 0xFF:
            return True
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", position) >= 0
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def read_image(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read an image file as MLPerf does (``cv2.imread``): uint8 BGR, shape (H, W, 3).

    Any format OpenCV decodes (JPEG, PNG, BMP, TIFF, WebP, ...): grayscale becomes 3 equal
    channels, alpha is dropped, 16-bit is scaled to 8-bit, EXIF orientation is applied. The file is
    read as bytes (unicode paths work) and decoded with ``cv2.imdecode``.

    Raises :class:`ImageError` (a ``ValueError``) naming the file when it is missing, a directory,
    unreadable, empty (0 bytes), not an image or cut short ("not an image (OpenCV could not
    decode it)"), or declares more than ``MAX_IMAGE_PIXELS`` pixels in its header (refused
    before decoding).
    """
    data = _read_bytes(path)
    _check_header(data, path)
    if data[:3] == b"\xff\xd8\xff" and not _jpeg_is_complete(data):
        raise ImageError(path, "truncated JPEG (no end-of-image marker; the file is cut short)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(path, "not an image (OpenCV could not decode it)")
    _check_pixels(image.shape[1], image.shape[0], path)
    return image


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
        name = f"images[{index}]" if many else "image"
        if isinstance(item, (str, os.PathLike)):
            image = read_image(item)
            context = {"file_name": os.path.basename(os.fspath(item)), "path": os.fspath(item)}
        elif isinstance(item, np.ndarray):
            image = as_bgr(item, name)
            context = {}
        else:
            raise TypeError(
                f"{name}: expected a path (str or os.PathLike) or a numpy image, "
                f"got {type(item).__name__}"
            )
        context = {"width": int(image.shape[1]), "height": int(image.shape[0]), **context}
        (_preprocess_exact if exact else _preprocess_fast)(image, batch[index])
        contexts.append(context)
    return batch, contexts
