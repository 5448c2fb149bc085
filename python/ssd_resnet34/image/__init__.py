"""Images in: reading files safely and preprocessing them into the model's NCHW input.

- ``headers.py``: the size an image file declares, read before decoding (decompression bombs);
- ``reading.py``: ``read_image`` (file -> uint8 BGR, as MLPerf's ``cv2.imread``), ``decode_image``
  (bytes already read, e.g. by Ray Data), ``ImageError``;
- ``preprocess.py``: ``preprocess`` (images -> ``(N, 3, 1200, 1200)`` float32 and contexts).
"""

from .preprocess import MEAN, STD, ImageInput, as_bgr, load_image, preprocess, preprocess_into
from .reading import MAX_IMAGE_PIXELS, EncodedImage, ImageError, decode_image, read_image

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MEAN",
    "STD",
    "EncodedImage",
    "ImageError",
    "ImageInput",
    "as_bgr",
    "decode_image",
    "load_image",
    "preprocess",
    "preprocess_into",
    "read_image",
]
