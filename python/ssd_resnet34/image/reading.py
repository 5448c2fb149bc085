"""Reading image files safely: bytes -> uint8 BGR (H, W, 3), as MLPerf's ``cv2.imread``.

Image files are read as bytes and decoded with ``cv2.imdecode(..., IMREAD_COLOR)`` (so unicode
paths work and every file becomes 3-channel BGR, as MLPerf's ``cv2.imread``: grayscale is
replicated, alpha dropped, EXIF orientation applied). Before decoding, the format is recognized
from the file's first bytes and the size its header declares is read
(:mod:`ssd_resnet34.image.headers`); an image above ``MAX_IMAGE_PIXELS``, or a file whose header
cannot be read, is refused (decompression bombs). A file larger than its format can be for an
image within the limit (:func:`~ssd_resnet34.image.headers.max_file_bytes`, at most 2 GiB - 1,
what ``cv2.imdecode`` takes) is refused from its size, before it is read. Every problem with a
file, including any ``cv2.error`` from the decoder, raises :class:`ImageError` naming the file.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple, Union

import cv2
import numpy as np
from PIL import Image

from .headers import SIGNATURE_BYTES, HeaderError, max_file_bytes, read_header, sniff_format

__all__ = ["MAX_IMAGE_PIXELS", "EncodedImage", "ImageError", "decode_image", "read_image"]

#: Images with more pixels than this (width * height; 100 megapixels, e.g. 12000 x 8333) are
#: refused before decoding: decoding one takes 300 MB as uint8 BGR.
MAX_IMAGE_PIXELS = 100_000_000


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
    """The file's bytes, checked before they are read: a regular file (a FIFO or device is never
    opened for reading: ``O_NONBLOCK``, then ``fstat`` of what was opened), not empty, of a
    recognized format (its first bytes) and no larger than that format can be for an image
    within ``MAX_IMAGE_PIXELS`` (:func:`~ssd_resnet34.image.headers.max_file_bytes`). At most that
    many bytes are ever read, even from a file that grows meanwhile."""
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
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise ImageError(path, f"cannot read it ({error.strerror or error})") from None
    with open(descriptor, "rb") as file:
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # replaced since the os.stat above
                raise ImageError(path, "not a regular file")
            start = file.read(SIGNATURE_BYTES)
            if not start:
                raise ImageError(path, "empty file (0 bytes)")
            limit = _byte_limit(start, path)
            if info.st_size > limit:
                raise ImageError(path, _too_many_bytes(info.st_size, limit, start))
            file.seek(0)
            data = file.read(info.st_size + 1)  # one allocation; one byte more shows growth
            if len(data) > info.st_size:  # it grows while it is read: never past the limit
                data += file.read(limit + 1 - len(data)) if len(data) <= limit else b""
        except OSError as error:
            raise ImageError(path, f"cannot read it ({error.strerror or error})") from None
    if len(data) > limit:
        raise ImageError(path, _too_many_bytes(len(data), limit, start))
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    return data


def _byte_limit(start: bytes, path) -> int:
    """The most bytes a file starting with ``start`` may have (its format's bound for an image of
    ``MAX_IMAGE_PIXELS`` pixels); ``ImageError`` for an unrecognized format."""
    try:
        name, _ = sniff_format(start)
    except HeaderError as error:
        raise ImageError(path, str(error)) from None
    return max_file_bytes(name, MAX_IMAGE_PIXELS)


def _too_many_bytes(size: int, limit: int, start: bytes) -> str:
    name, _ = sniff_format(start)
    return (
        f"file too large: {size:,} bytes, more than a {name} image of at most "
        f"{MAX_IMAGE_PIXELS:,} pixels (ssd_resnet34.image.MAX_IMAGE_PIXELS) can take ({limit:,} bytes); "
        "refused before reading it"
    )


def _check_header(data: bytes, path) -> None:
    """Refuse a file whose format is not recognized, whose header cannot be read, or whose header
    declares more than ``MAX_IMAGE_PIXELS`` pixels: before anything is decoded
    (:mod:`ssd_resnet34.image.headers`)."""
    try:
        header = read_header(data)
    except HeaderError as error:
        raise ImageError(path, str(error)) from None
    except Image.DecompressionBombError as error:
        raise ImageError(path, f"image too large to decode safely ({error})") from None
    _check_pixels(header.width, header.height, path, f"declared in its {header.format} header")


def _check_pixels(width: int, height: int, path, source: str = "decoded") -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            path,
            f"image too large to decode safely: {width}x{height} = {width * height:,} pixels ({source}) "
            f"(the limit, ssd_resnet34.image.MAX_IMAGE_PIXELS, is {MAX_IMAGE_PIXELS:,})",
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


def _check_jpeg_data(data: bytes, path) -> None:
    """Refuse a JPEG whose compressed data libjpeg-turbo finds corrupt.

    OpenCV decodes such a file anyway, printing libjpeg's warning ("Corrupt JPEG data: premature
    end of data segment", ...) on stderr and filling the damaged blocks with grey or garbage, so
    the detections would be silently wrong. simplejpeg's strict mode (libjpeg-turbo, stopping at
    the first warning) decodes the whole entropy-coded data at 1/8 scale, as one grey plane
    (CMYK as CMYK), which costs about 5 ms for a COCO photo. Bytes after the end-of-image marker
    are no corruption and pass."""
    import simplejpeg

    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
                               min_height=1, min_width=1, min_factor=8, strict=True)
    except ValueError as error:
        raise ImageError(path, f"corrupt JPEG data (libjpeg-turbo: {error}); refused: it would decode with grey "
                               "or garbled blocks. Re-encode the file to use it") from None


def read_image(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Read an image file as MLPerf does (``cv2.imread``): uint8 BGR, shape (H, W, 3).

    Any format OpenCV decodes whose header can be checked first (JPEG, PNG, BMP, TIFF, WebP, GIF,
    Sun raster, JPEG 2000, AVIF, PNM/PAM/PFM, Radiance HDR; see :mod:`ssd_resnet34.image.headers`),
    recognized by content, not by file name: grayscale becomes 3 equal channels, alpha is dropped,
    16-bit is scaled to 8-bit, EXIF orientation is applied. The file is read as bytes (unicode
    paths work) and decoded with ``cv2.imdecode``.

    Raises :class:`ImageError` (a ``ValueError``) naming the file when it is missing, a directory,
    unreadable, not a regular file, empty (0 bytes), larger than its format can be within
    ``MAX_IMAGE_PIXELS`` ("file too large", refused before reading), not an image (an
    unrecognized format, or one whose header cannot be read), cut short or undecodable ("not an
    image (OpenCV could not decode it)", OpenCV's exceptions included), a JPEG whose compressed
    data is corrupt ("corrupt JPEG data", refused rather than decoded with garbled blocks), or
    declares more than
    ``MAX_IMAGE_PIXELS`` pixels in its header (refused before decoding).
    """
    return decode_image(_read_bytes(path), path)


def _opencv_reason(error: "cv2.error") -> str:
    """The message of a ``cv2.error`` on one line: ``(-215:Assertion failed) ... in function ...``."""
    text = " ".join(str(error).split())
    return text.split(" error: ", 1)[-1] if " error: " in text else text


class EncodedImage(NamedTuple):
    """An image file's bytes already read (e.g. by ``ray.data.read_binary_files``), with the path
    or URI they came from: what :func:`decode_image` (and ``load_image``) take instead of a path."""

    path: str
    data: bytes


def decode_image(data: bytes, path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Decode an image file's bytes exactly as :func:`read_image` does after reading them: uint8
    BGR (H, W, 3); ``path`` names the file in errors. Raises :class:`ImageError` as
    :func:`read_image` (an empty, unrecognized, too-long, cut-short or too-large image)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not len(data):
        raise ImageError(path, "empty file (0 bytes)")
    limit = _byte_limit(bytes(data[:SIGNATURE_BYTES]), path)
    if len(data) > limit:
        raise ImageError(path, _too_many_bytes(len(data), limit, bytes(data[:SIGNATURE_BYTES])))
    data = bytes(data)
    _check_header(data, path)
    if data[:3] == b"\xff\xd8\xff":
        if not _jpeg_is_complete(data):
            raise ImageError(path, "truncated JPEG (no end-of-image marker; the file is cut short)")
        _check_jpeg_data(data, path)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # OpenCV's own failures are this image's, never the run's
        raise ImageError(path, f"not an image (OpenCV could not decode it: {_opencv_reason(error)})") from None
    if image is None or image.size == 0:
        raise ImageError(path, "not an image (OpenCV could not decode it)")
    _check_pixels(image.shape[1], image.shape[0], path)
    return image
