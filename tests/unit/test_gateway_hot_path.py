"""Cuts on the gateway's request path that must not change what goes over the wire or into the
log: a reply's head and body in one send (``OneSendTransport``), the adapters' client skipping the
cookie jar for replies that set no cookie (``ProviderClient``), an adapter building its httpx
request itself (``ProviderAdapter._build``: what ``build_request`` builds), and event ids from
pooled random bytes (``events.uuid7``)."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import httpx
import pytest

from api_model_management.config import demo_config
from api_model_management.events import _types
from api_model_management.events._types import uuid7
from api_model_management.gateway._server import OneSendTransport
from api_model_management.providers import make_adapter
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


def _openai_adapter(**kwargs: Any) -> Any:
    from pydantic import SecretStr

    config = demo_config()
    name, provider = next((n, p) for n, p in config.providers.items() if p.type == "openai")
    return make_adapter(name, provider, SecretStr("sk-test"), **kwargs)


def _same(a: httpx.Request, b: httpx.Request) -> None:
    assert (a.method, a.url, a.headers.raw, a.content, a.extensions) == (
        b.method, b.url, b.headers.raw, b.content, b.extensions)


def test_an_adapter_builds_the_request_build_request_would() -> None:
    replies: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        replies.append(request)
        return httpx.Response(200, json={})

    adapter = _openai_adapter(transport=httpx.MockTransport(reply))
    assert adapter._plain_client
    key = adapter._take_key("m", "m")
    url = "http://127.0.0.1:9/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hé"}], "max_tokens": 5}
    for total_s in (0.5, 3.0, 600.0):  # the timeout follows the call's deadline
        fast = adapter._build("POST", url, body, total_s, None, key)
        slow = adapter._client.build_request(
            "POST", adapter._url(url), content=fast.content,
            headers=adapter._base_headers(True, key), timeout=adapter._httpx_timeout(total_s))
        _same(fast, slow)
    probe = adapter._build("GET", "http://127.0.0.1:9/v1/models", None, 2.0, None, -1)
    _same(probe, adapter._client.build_request(
        "GET", "http://127.0.0.1:9/v1/models", headers=adapter._base_headers(False, -1),
        timeout=adapter._httpx_timeout(2.0)))

    async def main() -> None:  # and it is what the client sends
        await adapter._client.send(adapter._build("POST", url, body, 3.0, None, key))
        await adapter.aclose()

    asyncio.run(main())
    assert replies[0].headers["authorization"] == "Bearer sk-test"
    assert replies[0].headers["user-agent"].startswith("python-httpx/")


def test_extra_headers_cookies_and_injected_clients_go_through_build_request() -> None:
    adapter = _openai_adapter(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    key = adapter._take_key("m", "m")
    url = "http://127.0.0.1:9/v1/chat/completions"
    extra = adapter._build("POST", url, {}, 3.0, {"x-extra": "1"}, key)
    assert extra.headers["x-extra"] == "1"
    adapter._client.cookies.set("session", "abc")
    assert adapter._build("POST", url, {}, 3.0, None, key).headers["cookie"] == "session=abc"
    injected = httpx.AsyncClient(base_url="http://127.0.0.1:9", params={"v": "1"})
    other = _openai_adapter(client=injected)
    assert not other._plain_client
    assert other._build("POST", "/x", {}, 3.0, None, key).url == "http://127.0.0.1:9/x?v=1"


def test_event_ids_are_uuid7_unique_across_threads_and_a_forked_child() -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        mine = [uuid7() for _ in range(3000)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == len(ids) == 12000
    for value in ids[:50]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    # a forked child draws fresh random bytes, not the rest of its parent's pool
    uuid7()  # the pool holds bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, str(_types._ENTROPY.take()).encode())
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 100).decode())
    os.waitpid(pid, 0)
    os.close(read)
    assert child != _types._ENTROPY.take()
