"""ASGI replies with the emulator's faults: plain, streamed, cut mid-way, dropped, hung.

Dropping a connection needs the socket: uvicorn's ``send`` is a bound method of its
request/response cycle, whose ``transport`` the outermost app stores in ``scope["amm.transport"]``.
Closing it before any response bytes makes the client see a connection error (not a 500).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from ._wire import Reply

TRANSPORT_KEY = "amm.transport"


class ConnectionCut(Exception):
    """Raised when the server cannot reach the socket to drop a connection (not under uvicorn)."""


async def cut_connection(scope: Scope, receive: Receive) -> None:
    """Close the socket and wait until the server has noticed, so it does not send a 500."""
    transport = scope.get(TRANSPORT_KEY)
    if transport is None:
        raise ConnectionCut("no transport to close; the emulator must run under uvicorn")
    transport.close()
    while (await receive())["type"] != "http.disconnect":
        pass


def _start(status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> dict[str, Any]:
    if length is not None:
        headers = [*headers, (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


class Plain:
    """A complete reply, optionally after a delay; ``cut_after`` bytes then the socket closes."""

    __slots__ = ("reply", "delay_s", "cut_after")

    def __init__(self, reply: Reply, delay_s: float = 0.0, cut_after: int | None = None) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.cut_after = cut_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        reply = self.reply
        await send(_start(reply.status, reply.headers, len(reply.body)))
        if self.cut_after is None:
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send({"type": "http.response.body", "body": reply.body[: self.cut_after], "more_body": True})
        await cut_connection(scope, receive)


class Streamed:
    """A streamed reply, paced by time to first token and total latency.

    ``fault_at`` is the index of the frame replaced by ``fault_frame`` (after which the stream
    ends); a ``fault_frame`` of None cuts the connection there instead.
    """

    __slots__ = ("status", "headers", "frames", "ttft_s", "latency_s", "fault_at", "fault_frame")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], frames: list[bytes],
                 ttft_s: float = 0.0, latency_s: float = 0.0, fault_at: int | None = None,
                 fault_frame: bytes | None = None) -> None:
        self.status, self.headers, self.frames = status, headers, frames
        self.ttft_s, self.latency_s = ttft_s, latency_s
        self.fault_at, self.fault_frame = fault_at, fault_frame

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        frames = self.frames if self.fault_at is None else self.frames[: self.fault_at]
        gap_s = max(0.0, self.latency_s - self.ttft_s) / max(1, len(frames) - 1)
        if self.ttft_s > 0:
            await asyncio.sleep(self.ttft_s)
        await send(_start(self.status, self.headers, None))
        for i, frame in enumerate(frames):
            if i and gap_s > 0:
                await asyncio.sleep(gap_s)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if self.fault_at is not None and self.fault_frame is None:
            await cut_connection(scope, receive)
            return
        tail = self.fault_frame if self.fault_at is not None else b""
        await send({"type": "http.response.body", "body": tail or b""})


class Dropped:
    """Close the connection without a response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await cut_connection(scope, receive)


class Hung:
    """Never answer: wait until the client gives up, the server stops, or ``max_s`` passes."""

    __slots__ = ("max_s", "hangs")

    def __init__(self, max_s: float, hangs: set[asyncio.Future[None]]) -> None:
        self.max_s = max_s
        self.hangs = hangs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hangs.add(release)
        disconnect = asyncio.ensure_future(receive())
        waiting: set[asyncio.Future[Any]] = {release, disconnect}
        try:
            await asyncio.wait(waiting, timeout=self.max_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hangs.discard(release)
            release.cancel()
        if disconnect.done():
            return
        disconnect.cancel()
        await cut_connection(scope, receive)
