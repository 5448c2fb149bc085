"""The pixel dimensions an image file declares, read from its header before anything is decoded.

The decompression-bomb guard of :func:`ssd_resnet34.image.read_image` must hold for every format
OpenCV decodes, whatever the file is named: a small file can declare an image of billions of
pixels, and OpenCV allocates the whole image before it finds out the data is missing. So the
format is recognized by its signature (the first bytes), and the declared width and height are
read from its header:

- by Pillow's header parser, restricted to the recognized format (JPEG, BMP, TIFF and BigTIFF,
  WebP, GIF, Sun raster, JPEG 2000, AVIF, PBM/PGM/PPM), which reads the header only (Pillow
  decodes lazily); its own reason is in the error (e.g. "cannot handle 12-bit layers");
- by this module for the formats Pillow does not read: Radiance HDR (line for line as OpenCV's
  ``rgbe.cpp`` reads it, so the guard and the decoder never disagree on the size), PAM and PFM;
  and for PNG (its IHDR chunk, which comes first: Pillow would parse every chunk before the
  pixels, and refuses an ICC profile over 1 MB).

Every file is also bounded in bytes before it is read (:func:`max_file_bytes`).

A file whose signature is none of these, or whose header cannot be read, is refused
(:class:`HeaderError`) rather than handed to a decoder that would allocate first. OpenEXR is
recognized but refused: opencv-python builds ship with its reader disabled.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import NamedTuple, Optional, Tuple

from PIL import Image

__all__ = [
    "DECODER_MAX_BYTES",
    "HeaderError",
    "ImageHeader",
    "METADATA_BYTES",
    "SIGNATURE_BYTES",
    "max_file_bytes",
    "read_header",
    "sniff_format",
]


class HeaderError(ValueError):
    """The file's format is not recognized, or its header cannot be read."""


class ImageHeader(NamedTuple):
    """What a header declares: the format's name and the image's width and height in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# (format name, Pillow plugin or None for this module's own parser)
_JPEG = ("JPEG", "JPEG")
_PNG = ("PNG", "PNG")
_BMP = ("BMP", "BMP")
_TIFF = ("TIFF", "TIFF")
_WEBP = ("WebP", "WEBP")
_GIF = ("GIF", "GIF")
_SUN = ("Sun raster", "SUN")
_JP2 = ("JPEG 2000", "JPEG2000")
_AVIF = ("AVIF", "AVIF")
_PNM = ("PNM", "PPM")
_PFM = ("PFM", None)
_PAM = ("PAM", None)
_HDR = ("Radiance HDR", None)
_EXR = ("OpenEXR", None)

_PREFIXES: Tuple[Tuple[bytes, Tuple[str, Optional[str]]], ...] = (
    (b"\xff\xd8\xff", _JPEG),
    (b"\x89PNG\r\n\x1a\n", _PNG),
    (b"BM", _BMP),
    (b"II*\x00", _TIFF),
    (b"MM\x00*", _TIFF),
    (b"II+\x00", _TIFF),  # BigTIFF
    (b"MM\x00+", _TIFF),
    (b"GIF87a", _GIF),
    (b"GIF89a", _GIF),
    (b"\x59\xa6\x6a\x95", _SUN),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _JP2),
    (b"\xff\x4f\xff\x51", _JP2),  # raw codestream (.j2k)
    (b"#?RADIANCE", _HDR),
    (b"#?RGBE", _HDR),
    (b"v/1\x01", _EXR),
    (b"P7", _PAM),
    (b"PF", _PFM),
    (b"Pf", _PFM),
    *((b"P" + str(k).encode(), _PNM) for k in range(1, 7)),
)


#: Bytes :func:`sniff_format` needs from the start of a file.
SIGNATURE_BYTES = 32

#: ``cv2.imdecode`` takes at most this many bytes (its buffer is one OpenCV matrix row, whose
#: length is a C ``int``): a larger buffer is an OpenCV assertion, never an image.
DECODER_MAX_BYTES = 2**31 - 1

#: What a file may hold besides its pixels (ICC profile, EXIF, XMP, palettes, thumbnails), in
#: bytes: 64 MiB.
METADATA_BYTES = 64 * 2**20

#: The most bytes one pixel takes in the largest legitimate encoding of each format OpenCV
#: decodes (uncompressed or a codec's worst-case expansion, at the widest sample type):
#: JPEG 8 (4:4:4 quality 100 noise measures 4.1, CMYK and progressive more), PNG 8 (16-bit RGBA),
#: BMP 4 (32-bit), TIFF 32 (4 channels of float64), WebP 8 (lossless noise measures 3.0), GIF 2
#: (12-bit LZW codes for 8-bit pixels), Sun raster 8 (RLE of 32-bit), JPEG 2000 and AVIF 16
#: (16-bit 4 channels and codec overhead), PNM 24 (ASCII ``P3`` with 16-bit samples, ``65535 ``
#: and line breaks), PAM 8 (4 channels of 16 bits), PFM 12 (3 channels of float32), Radiance HDR
#: 5 (RGBE, RLE overhead).
BYTES_PER_PIXEL = {
    _JPEG[0]: 8, _PNG[0]: 8, _BMP[0]: 4, _TIFF[0]: 32, _WEBP[0]: 8, _GIF[0]: 2, _SUN[0]: 8,
    _JP2[0]: 16, _AVIF[0]: 16, _PNM[0]: 24, _PAM[0]: 8, _PFM[0]: 12, _HDR[0]: 5, _EXR[0]: 32,
}


def max_file_bytes(format_name: str, max_pixels: int) -> int:
    """The largest file, in bytes, that can hold an image of ``max_pixels`` pixels in the format
    ``format_name`` (a name :func:`sniff_format` returns): ``max_pixels`` times the format's
    ``BYTES_PER_PIXEL``, plus ``METADATA_BYTES``, and never above ``DECODER_MAX_BYTES``. A larger
    file is not an image within the limit, and is refused before it is read."""
    return min(max_pixels * BYTES_PER_PIXEL[format_name] + METADATA_BYTES, DECODER_MAX_BYTES)


def sniff_format(data: bytes) -> Tuple[str, Optional[str]]:
    """``(format name, Pillow plugin name or None)`` from the file's first bytes.

    Raises :class:`HeaderError` when the signature is not one of an image format OpenCV decodes.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return _AVIF
    for prefix, kind in _PREFIXES:
        if data.startswith(prefix):
            return kind
    raise HeaderError("not an image (unrecognized format: the first bytes are no known image signature)")


#: The longest Radiance header read (bytes up to the resolution line); a longer one is refused.
_HDR_MAX_HEADER = 2**20
_HDR_FORMAT = b"FORMAT=32-bit_rle_rgbe\n"
# sscanf(line, "-Y %d +X %d"): a space matches any run of C whitespace, %d skips it too.
_C_SPACE = rb"[ \t\n\v\f\r]*"
_HDR_SIZE = re.compile(rb"-Y" + _C_SPACE + rb"([+-]?[0-9]+)" + _C_SPACE + rb"\+X" + _C_SPACE + rb"([+-]?[0-9]+)")


def _fgets(data: bytes, position: int) -> Tuple[Optional[bytes], int]:
    """C's ``fgets(buf, 128, file)`` at ``position``: up to 127 bytes, through the first newline;
    None at the end of the data."""
    if position >= len(data):
        return None, position
    newline = data.find(b"\n", position, position + 127)
    end = position + 127 if newline < 0 else newline + 1
    return data[position:end], min(end, len(data))


def _c_int(digits: bytes) -> int:
    """What glibc's ``sscanf("%d")`` stores: ``strtol`` (clamped to 64 bits), cast to a 32-bit int."""
    value = max(-(2**63), min(int(digits), 2**63 - 1))
    return (value + 2**31) % 2**32 - 2**31


def _radiance_size(data: bytes) -> Tuple[int, int]:
    """Radiance RGBE, read exactly as OpenCV's ``RGBE_ReadHeader`` (``imgcodecs/src/rgbe.cpp``) reads
    it, line by line as ``fgets(buf, 128)`` splits them: the first line is skipped; then the header
    ends at the first line that starts with a newline (a line of spaces does not end it); lines
    starting with ``#`` are comments; ``FORMAT=32-bit_rle_rgbe`` must be one of the lines; the line
    after the header is ``-Y H +X W`` as ``sscanf`` reads it (the only orientation OpenCV decodes).
    OpenCV refuses a width or height <= 0, and so does this."""
    limit = data[: _HDR_MAX_HEADER]
    _, position = _fgets(limit, 0)
    has_format = False
    while True:
        line, position = _fgets(limit, position)
        if line is None:
            raise HeaderError(
                "cannot read its Radiance HDR header (no empty line ending it"
                f"{' in its first 1 MiB' if len(data) > _HDR_MAX_HEADER else ''})"
            )
        if line[:1] == b"\n":
            break
        if line[:1] != b"#" and line.split(b"\0", 1)[0] == _HDR_FORMAT:
            has_format = True
    if not has_format:
        raise HeaderError("cannot read its Radiance HDR header (no FORMAT=32-bit_rle_rgbe line)")
    line, _ = _fgets(limit, position)
    match = _HDR_SIZE.match((line or b"").split(b"\0", 1)[0])
    if match is None:
        raise HeaderError("cannot read its Radiance HDR header (no resolution line -Y H +X W after the header)")
    height, width = _c_int(match.group(1)), _c_int(match.group(2))
    if width <= 0 or height <= 0:
        raise HeaderError(f"cannot read its Radiance HDR header (it declares {width}x{height} pixels)")
    return width, height


def _pam_size(data: bytes) -> Tuple[int, int]:
    """PAM (P7): ``WIDTH w`` and ``HEIGHT h`` lines before ``ENDHDR``."""
    header = data[:65536].split(b"ENDHDR", 1)
    fields = {}
    for line in header[0].split(b"\n")[1:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1])
    if len(header) != 2 or b"WIDTH" not in fields or b"HEIGHT" not in fields:
        raise HeaderError("cannot read its PAM header (WIDTH, HEIGHT and ENDHDR expected)")
    return fields[b"WIDTH"], fields[b"HEIGHT"]


def _pfm_size(data: bytes) -> Tuple[int, int]:
    """PFM (``PF`` colour, ``Pf`` grey): whitespace-separated width, height and scale."""
    fields = data[2:256].split(None, 3)
    if len(fields) < 3 or not (fields[0].isdigit() and fields[1].isdigit()):
        raise HeaderError("cannot read its PFM header (width and height expected)")
    return int(fields[0]), int(fields[1])


def read_header(data: bytes) -> ImageHeader:
    """The format and declared size of an image file's bytes, without decoding the image.

    Raises :class:`HeaderError` when the format is not recognized, cannot be checked (OpenEXR) or
    its header is unreadable (the message says why, e.g. a 12-bit JPEG), and
    ``PIL.Image.DecompressionBombError`` when a Pillow plugin (WebP) finds the declared size
    beyond twice Pillow's own limit (the caller reports it as too large).
    """
    name, plugin = sniff_format(data)
    if name == _HDR[0]:
        width, height = _radiance_size(data)
    elif name == _PAM[0]:
        width, height = _pam_size(data)
    elif name == _PFM[0]:
        width, height = _pfm_size(data)
    elif name == _PNG[0]:
        width, height = _png_size(data)
    elif plugin is None:
        raise HeaderError(f"{name} images are not accepted (their size cannot be checked before decoding)")
    else:
        width, height = _pillow_size(data, name, plugin)
    return ImageHeader(name, int(width), int(height))


def _png_size(data: bytes) -> Tuple[int, int]:
    """PNG: the IHDR chunk, which must come first (as libpng requires). Read here rather than by
    Pillow, which parses every chunk before the image data and refuses a legitimate ICC profile
    over 1 MB (``PngImagePlugin.MAX_TEXT_CHUNK``); libpng, OpenCV's decoder, reads it."""
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise HeaderError("cannot read its PNG header (the IHDR chunk must come first)")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _pillow_size(data: bytes, name: str, plugin: str) -> Tuple[int, int]:
    """Width and height from Pillow's parser for ``plugin``, called directly so that its own
    reason reaches the message (``Image.open`` replaces it by "cannot identify image file
    <_io.BytesIO object at 0x...>"). Pillow's decompression-bomb check is not needed: the caller
    compares the size with its own limit."""
    Image.init()  # registers the plugins once
    factory = Image.OPEN[plugin][0]
    try:
        with warnings.catch_warnings():
            # Some plugins (WebP) check Pillow's own limit, warning between it and twice it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with factory(io.BytesIO(data), "") as header:
                return header.size
    except Image.DecompressionBombError:
        raise
    except Exception as error:  # Pillow's own errors for a broken header
        reason = _OBJECT_REPR.sub("", str(error)).strip() or type(error).__name__
        raise HeaderError(f"cannot read its {name} header ({reason})") from None
