"""The decompression-bomb guard holds for every format OpenCV decodes, whatever the file is named:
the size is read from the header before anything is decoded, and a format whose header cannot be
read is refused."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ssd_resnet34.image import MAX_IMAGE_PIXELS, ImageError, read_image
from ssd_resnet34.image.headers import HeaderError, read_header, sniff_format

SIDE = 20_000  # 400 megapixels: 1.2 GB as uint8 BGR, 4.8 GB as float32 (Radiance)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # a start of the pixel data: far too little
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)


def _bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\x00" * 64


def _tiff(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16


def _webp(width: int, height: int) -> bytes:
    # VP8L (lossless) header: signature 0x2f, then 14 bits width - 1, 14 bits height - 1.
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _pnm(width: int, height: int) -> bytes:
    return f"P6\n{width} {height}\n255\n".encode() + b"\x00" * 64


def _pam(width: int, height: int) -> bytes:
    return f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n".encode() + b"\x00" * 64


def _hdr(width: int, height: int) -> bytes:  # OpenCV reads only "-Y H +X W"
    return f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode() + b"\x00" * 64


def _jpeg(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof + b"\xff\xd9"


def _gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"  # 2-colour table
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + descriptor + b"\x02\x02\x44\x01\x00\x3b"


HUGE = {
    "hdr": _hdr, "tiff": _tiff, "webp": _webp, "pnm": _pnm, "bmp": _bmp,
    "png": _png, "pam": _pam, "jpeg": _jpeg, "gif": _gif,
}


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, kind):
    width, height = (16_384, 16_384) if kind == "webp" else (SIDE, SIDE)  # WebP's maximum
    path = tmp_path / "photo.jpg"  # the name says JPEG, whatever the content
    path.write_bytes(HUGE[kind](width, height))
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ImageError, match=rf"image too large to decode safely.*{width}x{height}|image too large to decode safely \("):
        read_image(path)
    assert time.perf_counter() - start < 1.0  # refused from the header: nothing was decoded


# libwebp checks the bitstream, not only the header: real WebP files are sized in
# test_every_format_opencv_writes_is_read_and_sized.
@pytest.mark.parametrize("kind", sorted(set(HUGE) - {"webp"}))
def test_headers_declare_what_was_written(kind):
    header = read_header(HUGE[kind](3000, 2000))
    assert (header.width, header.height) == (3000, 2000), header


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm", ".pam", ".pfm", ".hdr",
                                 ".jp2", ".ras", ".gif", ".avif"])
def test_every_format_opencv_writes_is_read_and_sized(tmp_path, ext):
    image = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    source = image.astype(np.float32) / 255 if ext in (".pfm", ".hdr") else image
    ok, encoded = cv2.imencode(ext, source)
    if not ok:
        pytest.skip(f"this OpenCV cannot encode {ext}")
    header = read_header(encoded.tobytes())
    assert (header.width, header.height) == (53, 37), (ext, header)
    path = tmp_path / f"img{ext}"
    path.write_bytes(encoded.tobytes())
    decoded = read_image(path)
    assert decoded.shape == (37, 53, 3) and decoded.dtype == np.uint8


def test_radiance_orientations():
    # OpenCV reads only "-Y H +X W" (rows top to bottom, columns left to right) and needs FORMAT.
    assert read_header(b"#?RADIANCE\nEXPOSURE=1\nFORMAT=32-bit_rle_rgbe\n\n-Y 480 +X 640\n")[1:] == (640, 480)
    with pytest.raises(HeaderError, match="no resolution line -Y H"):
        read_header(b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n+X 640 -Y 480\n")
    with pytest.raises(HeaderError, match="Radiance HDR header"):
        read_header(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n")


_FORMAT = b"FORMAT=32-bit_rle_rgbe\n"
#: Radiance headers (for an 8 x 4 image) that a lenient parser reads otherwise than OpenCV.
RADIANCE_HEADERS = {
    "plain": b"#?RADIANCE\n" + _FORMAT + b"\n-Y 4 +X 8\n",
    "format before another line": b"#?RADIANCE\n" + _FORMAT + b"EXPOSURE=1\n\n-Y 4 +X 8\n",
    "no format line": b"#?RADIANCE\n\n-Y 4 +X 8\n",
    "columns first": b"#?RADIANCE\n" + _FORMAT + b"\n+X 8 -Y 4\n",
    "a line of spaces is not the end": b"#?RADIANCE\n \n-Y 2 +X 2\n" + _FORMAT + b"\n-Y 4 +X 8\n",
    "32-bit overflow": b"#?RADIANCE\n" + _FORMAT + b"\n-Y 4294967300 +X 8\n",
    "64-bit overflow": b"#?RADIANCE\n" + _FORMAT + b"\n-Y 99999999999999999999999 +X 8\n",
    "no spaces": b"#?RADIANCE\n" + _FORMAT + b"\n-Y4+X8\n",
    "signs, tabs and a tail": b"#?RADIANCE\n" + _FORMAT + b"\n-Y\t+4 +X   8 tail\n",
    "a long line split at 127 bytes": b"#?RADIANCE\n" + b"A" * 127 + _FORMAT + b"\n-Y 4 +X 8\n",
    "a 127-byte line ends the header": b"#?RADIANCE\n" + b"A" * 127 + b"\n" + _FORMAT + b"\n-Y 2 +X 2\n-Y 4 +X 8\n",
    "a long first line": b"#?RADIANCE" + b"B" * 117 + b"\n" + _FORMAT + b"\n-Y 4 +X 8\n",
    "comments": b"#?RADIANCE\n# FORMAT=x\n" + _FORMAT + b"\n-Y 4 +X 8\n",
    "a NUL in the format line": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\x00x\n\n-Y 4 +X 8\n",
    "CRLF": b"#?RADIANCE\r\n" + _FORMAT + b"\r\n-Y 4 +X 8\r\n",
    "negative": b"#?RADIANCE\n" + _FORMAT + b"\n-Y -4 +X 8\n",
}


@pytest.mark.parametrize("case", sorted(RADIANCE_HEADERS))
def test_radiance_headers_are_read_exactly_as_opencv_reads_them(case):
    data = RADIANCE_HEADERS[case] + bytes(4 * 8 * 4 * 4)  # flat RGBE pixels, more than enough
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        with pytest.raises(HeaderError, match="Radiance HDR header"):
            read_header(data)
    else:
        header = read_header(data)
        assert (header.height, header.width) == decoded.shape[:2] == (4, 8), case


def _rle_rows(width: int, height: int) -> bytes:
    """Radiance RLE scanlines of one grey value: runs of 127 bytes per channel."""
    channel = bytearray()
    left = width
    while left:
        run = min(127, left)
        channel += bytes([128 + run, 100])
        left -= run
    row = b"\x02\x02" + width.to_bytes(2, "big") + bytes(channel) * 4
    return row * height


def test_radiance_bomb_behind_a_line_of_spaces_is_refused_from_its_header(tmp_path):
    # Issue 15, item 1: a guard ending the header at " \n" reads 10x10; OpenCV decodes 12000x12000
    # (9 MB of file, 1.7 GB of float32 pixels).
    path = tmp_path / "bomb.hdr"
    path.write_bytes(b"#?RADIANCE\n \n-Y 10 +X 10\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 12000\n"
                     + _rle_rows(12_000, 12_000))
    assert path.stat().st_size < 10_000_000
    assert read_header(path.read_bytes())[1:] == (12_000, 12_000)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"image too large to decode safely: 12000x12000"):
        read_image(path)
    assert time.perf_counter() - start < 1.0  # refused from the header: nothing was decoded
    # The same rows under a small size are a real image OpenCV decodes.
    small = b"#?RADIANCE\n \n-Y 10 +X 10\nFORMAT=32-bit_rle_rgbe\n\n-Y 12 +X 16\n" + _rle_rows(16, 12)
    assert read_header(small)[1:] == (16, 12)
    (tmp_path / "small.hdr").write_bytes(small)
    assert read_image(tmp_path / "small.hdr").shape == (12, 16, 3)


def test_unrecognized_and_unreadable_formats_are_refused(tmp_path):
    with pytest.raises(HeaderError, match="unrecognized format"):
        sniff_format(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(HeaderError, match="OpenEXR images are not accepted"):
        read_header(b"v/1\x01" + b"\x00" * 64)
    with pytest.raises(HeaderError, match="cannot read its PAM header"):
        read_header(b"P7\nWIDTH 10\n")
    # A format Pillow reads but OpenCV does not decode is not in the list either.
    ico = io.BytesIO()
    Image.new("RGB", (16, 16)).save(ico, format="ICO")
    path = tmp_path / "icon.jpg"
    path.write_bytes(ico.getvalue())
    with pytest.raises(ImageError, match="unrecognized format"):
        read_image(path)


def test_limit_is_inclusive():
    side = int(MAX_IMAGE_PIXELS ** 0.5)
    assert side * side <= MAX_IMAGE_PIXELS
    assert read_header(_pnm(side, side)).pixels <= MAX_IMAGE_PIXELS
