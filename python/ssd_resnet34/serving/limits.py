"""The limits every request meets before any work: the body's size, its arrival time and its
encoding (:func:`read_body`), the bearer token (:func:`check_token`) and an image's declared
size (:func:`check_image`, from the header, before decoding)."""

from __future__ import annotations

import asyncio
import hmac
import zlib
from typing import Optional

from PIL import Image

from ..image.headers import HeaderError, read_header
from .errors import HTTPError

__all__ = ["check_image", "check_token", "read_body"]


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than the limit of {limit:,} bytes (--max-body-mb)")


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decompressed (gzip or deflate), never more than ``limit`` bytes (zip bombs: 413)."""
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise HTTPError(400, f"the body is not valid {encoding} data: {error}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise HTTPError(400, f"the {encoding} body is cut short")
    return out


async def read_body(request, limit: int, timeout: float) -> bytes:
    """The whole body of a Starlette ``request``: at most ``limit`` bytes (413, from
    ``Content-Length`` before reading, else while reading; and after gzip/deflate decompression),
    arriving within ``timeout`` seconds (408: a client too slow holds nothing longer). A
    ``Content-Encoding`` other than identity, gzip or deflate is 415."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPError(400, f"Content-Length must be a number of bytes, got {length!r}")
        if int(length) > limit:
            raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise HTTPError(415, f"Content-Encoding {encoding!r} is not supported; use identity, gzip or deflate")

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, f"the request body did not arrive within {timeout:g} s (--body-timeout)") from None
    return body if encoding == "identity" else _inflate(body, encoding, limit)


def check_token(authorization: Optional[str], api_key: str) -> None:
    """Raise ``HTTPError`` 401 unless ``authorization`` is ``Bearer <api_key>`` (compared in
    constant time, ``hmac.compare_digest``)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not authorization:
        raise HTTPError(401, "authentication required: send 'Authorization: Bearer <token>'", challenge)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPError(401, "expected 'Authorization: Bearer <token>'", challenge)
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), api_key.encode("utf-8")):
        raise HTTPError(401, "invalid bearer token", challenge)


def check_image(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse, from its header alone, what is not an image (400) or declares more than
    ``max_pixels`` pixels (413): before it is queued or decoded."""
    if not data:
        raise HTTPError(400, f"{name}: empty (0 bytes); expected an image file (JPEG, PNG, ...)")
    try:
        header = read_header(data)
    except HeaderError as error:
        raise HTTPError(400, f"{name}: {error}; expected an image file (JPEG, PNG, ...)") from None
    except Image.DecompressionBombError as error:
        raise HTTPError(413, f"{name}: image too large to decode safely ({error})") from None
    if header.pixels > max_pixels:
        raise HTTPError(413, f"{name}: {header.width}x{header.height} = {header.pixels:,} pixels declared in its "
                             f"{header.format} header; the limit is {max_pixels:,} (--max-image-pixels)")
