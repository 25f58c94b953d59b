"""Server-sent events and NDJSON framing over ``httpx`` ``aiter_lines`` (which already splits on
``\\n``, ``\\r\\n`` and ``\\r``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (None when absent) and joined ``data:`` lines."""

    event: str | None
    data: str


class SSEDecoder:
    """Feeds lines, returns an event at each blank line (WHATWG event-stream rules, minus ids)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None  # "id", "retry" and unknown fields are ignored

    def pending(self) -> bool:
        """True when lines of an event arrived but its terminating blank line did not."""
        return bool(self._data) or self._event is not None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data and self._event is None:
            return None
        event = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return event


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Events from a line iterator. An event cut off by the end of the stream is not dispatched
    (as in browsers): a truncated final event is treated as never received."""
    decoder = SSEDecoder()
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


async def iter_ndjson(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Non-empty lines of an NDJSON stream."""
    async for line in lines:
        line = line.strip()
        if line:
            yield line
