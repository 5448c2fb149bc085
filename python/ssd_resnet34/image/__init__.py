"""Images in: reading files safely and preprocessing them into the model's NCHW input.

- ``headers.py``: the size an image file declares, read before decoding (decompression bombs);
- ``reading.py``: ``read_image`` (file -> uint8 BGR, as MLPerf's ``cv2.imread``), ``decode_image``
  (bytes already read, e.g. by Ray Data), ``ImageError``;
- ``preprocess.py``: ``preprocess`` (images -> ``(N, 3, 1200, 1200)`` float32 and contexts) and
  ``build_batch``, the one batch builder (``preprocess`` and the pipeline); ``is_single_image``,
  the one rule for "one image or many".
"""

from .preprocess import (
    INPUT_ERRORS,
    MEAN,
    STD,
    BatchEntry,
    ImageInput,
    as_bgr,
    as_images,
    build_batch,
    is_single_image,
    load_image,
    preprocess,
    preprocess_into,
)
from .reading import (
    MAX_IMAGE_PIXELS,
    EncodedImage,
    ImageError,
    decode_image,
    read_image,
)

__all__ = [
    "INPUT_ERRORS",
    "MAX_IMAGE_PIXELS",
    "MEAN",
    "STD",
    "BatchEntry",
    "EncodedImage",
    "ImageError",
    "ImageInput",
    "as_bgr",
    "as_images",
    "build_batch",
    "decode_image",
    "is_single_image",
    "load_image",
    "preprocess",
    "preprocess_into",
    "read_image",
]
