"""Images in requests: their format and size from the first bytes, and what each provider charges.

Token rules (input tokens per image), as each provider documents them:

- OpenAI (GPT-4o family, ``detail``): ``low`` 85; ``high``/``auto``: the image is fitted within
  2048x2048, then its shortest side brought down to 768 px, and each 512 px tile costs 170, plus 85.
- Anthropic: the image is scaled down to a long edge of at most 1568 px and at most about 1.15
  megapixels (1,600 tokens), then costs ``ceil(width * height / 750)``.
- Gemini: 258 when both sides are at most 384 px; else 258 per 768x768 tile.
- Ollama: model-dependent; the emulator charges LLaVA's 576 (a 336 px CLIP view in 14 px patches).

An image by URL (or a Gemini ``fileData`` reference) is not fetched: it counts as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass

#: The size assumed for an image the emulator cannot see (a URL).
UNSEEN_SIZE = (1024, 1024)
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
_DATA_URL = re.compile(r"^data:(image/[a-zA-Z0-9.+-]+);base64,(.*)$", re.DOTALL)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the emulator knows of an image: its format (None when unseen) and size."""

    format: str | None
    width: int
    height: int


UNSEEN = ImageInfo(None, *UNSEEN_SIZE)


class BadImage(ValueError):
    """Bytes that are not base64, or not an image of a known format."""


def decode_base64(data: str) -> bytes:
    """Strict base64 (padding and alphabet checked), as the providers decode image data."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImage(f"illegal base64 data ({exc})") from None


def sniff(data: bytes) -> ImageInfo:
    """Format and size of PNG, JPEG, GIF or WebP bytes; :class:`BadImage` for anything else."""
    info = _png(data) or _gif(data) or _jpeg(data) or _webp(data)
    if info is None:
        raise BadImage("not a PNG, JPEG, GIF or WebP image")
    return info


def from_base64(data: str) -> ImageInfo:
    return sniff(decode_base64(data))


def parse_data_url(url: str) -> tuple[str, ImageInfo] | None:
    """``(media type, info)`` of a ``data:image/...;base64,...`` URL, None when ``url`` is not
    one; :class:`BadImage` when its bytes are not an image."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    return match.group(1), from_base64(match.group(2))


def openai_tokens(info: ImageInfo, detail: str = "auto") -> int:
    if detail == "low":
        return 85
    width, height = float(info.width), float(info.height)
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def anthropic_tokens(info: ImageInfo) -> int:
    width, height = float(info.width), float(info.height)
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1600 * 750 / (width * height)))
    return max(1, math.ceil(width * scale * height * scale / 750))


def gemini_tokens(info: ImageInfo) -> int:
    if info.width <= 384 and info.height <= 384:
        return 258
    return 258 * math.ceil(info.width / 768) * math.ceil(info.height / 768)


def ollama_tokens(info: ImageInfo) -> int:
    return 576


def _png(data: bytes) -> ImageInfo | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return ImageInfo("png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))


def _gif(data: bytes) -> ImageInfo | None:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    return ImageInfo("gif", int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))


def _jpeg(data: bytes) -> ImageInfo | None:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return ImageInfo("jpeg", width, height)
        i += 2 + length
    return None


def _webp(data: bytes) -> ImageInfo | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 ":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        return None
    return ImageInfo("webp", width, height)
