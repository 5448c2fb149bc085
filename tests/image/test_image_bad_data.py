"""Issue 15, item 13: a 12-bit JPEG is refused with a readable reason, a PNG with a large
legitimate ICC profile is read, and a JPEG with corrupt compressed data is refused (never decoded
with garbled blocks and counted as processed)."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from ssd_resnet34.image import ImageError, decode_image, read_image


def _photo_jpeg() -> bytes:
    rng = np.random.default_rng(3)
    base = cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (256, 192), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_a_12_bit_jpeg_is_refused_with_its_reason_not_an_object_repr(tmp_path):
    data = bytearray(_photo_jpeg())
    sof = data.find(b"\xff\xc0")
    data[sof + 4] = 12  # sample precision: 12 bits
    path = tmp_path / "deep.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message == f"{path}: cannot read its JPEG header (cannot handle 12-bit layers)", message
    assert "object at 0x" not in message and "BytesIO" not in message


def _icc_profile(size: int) -> bytes:
    """A well-formed ICC v4 display profile header (RGB, XYZ PCS, D50), no tags, padded."""
    header = bytearray(128)
    struct.pack_into(">I", header, 0, size)
    header[4:8], header[12:16], header[16:20], header[20:24], header[36:40] = b"none", b"mntr", b"RGB ", b"XYZ ", b"acsp"
    struct.pack_into(">I", header, 8, 0x04300000)
    struct.pack_into(">iii", header, 68, 63190, 65536, 54061)
    padding = np.random.default_rng(0).integers(0, 256, size - 132, dtype=np.uint8).tobytes()
    return bytes(header) + struct.pack(">I", 0) + padding


def test_a_png_with_a_2_mb_icc_profile_is_read(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(buffer, format="PNG", icc_profile=_icc_profile(2_000_000))
    path = tmp_path / "profiled.png"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):
        Image.open(path)  # Pillow's own limit, which the size check must not inherit
    np.testing.assert_array_equal(read_image(path), image)


def _corrupt(data: bytes) -> bytes:
    """Cut 2,000 bytes out of the middle of the entropy-coded data: the end-of-image marker
    stays, and comes before the last blocks are decoded."""
    middle = len(data) // 2
    return data[:middle] + data[middle + 2000 :]


def test_corrupt_jpeg_data_is_refused(tmp_path, capfd):
    good = _photo_jpeg()
    bad = _corrupt(good)
    assert cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV takes it
    assert "Corrupt JPEG data" in capfd.readouterr().err  # ... with libjpeg's own line on stderr
    path = tmp_path / "damaged.jpg"
    path.write_bytes(bad)
    with pytest.raises(ImageError, match=r"damaged\.jpg: corrupt JPEG data \(libjpeg-turbo: Corrupt JPEG data: "
                                         r".*\); refused: it would decode with grey or garbled blocks"):
        read_image(path)
    with pytest.raises(ImageError, match="corrupt JPEG data"):
        decode_image(bad, "damaged.jpg")
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # refused before OpenCV decodes it
    # A trailer after the end-of-image marker is no corruption; neither is a CMYK JPEG.
    assert read_image_bytes(tmp_path, good + b"camera trailer").shape == (192, 256, 3)
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30), (10, 20, 30, 40)).save(cmyk, format="JPEG")
    assert read_image_bytes(tmp_path, cmyk.getvalue()).shape == (30, 40, 3)


def read_image_bytes(tmp_path, data: bytes) -> np.ndarray:
    path = tmp_path / "ok.jpg"
    path.write_bytes(data)
    return read_image(path)
