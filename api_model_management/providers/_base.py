"""The adapter port: one shared ``httpx.AsyncClient`` per provider, timeouts, error translation at
the edge, and the stream driver that turns a provider's event parser into ``StreamChunk`` items.

A concrete adapter supplies only its wire protocol: URLs and auth headers, the request body, how
to read a reply and a stream, and how to classify an error body.

Every call takes a key from the adapter's :class:`~._keys.KeyPool`. A key's own 429 (or a refusal
of that key) is retried at once on another free key of the pool, within the call's deadline,
before the error goes up: a caller sees ``RateLimited`` only when every key cools for the model.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, SecretStr

from .. import errors
from .._clock import SYSTEM_CLOCK, Clock
from .._request import FinishReason, ModelRequest, ProviderResult, StreamChunk, ToolCall
from ..config import ApiKey, ModelConfig, ProviderConfig
from ..ratelimit import RateLimitState
from ._errors import malformed, translate_transport_error
from ._keys import KeyPool, keys_of
from ._tools import response_tool

logger = logging.getLogger(__name__)

_VERSIONED = re.compile(r"/v\d+(?:beta\d*|alpha\d*)?$")
_TRANSPORT_ERRORS = (httpx.TransportError, httpx.DecodingError, TimeoutError)
#: Errors that refuse a key rather than a call (a revoked key, an account out of credit).
_KEY_REFUSALS = frozenset({"auth", "quota"})
#: The index of "no key" (a provider that needs none).
_NO_KEY = -1


class ProbeResult(BaseModel):
    """The outcome of one active health probe of a provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    latency_ms: float
    http_status: int | None = None
    error_kind: str | None = None
    #: Model names the endpoint lists (None when the probe endpoint lists none).
    models: tuple[str, ...] | None = None


@dataclass(slots=True)
class StreamState:
    """What a stream parser learns besides text deltas; read when the stream ends."""

    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    provider_request_id: str | None = None
    completed: bool = False
    #: The calls of the reply, in order.
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: The name of the tool a structured answer comes through (see ``_tools.response_tool``),
    #: when the adapter asked for one: its input is the answer's text, not a call.
    response_tool: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalized token counts: ``input_tokens`` is uncached input, ``cached_tokens`` the cached
    part, ``output_tokens`` everything billed as output (reasoning included)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def count(value: Any) -> int:
    """A token count from a body field: non-negative int, 0 when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def api_root(base_url: str, default_version: str) -> str:
    """``base_url`` when it already ends in a version segment (``/v1``, ``/v1beta``), else
    ``base_url/<default_version>``."""
    base = base_url.rstrip("/")
    return base if _VERSIONED.search(base) else f"{base}/{default_version}"


class _BoundedBody(httpx.AsyncByteStream):
    """A response body that raises ``too_large()`` once it passes ``limit_bytes``: in total (a
    plain reply) or, with ``per_line``, within any one line (a stream, whose text the adapter
    counts; a line is buffered whole before it is parsed)."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, limit_bytes: int,
                 too_large: Callable[[], errors.ProviderError], *, per_line: bool = False) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async client's response has an async body")
        self._stream = stream
        self._limit = limit_bytes
        self._too_large = too_large
        self._per_line = per_line

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0  # bytes so far (of the current line, per line)
        async for part in self._stream:
            first = part.find(b"\n") if self._per_line else -1
            if first < 0:
                size += len(part)
                over = size > self._limit
            else:
                last = part.rfind(b"\n")
                inner = last - first - 1  # the lines between the first and last newline
                over = size + first > self._limit or (
                    inner > self._limit and _longest_line(part[first + 1:last]) > self._limit
                )
                size = len(part) - last - 1
            if over:
                raise self._too_large()
            yield part

    async def aclose(self) -> None:
        await self._stream.aclose()


def _longest_line(data: bytes) -> int:
    return max(map(len, data.split(b"\n")))


class _Cookies(httpx.Cookies):
    """Cookies as httpx keeps them, except that a response setting none is not handed to the
    standard library's jar (which first builds urllib views of the request and the response:
    tens of microseconds a call, for the rare reply that sets a cookie)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class ProviderClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` an adapter builds for itself: httpx's, with :class:`_Cookies`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = super().cookies

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)


class ProviderAdapter(ABC):
    """An httpx client for one provider's wire protocol (protocols.md).

    ``complete`` returns a normalized :class:`ProviderResult`; ``stream`` yields text deltas and a
    final ``done`` chunk carrying the result; ``probe`` is the cheapest health probe. Every failure
    is one typed error of :mod:`api_model_management.errors`. A stream that fails after text was
    delivered raises :class:`errors.StreamInterrupted` carrying ``partial_text``; before any text,
    it raises the provider error itself (so a router can fail over invisibly).

    ``api_key`` is one key, or several (``ApiKey`` items, named by their variables): the
    adapter's :attr:`keys` pool. ``client`` (or ``transport``) may be injected for tests; an
    injected client is not closed by :meth:`aclose`.
    """

    provider_type: ClassVar[str]

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: SecretStr | Sequence[ApiKey | SecretStr] | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.config = config
        self.keys = KeyPool(name, keys_of(api_key), clock=clock)
        self._clock = clock
        self._header_cache: dict[tuple[bool, int], dict[str, str]] = {}
        self._merged_cache: dict[tuple[bool, int], httpx.Headers] = {}
        self._url_cache: dict[str, httpx.URL] = {}
        self._owns_client = client is None
        if transport is None and client is None and config.http_client == "aiohttp":
            from ._aiohttp import AiohttpTransport

            transport = AiohttpTransport(max_connections=config.max_connections)
        self._client = client or ProviderClient(
            transport=transport,
            timeout=self._httpx_timeout(config.timeouts.total_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            follow_redirects=False,
        )
        #: a client of this adapter's own, with no base URL or query parameters: its requests
        #: are built here (:meth:`_build`) rather than by ``build_request``, with the same result
        self._plain_client = self._owns_client and not self._client.params and (
            not self._client.base_url.host and not self._client.base_url.raw_path.strip(b"/"))

    def __repr__(self) -> str:  # never shows a key
        return (f"{type(self).__name__}(name={self.name!r}, base_url={self.config.base_url!r}, "
                f"keys={len(self.keys)})")

    # -- protocol hooks ------------------------------------------------------------------------
    @abstractmethod
    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        """Authentication (with ``key``; None: no key) and version headers."""

    @abstractmethod
    def _complete_url(self, model: ModelConfig) -> str: ...

    @abstractmethod
    def _stream_url(self, model: ModelConfig) -> str: ...

    @abstractmethod
    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict: ...

    @abstractmethod
    def _parse_reply(self, body: Any, model: ModelConfig, state: StreamState) -> str:
        """Text of a non-streamed reply; its metadata and tool calls into ``state``; raises
        KeyError/TypeError/... if malformed."""

    @abstractmethod
    def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str | ToolCall]:
        """Yield text deltas and each tool call once it is whole; fill ``state``; set
        ``state.completed`` on the protocol's terminator."""

    @abstractmethod
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        """The typed error for an HTTP error response."""

    @abstractmethod
    def _probe_path(self) -> str:
        """URL of the cheapest health probe."""

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        """Model names in a probe response, if it lists them."""
        return None

    def _answers_by_tool(self, request: ModelRequest) -> bool:
        """True when this adapter asks for ``request``'s structured answer through a tool."""
        return False

    def _state(self, request: ModelRequest) -> StreamState:
        """A new call's state (naming the response tool when the adapter uses one)."""
        if not self._answers_by_tool(request):
            return StreamState()
        tool = response_tool(request)
        return StreamState(response_tool=tool.name if tool is not None else None)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return None

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return None

    # -- public API ----------------------------------------------------------------------------
    async def complete(
        self,
        request: ModelRequest,
        model: ModelConfig,
        *,
        timeout_s: float | None = None,
        headers: dict | None = None,
    ) -> ProviderResult:
        """One non-streamed completion."""
        total_s = self._total_s(timeout_s)
        start = self._clock.monotonic()
        body = self._body(request, model, stream=False)
        response, key = await self._send(
            "POST", self._complete_url(model), body, model.id, total_s, headers
        )
        payload = self._decode(response, model.id)
        state = self._state(request)
        try:
            text = self._parse_reply(payload, model, state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise malformed(self.name, model.id, type(exc).__name__, response.status_code) from exc
        headers = _header_map(response)
        state.provider_request_id = state.provider_request_id or self._request_id(headers)
        result = self._result(text, state, headers, start, None, key, model.id)
        self._check_refusal(result, model.id)
        logger.debug(
            "%s %s completed: status=%d latency_ms=%.1f finish=%s",
            self.name,
            model.id,
            response.status_code,
            result.latency_ms,
            result.finish_reason,
        )
        return result

    async def stream(
        self,
        request: ModelRequest,
        model: ModelConfig,
        *,
        timeout_s: float | None = None,
        headers: dict | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """Text deltas and whole tool calls as they complete, then one ``done`` chunk whose
        ``result`` has usage, timings and every tool call."""
        total_s = self._total_s(timeout_s)
        deadline = asyncio.get_running_loop().time() + total_s
        start = self._clock.monotonic()
        body = self._body(request, model, stream=True)
        response, key = await self._exchange(
            "POST", self._stream_url(model), body, model.id, total_s, deadline, headers,
            stream=True,
        )
        state = self._state(request)
        delivered: list[str] = []
        ttft_ms: float | None = None
        text_bytes = 0
        try:
            lines = self._lines(response, model.id, deadline)
            async for item in self._parse_stream(lines, state, model):
                if not item:
                    continue
                if ttft_ms is None:
                    ttft_ms = (self._clock.monotonic() - start) * 1000.0
                if isinstance(item, ToolCall):
                    state.tool_calls.append(item)
                    yield StreamChunk(tool_call=item, model_id=model.id)
                    continue
                text_bytes += len(item.encode("utf-8", "surrogatepass"))
                if text_bytes > self.config.max_response_bytes:
                    raise self._too_large(model.id, response.status_code, "streamed text")
                delivered.append(item)
                yield StreamChunk(delta=item, model_id=model.id)
            if not state.completed:
                raise errors.ProviderConnectionError(
                    f"{self.name}: stream ended before its terminator",
                    provider=self.name,
                    model_id=model.id,
                    http_status=response.status_code,
                    raw_type="incomplete_stream",
                )
            headers = _header_map(response)
            state.provider_request_id = state.provider_request_id or self._request_id(headers)
            result = self._result("".join(delivered), state, headers, start, ttft_ms, key, model.id)
            self._check_refusal(result, model.id)
        except errors.ProviderError as exc:
            if not delivered and not state.tool_calls:
                raise
            raise self._interrupted(exc, "".join(delivered), model.id) from exc
        finally:
            await response.aclose()
        yield StreamChunk(done=True, result=result, model_id=model.id)

    async def probe(self, *, headers: dict | None = None) -> ProbeResult:
        """Call the provider's cheapest endpoint (or ``health_check.path`` under ``base_url``);
        never raises for provider failures: they are reported in the result."""
        path = self.config.health_check.path
        url = f"{self.config.base_url}/{path.lstrip('/')}" if path else self._probe_path()
        total_s = self.config.health_check.timeout_s or self.config.timeouts.total_s
        start = self._clock.monotonic()
        try:
            response, _ = await self._send("GET", url, None, None, total_s, headers)
        except errors.ProviderError as exc:
            return ProbeResult(
                ok=False,
                latency_ms=self._elapsed_ms(start),
                http_status=exc.http_status,
                error_kind=exc.error_kind,
            )
        try:
            models = self._probe_models(orjson.loads(response.content))
        except orjson.JSONDecodeError:  # a plain-text health page lists no models
            models = None
        return ProbeResult(
            ok=True,
            latency_ms=self._elapsed_ms(start),
            http_status=response.status_code,
            models=models,
        )

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was injected)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> ProviderAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- HTTP plumbing -------------------------------------------------------------------------
    def _total_s(self, timeout_s: float | None) -> float:
        total = self.config.timeouts.total_s
        return min(total, timeout_s) if timeout_s is not None else total

    def _httpx_timeout(self, total_s: float) -> httpx.Timeout:
        t = self.config.timeouts
        return httpx.Timeout(
            connect=min(t.connect_s, total_s),
            read=min(t.read_s, total_s),
            write=min(t.read_s, total_s),
            pool=min(t.connect_s, total_s),
        )

    def _build(
        self, method: str, url: str, body: dict | None, total_s: float, headers: dict | None,
        key: int,
    ) -> httpx.Request:
        content = None if body is None else orjson.dumps(body)
        client = self._client
        if not headers and self._plain_client and not client.cookies:
            # what ``build_request`` builds, from headers merged once per key (the client's own
            # first, as httpx merges them) and a timeout dict of plain numbers
            t = self.config.timeouts
            connect, read = min(t.connect_s, total_s), min(t.read_s, total_s)
            return httpx.Request(
                method, self._url(url), content=content,
                headers=self._client_headers(body is not None, key),
                extensions={"timeout": {"connect": connect, "read": read, "write": read,
                                        "pool": connect}})
        merged = self._base_headers(body is not None, key)
        if headers:
            merged = {**merged, **headers}
        return client.build_request(
            method, self._url(url), content=content, headers=merged,
            timeout=self._httpx_timeout(total_s),
        )

    def _client_headers(self, with_body: bool, key: int) -> httpx.Headers:
        """The client's default headers updated with :meth:`_base_headers` (as httpx's
        ``_merge_headers``), built once per key (``httpx.Request`` copies them)."""
        cached = self._merged_cache.get((with_body, key))
        if cached is None:
            cached = httpx.Headers(self._client.headers)
            cached.update(self._base_headers(with_body, key))
            self._merged_cache[with_body, key] = cached
        return cached

    def _base_headers(self, with_body: bool, key: int) -> dict[str, str]:
        """Accept, auth (with key ``key``) and content type: the same for every call with that
        key, so built once per key (httpx copies)."""
        cached = self._header_cache.get((with_body, key))
        if cached is None:
            secret = self.keys.secret(key) if key != _NO_KEY else None
            cached = {"accept": "application/json", **self._auth_headers(secret)}
            if with_body:
                cached["content-type"] = "application/json"
            self._header_cache[with_body, key] = cached
        return cached

    def _url(self, url: str) -> httpx.URL:
        """Parsed once per URL (a handful per provider: one or two per model)."""
        parsed = self._url_cache.get(url)
        if parsed is None:
            if len(self._url_cache) >= _URL_CACHE_MAX:
                self._url_cache.clear()
            parsed = self._url_cache[url] = httpx.URL(url)
        return parsed

    async def _send(
        self,
        method: str,
        url: str,
        body: dict | None,
        model_id: str | None,
        total_s: float,
        headers: dict | None,
    ) -> tuple[httpx.Response, int]:
        """Send and read the whole reply (at most ``max_response_bytes``) within ``total_s``;
        the response and the key that got it; raise the typed error for ≥400."""
        deadline = asyncio.get_running_loop().time() + total_s
        return await self._exchange(method, url, body, model_id, total_s, deadline, headers,
                                    stream=False)

    async def _exchange(
        self,
        method: str,
        url: str,
        body: dict | None,
        model_id: str | None,
        total_s: float,
        deadline: float,
        headers: dict | None,
        *,
        stream: bool,
    ) -> tuple[httpx.Response, int]:
        """One call before ``deadline``: the response and the key that got it. A key's own 429
        or refusal is retried on another key while one is free (at most once per key); an error
        status otherwise raises its typed error. The body is read whole, except a stream's on
        success (then it is bounded per line)."""
        scope = model_id or ""
        key = self._take_key(scope, model_id)
        for tries in range(1, len(self.keys) + 2):
            request = self._build(method, url, body, total_s, headers, key)
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(request, stream=True)
                    if not stream or response.status_code >= 400:
                        await self._read_bounded(response, model_id)
            except _TRANSPORT_ERRORS as exc:
                raise self._transport_error(exc, model_id) from exc
            if response.status_code < 400:
                if stream:
                    response.stream = _BoundedBody(
                        response.stream, self.config.max_response_bytes,
                        lambda: self._too_large(model_id, 200, "stream line"), per_line=True)
                return response, key
            error = self._http_error(response, model_id, key)
            key = self._other_key(error, key, scope, last=tries >= len(self.keys))
        raise AssertionError("unreachable: the last try raises")  # pragma: no cover

    # -- keys ----------------------------------------------------------------------------------
    def _take_key(self, scope: str, model_id: str | None) -> int:
        """The key for a call for ``scope``: ``_NO_KEY`` when the provider needs none;
        ``RateLimited`` (no call made) when every key cools for ``scope``."""
        if not self.keys:
            return _NO_KEY
        key = self.keys.pick(scope)
        if key is None:
            raise self._all_cooling(scope)
        return key

    def _all_cooling(self, scope: str) -> errors.RateLimited:
        wait = self.keys.retry_after_s(scope)
        return errors.RateLimited(
            f"{self.name}: every API key ({len(self.keys)}) is cooling down for {scope or 'probes'}",
            provider=self.name, model_id=scope or None, retry_after_s=max(wait, 0.001),
            raw_type="keys_cooling",
        )

    def _other_key(self, error: errors.ProviderError, key: int, scope: str, *, last: bool) -> int:
        """After ``error`` on ``key``: the key to try next, or raise. A 429 cools ``key`` for
        ``scope``; a refusal (auth, quota) sets it aside (unless it is the last key in
        rotation). With no free key left a 429 goes up carrying the wait for the first key to
        free (``RateLimited`` too after a refusal, when the other keys cool); anything else goes
        up as it is."""
        if key == _NO_KEY:
            raise error
        name = self.keys.name(key)
        if isinstance(error, errors.RateLimited):
            self.keys.cool_down(key, scope, error.retry_after_s)
            following = None if last else self.keys.pick(scope)
            if following is None:
                raise self._with_pool_wait(error, scope)
            logger.info("%s %s: key %s rate-limited; retrying on key %s", self.name,
                        scope or "probe", name, self.keys.name(following))
            return following
        if error.error_kind in _KEY_REFUSALS and not last and self.keys.set_aside(key):
            following = self.keys.pick(scope)
            if following is None:  # the keys still in rotation cool: rate-limited, not refused
                raise self._all_cooling(scope) from error
            logger.warning("%s: key %s refused (%s); out of rotation for a while, retrying on "
                           "key %s", self.name, name, error.error_kind, self.keys.name(following))
            return following
        raise error

    def _with_pool_wait(self, error: errors.ProviderError, scope: str) -> errors.ProviderError:
        """The last 429 of a call, saying when the first key of the pool frees (sooner than the
        last key's own hint, or instead of none); with one key, the error as the provider sent
        it."""
        wait = self.keys.retry_after_s(scope)
        hint = error.retry_after_s
        if len(self.keys) <= 1 or wait <= 0 or (hint is not None and wait >= hint):
            return error
        return type(error)(error.message, **{**error.fields, "retry_after_s": wait})

    def _observed(self, key: int, scope: str, state: RateLimitState | None) -> RateLimitState | None:
        """What a success's rate-limit headers say about the model (see ``KeyPool.observe``)."""
        return state if key == _NO_KEY else self.keys.observe(key, scope, state)

    async def _read_bounded(self, response: httpx.Response, model_id: str | None) -> None:
        """Read the body into ``response.content``, refused past ``max_response_bytes``: by its
        Content-Length before reading, else as it arrives (nothing more is read; the connection
        is closed)."""
        limit = self.config.max_response_bytes
        status = response.status_code
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large(model_id, status, "content-length")
            response.stream = _BoundedBody(
                response.stream, limit, lambda: self._too_large(model_id, status, "body")
            )
            await response.aread()
        finally:
            await response.aclose()

    def _too_large(self, model_id: str | None, status: int, what: str) -> errors.ResponseTooLarge:
        limit = self.config.max_response_bytes
        logger.info("%s %s: %s above max_response_bytes=%d", self.name, model_id, what, limit)
        return errors.ResponseTooLarge(
            f"{self.name}: response larger than max_response_bytes={limit} ({what})",
            provider=self.name, model_id=model_id, http_status=status,
            raw_type="response_too_large", limit_bytes=limit,
        )

    async def _lines(
        self, response: httpx.Response, model_id: str, deadline: float
    ) -> AsyncIterator[str]:
        """The response's lines, each read before the total deadline; transport errors typed."""
        iterator = response.aiter_lines()
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    line = await anext(iterator)
            except StopAsyncIteration:
                return
            except _TRANSPORT_ERRORS as exc:
                raise self._transport_error(exc, model_id) from exc
            yield line

    def _transport_error(self, exc: BaseException, model_id: str | None) -> errors.ProviderError:
        error = translate_transport_error(exc, provider=self.name, model_id=model_id)
        logger.info("%s %s: %s", self.name, model_id, error.message)
        return error

    def _http_error(self, response: httpx.Response, model_id: str | None,
                    key: int = _NO_KEY) -> errors.ProviderError:
        try:
            body: Any = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        error = self._classify_error(response.status_code, body, response.headers, model_id)
        if key == _NO_KEY:
            logger.info("%s %s: %s", self.name, model_id, error.message)
        else:
            logger.info("%s %s: %s (key %s)", self.name, model_id, error.message, self.keys.name(key))
        return error

    def _decode(self, response: httpx.Response, model_id: str | None) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise malformed(self.name, model_id, "body is not JSON", response.status_code) from exc

    def _decode_event(self, data: str, model_id: str | None) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise malformed(self.name, model_id, "stream event is not JSON") from exc

    # -- results -------------------------------------------------------------------------------
    def _elapsed_ms(self, start: float) -> float:
        return (self._clock.monotonic() - start) * 1000.0

    def _result(
        self,
        text: str,
        state: StreamState,
        headers: Mapping[str, str],
        start: float,
        ttft_ms: float | None,
        key: int,
        model_id: str,
    ) -> ProviderResult:
        return ProviderResult(
            text=text,
            finish_reason=state.finish_reason or "other",
            raw_finish_reason=state.raw_finish_reason,
            tool_calls=tuple(state.tool_calls),
            input_tokens=state.input_tokens,
            output_tokens=state.output_tokens,
            cached_tokens=state.cached_tokens,
            reasoning_tokens=state.reasoning_tokens,
            provider_request_id=state.provider_request_id,
            latency_ms=self._elapsed_ms(start),
            time_to_first_token_ms=ttft_ms,
            rate_limit=self._observed(key, model_id, self._rate_limit(headers)),
        )

    def _check_refusal(self, result: ProviderResult, model_id: str) -> None:
        """A content-filtered reply with no text and no tool call is a policy violation, not an
        answer."""
        if result.finish_reason == "content_filter" and not result.text and not result.tool_calls:
            raise errors.ContentPolicyViolation(
                f"{self.name}: response blocked ({result.raw_finish_reason})",
                provider=self.name,
                model_id=model_id,
                http_status=200,
                raw_type=result.raw_finish_reason,
            )

    def _interrupted(
        self, exc: errors.ProviderError, partial: str, model_id: str
    ) -> errors.StreamInterrupted:
        logger.info(
            "%s %s: stream interrupted after %d chars (%s)",
            self.name,
            model_id,
            len(partial),
            exc.error_kind,
        )
        return errors.StreamInterrupted(
            f"{self.name}: stream interrupted after {len(partial)} characters ({exc.error_kind})",
            partial_text=partial,
            cause_kind=exc.error_kind,
            provider=self.name,
            model_id=model_id,
            http_status=exc.http_status,
            transient=exc.transient,
        )

    def _tool_call(self, model_id: str, call_id: str, name: Any, arguments: Any) -> ToolCall:
        """A tool call of a reply; a malformed one (a bad name, arguments that are not one JSON
        object) is ``MalformedResponse`` (the reply is not used)."""
        try:
            return ToolCall(id=call_id, name=name, arguments=arguments)
        except errors.InvalidInput as exc:
            where = getattr(exc, "field", "call")
            raise malformed(self.name, model_id, f"tool call: {where} is not valid") from None

    def _set_usage(self, state: StreamState, usage: Usage) -> None:
        state.input_tokens = usage.input_tokens
        state.output_tokens = usage.output_tokens
        state.cached_tokens = usage.cached_tokens
        state.reasoning_tokens = usage.reasoning_tokens


def ids_of_data_list(body: Any) -> tuple[str, ...] | None:
    """The ``id`` of each entry of a ``{"data": [...]}`` model list (OpenAI and Anthropic)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return tuple(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)


_URL_CACHE_MAX = 256


def _header_map(response: httpx.Response) -> dict[str, str]:
    """The response headers as a plain dict with lower-case names, read once: every lookup on
    ``httpx.Headers`` decodes and scans all of them, and the rate-limit parsers make a dozen."""
    return dict(response.headers.items())
