"""An httpx transport on aiohttp's connection pool.

The adapters speak httpx (requests, streaming, ``MockTransport`` in tests); on a 2-core machine
httpcore's pool costs several milliseconds of CPU per request under concurrency, aiohttp's about
half a millisecond (measured by ``benchmarks/router_overhead.py``). This transport keeps the httpx
API and moves the wire work to aiohttp. aiohttp's exceptions are translated to httpx's here, so the
adapters' one error-translation function (``_errors.translate_transport_error``) still applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx

_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                      aiohttp.ClientOSError, aiohttp.ClientResponseError)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"read timeout ({type(exc).__name__})") from exc
        except _CONNECTION_ERRORS as exc:
            raise httpx.RemoteProtocolError(f"connection closed ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp ``ClientSession`` per event loop, bounded by ``max_connections``."""

    def __init__(self, *, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"),
        )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        try:
            response = await self._session_now().request(
                request.method, str(request.url), headers=headers, data=await request.aread() or None,
                timeout=timeout, allow_redirects=False,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect timeout ({type(exc).__name__})", request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"read timeout ({type(exc).__name__})", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"connect failed ({type(exc).__name__})", request=request) from exc
        except (*_CONNECTION_ERRORS, aiohttp.ClientError) as exc:
            raise httpx.RemoteProtocolError(f"connection closed ({type(exc).__name__})", request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=[(k, v) for k, v in response.raw_headers],
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
