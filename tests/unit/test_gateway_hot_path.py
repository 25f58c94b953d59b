"""Two cuts on the gateway's request path that must not change what goes over the wire: a
reply's head and body in one send (``OneSendTransport``) and the adapters' client skipping the
cookie jar for replies that set no cookie (``ProviderClient``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from api_model_management.gateway._server import OneSendTransport
from api_model_management.providers._base import ProviderClient

pytestmark = pytest.mark.unit


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "sockname" else default


def test_writes_of_one_turn_leave_in_one_send_in_order() -> None:
    async def main() -> None:
        inner = _Transport()
        transport = OneSendTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.writelines([b"{", memoryview(b"}")])
        assert inner.sent == []  # not yet: the turn is not over
        await asyncio.sleep(0)
        assert inner.sent == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"data: 1\n\n")
        await asyncio.sleep(0)
        assert inner.sent[-1] == b"data: 1\n\n"  # the next turn's writes: a send of their own
        assert transport.get_extra_info("sockname") == ("127.0.0.1", 4000)  # the rest: the transport's
        transport.write(b"last")
        transport.close()  # what was written goes before the close
        assert inner.sent[-1] == b"last" and inner.closed
        transport.write(b"after")
        transport.flush()
        assert inner.sent[-1] == b"last"  # dropped once closing

    asyncio.run(main())


def test_the_adapters_client_keeps_the_cookies_a_reply_sets_and_only_those() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/set":
            return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"})
        return httpx.Response(200, json={"cookie": request.headers.get("cookie")})

    async def main() -> None:
        async with ProviderClient(transport=httpx.MockTransport(reply)) as client:
            first = await client.get("http://provider.test/echo")
            assert first.json() == {"cookie": None} and not client.cookies
            await client.get("http://provider.test/set")
            assert client.cookies.get("session") == "abc"
            echoed = await client.get("http://provider.test/echo")
            assert echoed.json() == {"cookie": "session=abc"}  # sent back, as httpx does
            client.cookies = {"other": "1"}
            assert dict(client.cookies) == {"other": "1"}

    asyncio.run(main())
