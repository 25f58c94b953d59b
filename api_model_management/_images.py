"""Images in requests: data URLs decoded and checked once, and the pixel size read from the
image's header (PNG, JPEG, GIF, WebP) for the per-image token bound. No image library: only
the few bytes each format keeps its size in are read."""

from __future__ import annotations

import binascii
import re
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The image types every provider takes inline (OpenAI, Anthropic, Gemini, Ollama).
MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_DATA_URL = re.compile(r"data:(?P<media>[A-Za-z0-9.+/-]+);base64,(?P<data>.*)", re.DOTALL)
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})


class ImageError(ValueError):
    """An image reference that is neither an http(s) URL nor a base64 image data URL (the
    message never holds the reference)."""


@dataclass(frozen=True, slots=True)
class InlineImage:
    """A decoded data URL: its media type, the base64 text as sent and the pixel size when the
    header says it (None otherwise)."""

    media_type: str
    base64_data: str
    size: tuple[int, int] | None


def parse_data_url(url: str) -> InlineImage:
    """A ``data:image/<type>;base64,<data>`` URL checked whole: a supported media type and
    strictly valid, non-empty base64."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise ImageError("a data URL must read data:image/<type>;base64,<data>")
    media = match["media"].lower()
    if media == "image/jpg":
        media = "image/jpeg"
    if media not in MEDIA_TYPES:
        raise ImageError(f"image type must be one of {', '.join(sorted(MEDIA_TYPES))}")
    data = match["data"]
    try:
        raw = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise ImageError("the data URL's data is not valid base64") from None
    if not raw:
        raise ImageError("the data URL holds no data")
    return InlineImage(media, data, image_size(raw))


def check_http_url(url: str) -> None:
    """An ``http://`` or ``https://`` URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ImageError("the image URL cannot be parsed") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImageError("an image must be an http(s) URL or a base64 data URL")
    if any(c.isspace() for c in url):
        raise ImageError("an image URL must not contain whitespace")


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from a PNG, GIF, WebP or JPEG header; None for another format
    or a header that does not say (the caller then assumes the largest size)."""
    try:
        if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR":
            return _positive(*struct.unpack(">II", raw[16:24]))
        if raw[:6] in (b"GIF87a", b"GIF89a"):
            return _positive(*struct.unpack("<HH", raw[6:10]))
        if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
            return _webp_size(raw)
        if raw[:2] == b"\xff\xd8":
            return _jpeg_size(raw)
    except struct.error:  # a header cut short
        return None
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    chunk = raw[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        width, height = struct.unpack("<HH", raw[26:30])
        return _positive(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte
        (bits,) = struct.unpack("<I", raw[21:25])
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes, minus one
        width = int.from_bytes(raw[24:27], "little") + 1
        height = int.from_bytes(raw[27:30], "little") + 1
        return _positive(width, height) if len(raw) >= 30 else None
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment, walking the segments before it."""
    at = 2
    while at + 4 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", raw[at + 2:at + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", raw[at + 5:at + 9])
            return _positive(width, height)
        if length < 2:
            return None
        at += 2 + length
    return None
