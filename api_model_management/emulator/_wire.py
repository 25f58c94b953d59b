"""Pieces shared by the four wire protocols: the parsed call, replies, ids and time formats."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from ._shape import Shape

JSON = b"application/json"
SSE = b"text/event-stream"


@dataclass(slots=True)
class Call:
    """A chat request in provider-neutral form."""

    provider: str
    model: str
    #: The last user message (what an answer world is keyed by).
    prompt: str
    #: Every message's text, joined; seeds the answer and sizes the input.
    conversation: str
    max_tokens: int | None
    stream: bool
    include_usage: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    #: Tools, structured output, images, tool results (None for plain chat).
    shape: Shape | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class WireError(Exception):
    """A request the provider would reject (bad body, missing field); carries the reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def json_reply(status: int, payload: object, headers: list[tuple[bytes, bytes]] | None = None,
               content_type: bytes = JSON) -> Reply:
    return Reply(status, [(b"content-type", content_type), *(headers or [])], orjson.dumps(payload))


def random_id(length: int = 24) -> str:
    """Random alphanumeric text (not seeded: ids are unique, answers are deterministic)."""
    return base64.b64encode(os.urandom(length), altchars=b"xZ")[:length].decode()


def request_id() -> bytes:
    return ("req_" + random_id(24)).encode()


def go_duration(seconds: float) -> str:
    """Go's time.Duration format, as OpenAI sends it: ``12ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    seconds = round(max(0.0, seconds), 3)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{secs_text}s"
    if minutes:
        return f"{int(minutes)}m{secs_text}s"
    return f"{secs_text}s"


def rfc3339(moment: datetime, plus_s: float = 0.0) -> str:
    """UTC RFC 3339 with a ``Z`` and whole seconds, like Anthropic's reset headers."""
    return (moment + timedelta(seconds=plus_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_header(seconds: float) -> bytes:
    """Whole seconds, at least 1 (the ``Retry-After`` convention)."""
    return str(max(1, int(-(-seconds // 1)))).encode()


def text_of(content: object) -> str:
    """Text of a message content: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
