"""Images in requests: data URLs decoded and checked once, and the pixel size read from the
image's header (PNG, JPEG, GIF, WebP) for the per-image token bound. No image library: only
the few bytes each format keeps its size in are read."""

from __future__ import annotations

import binascii
import math
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


# -- the most input tokens an image can be billed for -------------------------------------------
#: OpenAI's rules per model family (first matching name prefix): (base, per 512 px tile, the
#: multiplier of the 32 px patch rule or 0). Documented: the tile rule for GPT-4o/4.1/4.5
#: (85 + 170 a tile), GPT-5 (70 + 140), o1/o3 (75 + 150), GPT-4o mini (2833 + 5667); the patch
#: rule, min(patches, 1536) x multiplier, for 4.1-mini (1.62), 4.1-nano (2.46), o4-mini (1.72),
#: 5-mini (1.62) and 5-nano (2.46), which are bounded by the larger of it and the tile rule
#: (whichever rule a deployment applies).
_OPENAI_RULES: tuple[tuple[str, int, int, float], ...] = (
    ("gpt-4o-mini", 2833, 5667, 0),
    ("gpt-4.1-mini", 85, 170, 1.62),
    ("gpt-4.1-nano", 85, 170, 2.46),
    ("gpt-5-mini", 70, 140, 1.62),
    ("gpt-5-nano", 70, 140, 2.46),
    ("o4-mini", 75, 150, 1.72),
    ("gpt-5", 70, 140, 0),
    ("o1", 75, 150, 0),
    ("o3", 75, 150, 0),
    ("gpt-4", 85, 170, 0),
)
#: A model not in the table: the largest of each constant.
_OPENAI_UNKNOWN = (2833, 5667, 2.46)
_OPENAI_MAX_PATCHES = 1536
#: The most 512 px tiles: 2048 x 768 after scaling.
_OPENAI_MAX_TILES = 8
#: Anthropic: about (width x height) / 750, an image being scaled down past a long edge of 1568 px
#: or about 1,600 tokens; 1,750 allows for "about".
ANTHROPIC_MAX_IMAGE_TOKENS = 1750
#: Gemini 2.x: 258 tokens for an image of at most 384 x 384, else 258 per 768 x 768 tile; Gemini 3
#: bills a media resolution instead (1,120 at its default, high). An image of unknown size is
#: taken at 3072 x 3072 (16 tiles), the largest Gemini keeps before scaling down.
GEMINI_TILE_TOKENS = 258
GEMINI_3_IMAGE_TOKENS = 1120
_GEMINI_MAX_SIDE = 3072
#: Ollama: model-dependent. LLaVA takes 576, Llama 3.2 Vision up to 4 tiles of 1,601, Qwen2.5-VL
#: one token per 28 x 28 px (at most 16,384): the larger of 6,404 and that.
OLLAMA_MIN_IMAGE_TOKENS = 6404
_OLLAMA_MAX_IMAGE_TOKENS = 16384


def image_token_bound(provider_type: str | None, model_name: str | None,
                      size: tuple[int, int] | None, detail: str = "auto") -> int:
    """The most input tokens one image can be billed for by ``provider_type`` (``openai``,
    ``anthropic``, ``google``, ``ollama``; None: any of them) on model ``model_name`` (None or
    unknown: the largest constants of the provider's models), from its pixel ``size`` (None:
    unknown, each rule's largest image) and OpenAI's ``detail``.

    The rules (each provider's documented image pricing, rounded up; see the constants):
    OpenAI the larger of its tile rule (scaled down to fit 2048 x 2048, then its shortest side
    down to 768; base + per-tile tokens for each 512 px tile, at most 8; ``low`` detail the base
    alone) and its patch rule (32 px patches, at most 1,536, times the model's multiplier);
    Anthropic ``ceil(w*h/750)`` capped at :data:`ANTHROPIC_MAX_IMAGE_TOKENS`; Gemini 258 per
    768 px tile (one tile up to 384 x 384; unknown size 16 tiles), 1,120 on Gemini 3; Ollama the
    larger of 6,404 and one token per 28 x 28 px (unknown size 16,384)."""
    rules = {"openai": _openai_tokens, "anthropic": _anthropic_tokens, "google": _gemini_tokens,
             "ollama": _ollama_tokens}
    rule = rules.get(provider_type or "")
    if rule is not None:
        return rule(model_name or "", size, detail)
    return max(r(model_name or "", size, detail) for r in rules.values())


def _openai_tokens(model: str, size: tuple[int, int] | None, detail: str) -> int:
    base, per_tile, multiplier = next(
        ((b, t, m) for prefix, b, t, m in _OPENAI_RULES if model.startswith(prefix)),
        _OPENAI_UNKNOWN)
    if size is None:
        patches, tiles = _OPENAI_MAX_PATCHES, _OPENAI_MAX_TILES
    else:
        width, height = float(size[0]), float(size[1])
        patches = min(math.ceil(width / 32) * math.ceil(height / 32), _OPENAI_MAX_PATCHES)
        scale = min(1.0, 2048 / max(width, height))  # fit within 2048 x 2048
        scale *= min(1.0, 768 / (min(width, height) * scale))  # shortest side down to 768
        tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    by_patch = math.ceil(patches * multiplier)
    if detail == "low":
        return max(base, by_patch)
    return max(base + per_tile * tiles, by_patch)


def _anthropic_tokens(model: str, size: tuple[int, int] | None, detail: str) -> int:
    if size is None:
        return ANTHROPIC_MAX_IMAGE_TOKENS
    return min(math.ceil(size[0] * size[1] / 750), ANTHROPIC_MAX_IMAGE_TOKENS)


def _gemini_tokens(model: str, size: tuple[int, int] | None, detail: str) -> int:
    if model.startswith("gemini-3"):
        return GEMINI_3_IMAGE_TOKENS
    width, height = size or (_GEMINI_MAX_SIDE, _GEMINI_MAX_SIDE)
    if width <= 384 and height <= 384:
        return GEMINI_TILE_TOKENS
    return GEMINI_TILE_TOKENS * math.ceil(width / 768) * math.ceil(height / 768)


def _ollama_tokens(model: str, size: tuple[int, int] | None, detail: str) -> int:
    if size is None:
        return _OLLAMA_MAX_IMAGE_TOKENS
    patches = math.ceil(size[0] / 28) * math.ceil(size[1] / 28)
    return max(OLLAMA_MIN_IMAGE_TOKENS, min(patches, _OLLAMA_MAX_IMAGE_TOKENS))
