"""Files are refused by size before they are read, and every decoder failure is the image's own
:class:`ImageError` (issue 15, item 2): a bad image never stops the images around it."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from ssd_resnet34.image import MAX_IMAGE_PIXELS, ImageError, decode_image, read_image
from ssd_resnet34.image import reading
from ssd_resnet34.image.headers import BYTES_PER_PIXEL, DECODER_MAX_BYTES, METADATA_BYTES, max_file_bytes


def _jpeg(tmp_path, name="a.jpg"):
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path / name
    path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    return path


def test_a_sparse_3_gib_file_is_refused_by_its_size_before_reading(tmp_path):
    path = _jpeg(tmp_path, "big.jpg")
    os.truncate(path, 3 * 2**30)  # sparse: a JPEG start, then 3 GiB of holes
    with pytest.raises(ImageError, match=r"big\.jpg: file too large: 3,221,225,472 bytes, more than a JPEG image "
                                         r"of at most 100,000,000 pixels .* refused before reading it"):
        read_image(path)


def test_every_format_has_a_byte_bound_within_what_opencv_takes():
    for name, per_pixel in BYTES_PER_PIXEL.items():
        bound = max_file_bytes(name, MAX_IMAGE_PIXELS)
        assert bound == min(MAX_IMAGE_PIXELS * per_pixel + METADATA_BYTES, DECODER_MAX_BYTES), name
        assert bound <= 2**31 - 1
    assert max_file_bytes("JPEG", MAX_IMAGE_PIXELS) < 2**30


def test_the_byte_bound_follows_the_pixel_limit_for_files_and_bytes(tmp_path, monkeypatch):
    path = _jpeg(tmp_path)
    assert read_image(path).shape == (48, 64, 3)
    # A pixel limit of 1,000 allows a JPEG of at most 8,000 bytes of pixels plus the metadata.
    monkeypatch.setattr(reading, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr("ssd_resnet34.image.headers.METADATA_BYTES", 0)
    data = path.read_bytes() + b"\x00" * 9000  # a trailer past the end-of-image marker
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"file too large: .* \(8,000 bytes\); refused before reading it"):
        read_image(path)
    with pytest.raises(ImageError, match=r"x\.jpg: file too large"):
        decode_image(data, "x.jpg")


def test_an_opencv_exception_is_the_images_error(tmp_path):
    # 2,000,000 x 1 pixels is within the pixel limit, but wider than OpenCV decodes: cv2.imdecode
    # raises cv2.error (an assertion), not None.
    data = b"P5\n2000000 1\n255\n" + bytes(2_000_000)
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    path = tmp_path / "wide.pgm"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"wide\.pgm: not an image \(OpenCV could not decode it: .*CV_IO_MAX_IMAGE_WIDTH"):
        read_image(path)
    with pytest.raises(ImageError, match="OpenCV could not decode it"):
        decode_image(data, "wide.pgm")


def test_a_fifo_is_never_opened(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(fifo)  # would block forever if it were opened without a writer
