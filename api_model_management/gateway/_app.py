"""The gateway's ASGI application (starlette): OpenAI's and Anthropic's APIs in front of the
router, with virtual keys. No Ray here: the engine it is given runs the router in this process.

    POST /v1/chat/completions   OpenAI Chat Completions (plain, or SSE with ``stream: true``)
    POST /v1/messages           Anthropic Messages (plain, or its stream events)
    GET  /v1/models             the models a key may use, ``auto`` and the aliases
    POST /v1/feedback           an outcome for a request served (``request_id``, ``score``)
    GET  /health                liveness and readiness: providers' health (503 when none is usable)
    GET  /metrics               Prometheus text

Every request is authenticated first (``Authorization: Bearer`` or ``x-api-key``), then its body
is read up to ``max_body_bytes`` (413 past it), parsed, routed (``_routing``), admitted against
the key's requests per minute and budget, and served. A streamed reply is started only once its
first chunk is there, so a request that fails before any text gets a plain HTTP error with the
right status; a client that goes away mid-stream cancels the provider call (the request ends in
one ``RequestFailed(cancelled)``). Responses carry ``x-amm-request-id`` (the id to give
``/v1/feedback``), ``x-amm-model`` and ``x-amm-selection-reason``, and plain replies
``x-amm-cost-usd``; a stream's cost comes at its end, as ``usage.cost_usd`` of OpenAI's usage
chunk (``stream_options.include_usage``) and of Anthropic's ``message_delta``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._clock import SYSTEM_CLOCK, Clock
from .._request import ModelRequest, ModelResponse, ProviderResult, StreamChunk, ToolCall
from ..budget import settle_usage, usage_bound, worst_case_cost_usd
from ..config import GatewayKey, RegistryConfig
from ..errors import (
    BudgetExceeded,
    EventsNotShipped,
    InvalidInput,
    MalformedResponse,
    RateLimitExceeded,
)
from ..events import uuid7
from . import _anthropic, _openai
from ._engine import GatewayEngine
from ._errors import HttpError, failure_kind, http_error
from ._keys import KeyHold, KeyLimits, KeyRing, presented_key
from ._metrics import BudgetId, Metrics, Snapshot, merge, render
from ._peers import Peers
from ._routing import Router
from ._wire import GatewayRefusal, WireRequest, bad_request, header_text

log = logging.getLogger(__name__)

_JSON = "application/json"
_SSE = "text/event-stream"
_FEEDBACK_PREFIXES = ("chatcmpl-", "msg_")


# -- the two wire formats, as the handlers use them ----------------------------------------------
class _StreamWriter(Protocol):
    def start(self) -> bytes: ...

    def text(self, delta: str) -> bytes: ...

    def tool_call(self, call: ToolCall) -> bytes: ...

    def end(self, response: ModelResponse) -> bytes: ...

    def error(self, error: HttpError) -> bytes: ...


class _Wire(Protocol):
    endpoint: str

    def parse(self, body: Any) -> WireRequest: ...

    def body(self, response: ModelResponse, created: int) -> dict[str, Any]: ...

    def error(self, error: HttpError) -> dict[str, Any]: ...

    def writer(self, request_id: str, model_id: str, created: int,
               include_usage: bool) -> _StreamWriter: ...


def _data(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


class _OpenAIStream:
    def __init__(self, request_id: str, model_id: str, created: int, include_usage: bool) -> None:
        self._chunks = _openai.ChunkWriter(request_id, model_id, created, include_usage)

    def start(self) -> bytes:
        return _data(self._chunks.first())

    def text(self, delta: str) -> bytes:
        return _data(self._chunks.text(delta))

    def tool_call(self, call: ToolCall) -> bytes:
        return _data(self._chunks.tool_call(call))

    def end(self, response: ModelResponse) -> bytes:
        return b"".join(_data(c) for c in self._chunks.last(response)) + b"data: [DONE]\n\n"

    def error(self, error: HttpError) -> bytes:
        return _data(_openai.error_body(error.kind, error.message, error.code, error.param))


class _OpenAIWire:
    endpoint = "chat.completions"

    def parse(self, body: Any) -> WireRequest:
        return _openai.parse_chat(body)

    def body(self, response: ModelResponse, created: int) -> dict[str, Any]:
        return _openai.completion(response, created)

    def error(self, error: HttpError) -> dict[str, Any]:
        return _openai.error_body(error.kind, error.message, error.code, error.param)

    def writer(self, request_id: str, model_id: str, created: int,
               include_usage: bool) -> _StreamWriter:
        return _OpenAIStream(request_id, model_id, created, include_usage)


def _events(items: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(f"event: {name}\n".encode() + _data(data) for name, data in items)


class _AnthropicStream:
    def __init__(self, request_id: str, model_id: str) -> None:
        self._events = _anthropic.EventWriter(request_id, model_id)

    def start(self) -> bytes:
        return _events(self._events.start())

    def text(self, delta: str) -> bytes:
        return _events(self._events.text(delta))

    def tool_call(self, call: ToolCall) -> bytes:
        return _events(self._events.tool_call(call))

    def end(self, response: ModelResponse) -> bytes:
        return _events(self._events.end(response))

    def error(self, error: HttpError) -> bytes:
        return _events([("error", _anthropic.error_body(error.kind, error.message, error.code,
                                                        error.param))])


class _AnthropicWire:
    endpoint = "messages"

    def parse(self, body: Any) -> WireRequest:
        return _anthropic.parse_messages(body)

    def body(self, response: ModelResponse, created: int) -> dict[str, Any]:
        return _anthropic.message(response)

    def error(self, error: HttpError) -> dict[str, Any]:
        return _anthropic.error_body(error.kind, error.message, error.code, error.param)

    def writer(self, request_id: str, model_id: str, created: int,
               include_usage: bool) -> _StreamWriter:
        return _AnthropicStream(request_id, model_id)


OPENAI: _Wire = _OpenAIWire()
ANTHROPIC: _Wire = _AnthropicWire()


# -- streaming with cancellation on disconnect ---------------------------------------------------
class _EventStream(StreamingResponse):
    """A streamed response that always listens for the client going away (whatever the ASGI
    version) and then cancels the stream, closing its generator (the provider call with it);
    ``on_close`` runs last, whether or not the body was ever iterated."""

    media_type = _SSE

    def __init__(self, content: AsyncIterator[bytes], *, headers: Mapping[str, str],
                 on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        listening = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, listening):
                task.cancel()
            await asyncio.gather(streaming, listening, return_exceptions=True)
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                await closer()
            await self._on_close()


# -- the application -----------------------------------------------------------------------------
class Gateway:
    """The handlers over one engine, key ring and key limits; :attr:`app` is the ASGI app."""

    def __init__(self, config: RegistryConfig, engine: GatewayEngine, *, keys: KeyRing,
                 limits: KeyLimits, clock: Clock = SYSTEM_CLOCK,
                 metrics: Metrics | None = None, peers: Peers | None = None) -> None:
        """``peers``: the other workers of the same server (``/metrics`` then sums theirs)."""
        self.config = config
        self.engine = engine
        self.keys = keys
        self.limits = limits
        self.router = Router(config)
        self.metrics = metrics or Metrics()
        self.peers = peers
        self.max_body_bytes = config.settings.gateway.max_body_bytes
        self._clock = clock
        self._reroutes = 2 if config.settings.quality.reroute_on_low_quality else 1
        enabled = {m.id for m in config.models if m.enabled}
        #: model id -> the models a pin on it may be served by: itself, its enabled fallbacks
        self._pins = {m.id: (m.id, *(f for f in m.fallbacks if f in enabled))
                      for m in config.models}
        routes = Starlette(routes=[
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
        ], lifespan=self._lifespan)
        #: the ASGI app
        self.app = _App(routes, {"/v1/chat/completions": self.chat_completions,
                                 "/v1/messages": self.messages})

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.engine.start()
        if self.peers is not None:
            await self.peers.start(self._snapshot)
        try:
            yield
        finally:
            if self.peers is not None:
                await self.peers.close()
            await self.engine.aclose()
            self.limits.close()

    # -- endpoints -------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, OPENAI)

    async def messages(self, request: Request) -> Response:
        return await self._serve(request, ANTHROPIC)

    async def models(self, request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        wire = ANTHROPIC if anthropic else OPENAI
        try:
            key = self._authenticate(request.headers)
        except GatewayRefusal as exc:
            return self._error(wire, http_error(exc), {})
        names = self.router.model_names(key)
        if anthropic:
            data = [{"type": "model", "id": name, "display_name": name,
                     "created_at": "1970-01-01T00:00:00Z"} for name, _ in names]
            return _json({"data": data, "has_more": False,
                          "first_id": names[0][0] if names else None,
                          "last_id": names[-1][0] if names else None})
        return _json({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": owner}
            for name, owner in names]})

    async def feedback(self, request: Request) -> Response:
        try:
            self._authenticate(request.headers)
            body = await self._json_body(request, request.headers)
            if not isinstance(body, dict):
                raise bad_request("the request body must be a JSON object")
            request_id = body.get("request_id")
            if isinstance(request_id, str):
                for prefix in _FEEDBACK_PREFIXES:
                    request_id = request_id.removeprefix(prefix)
            recorded = await self.engine.feedback(request_id, body.get("score"),  # type: ignore[arg-type]
                                                  body.get("source", "user"), body.get("comment"))
        except InvalidInput as exc:
            if getattr(exc, "field", None) == "request_id" and "unknown" in str(exc):
                missing = GatewayRefusal(str(exc), status=404, kind="not_found",
                                         param="request_id")
                return self._error(OPENAI, http_error(missing), {})
            return self._error(OPENAI, http_error(exc), {})
        except (GatewayRefusal, ClientDisconnect) as exc:
            return self._error(OPENAI, http_error(exc), {})
        return _json({"request_id": request_id, "recorded": recorded})

    async def health(self, request: Request) -> Response:
        providers = await self.engine.provider_health()
        usable = [name for name, state in providers.items() if state != "unhealthy"]
        body = {"status": "ok" if usable else "unavailable", "ready": bool(usable),
                "mode": self.engine.mode, "providers": providers,
                "keys": len(self.keys), "in_flight": self.metrics.in_flight}
        return _json(body, status=200 if usable else 503)

    async def metrics_text(self, request: Request) -> Response:
        """This process's figures; with ``peers``, the whole server's (:func:`merge`)."""
        own = await self._snapshot()
        if self.peers is None:
            text = render(own, pid=self.metrics.pid)
        else:
            others, unreachable = await self.peers.others()
            keys = {k.name: k.budget_usd for k in self.config.settings.gateway.keys}
            text = render(merge([own, *others], keys, self._budget_limit),
                          workers=1 + len(others))
            text += ("# HELP amm_gateway_workers_unreachable Workers that did not answer for "
                     "this sum.\n# TYPE amm_gateway_workers_unreachable gauge\n"
                     f"amm_gateway_workers_unreachable {unreachable}\n")
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _snapshot(self) -> Snapshot:
        return self.metrics.snapshot(self.limits.status(), await self.engine.budget_status())

    def _budget_limit(self, budget: BudgetId) -> Decimal | None:
        """A registry budget's configured limit (the one naming its key before a ``*`` one)."""
        scope, key, window = budget
        found = None
        for limit in self.config.settings.budgets.limits:
            if limit.scope == scope and limit.window == window:
                if limit.key == key:
                    return limit.limit_usd
                if limit.key in ("*", "") and found is None:
                    found = limit.limit_usd
        return found

    # -- the request path ------------------------------------------------------------------------
    async def _serve(self, http: Request, wire: _Wire) -> Response:
        started = self._clock.monotonic()
        self.metrics.in_flight += 1
        done = _Outcome(self, wire.endpoint, started)
        headers_in = _headers(http.scope)  # read once: the lookups below are dict lookups
        try:
            key = self._authenticate(headers_in)
            done.key = key.name
            wire_request = wire.parse(await self._json_body(http, headers_in))
            request_id = uuid7()
            done.request_id = request_id
            request = self.router.request(wire_request, key, headers_in, request_id)
            self.limits.admit(key.name)
            hold = self.limits.reserve(key.name, self._worst_case(request, key))
        except (GatewayRefusal, InvalidInput, ClientDisconnect, BudgetExceeded,
                RateLimitExceeded) as exc:
            return done.failed(wire, exc)
        headers = {"x-amm-request-id": request_id, "x-request-id": request_id,
                   "request-id": request_id}
        if wire_request.ignored:
            headers["x-amm-ignored-fields"] = header_text(",".join(wire_request.ignored))
        done.headers = headers
        if wire_request.stream:
            return await self._stream(wire, wire_request, request, hold, done)
        try:
            response = await self.engine.complete(request)
        except EventsNotShipped as exc:  # answered and paid; its events not in the log in time
            answer = getattr(exc, "response", None)  # the answer, as the router gives it
            if not isinstance(answer, ModelResponse):
                self.limits.release(hold)
                return done.failed(wire, exc)
            response = answer
            headers["x-amm-events-durable"] = "false"
            log.warning("request %s answered; its events are not in the shared log yet (they "
                        "stay in the spool)", request_id)
        except Exception as exc:  # noqa: BLE001 - every failure is answered in the SDK's shape
            self.limits.release(hold)
            return done.failed(wire, exc)
        except BaseException:  # cancelled: a stopping server gave up waiting for it
            self.limits.release(hold)
            done.finish(499, Decimal(0), "cancelled")
            raise
        self.limits.settle(hold, response.cost_usd)
        headers.update({"x-amm-model": response.model_id,
                        "x-amm-selection-reason": header_text(response.selection_reason),
                        "x-amm-cost-usd": str(response.cost_usd)})
        done.model = response.model_id
        body = wire.body(response, self._created())
        return done.ok(_json(body, headers=headers), response.cost_usd)

    async def _stream(self, wire: _Wire, wire_request: WireRequest, request: ModelRequest,
                      hold: KeyHold, done: _Outcome) -> Response:
        chunks = self.engine.stream(request)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            self.limits.release(hold)
            return done.failed(wire, MalformedResponse("the stream ended before any output"))
        except BaseException as exc:
            self.limits.release(hold)
            await chunks.aclose()
            if not isinstance(exc, Exception):
                done.finish(499, Decimal(0), "cancelled")
                raise
            return done.failed(wire, exc)
        model_id = first.model_id or "-"
        done.model = model_id
        writer = wire.writer(request.request_id or "", model_id, self._created(),
                             wire_request.include_usage)
        state = _StreamState(self.limits, hold, chunks, done)
        headers = {**done.headers, "x-amm-model": model_id, "cache-control": "no-cache"}
        if first.selection_reason is not None:
            headers["x-amm-selection-reason"] = header_text(first.selection_reason)
        return _EventStream(self._events(writer, request, first, state), headers=headers,
                            on_close=state.close)

    async def _events(self, writer: _StreamWriter, request: ModelRequest, first: StreamChunk,
                      state: _StreamState) -> AsyncIterator[bytes]:
        """The SSE bytes of one stream; the key's hold is settled at the end (released if the
        stream fails or the client goes away)."""
        done = state.done
        try:
            yield writer.start()
            sent: set[str] = set()
            chunk = first
            while not chunk.done:
                if chunk.tool_call is not None:
                    sent.add(chunk.tool_call.id)
                    yield writer.tool_call(chunk.tool_call)
                elif chunk.delta:
                    yield writer.text(chunk.delta)
                chunk = await self._next_chunk(state, request)
            result = chunk.result
            assert result is not None, "a final chunk carries the result"
            for call in result.tool_calls:
                if call.id not in sent:
                    yield writer.tool_call(call)
            model_id = chunk.model_id or done.model
            cost = chunk.cost_usd if chunk.cost_usd is not None else self._cost(request, model_id,
                                                                                  result)
            state.settle(cost)
            yield writer.end(_streamed_response(request, model_id, result, cost))
            done.finish(200, cost)
        except Exception as exc:  # noqa: BLE001 - told to the client as the stream's last event
            error = http_error(exc)
            done.finish(error.status, Decimal(0), failure_kind(exc))
            yield writer.error(error)
        finally:
            await state.close()

    @staticmethod
    async def _next_chunk(state: _StreamState, request: ModelRequest) -> StreamChunk:
        """The stream's next chunk. A last chunk whose events were not shipped in time
        (``events.ack="shipped"``) is given all the same: the text is sent and the call paid, so
        the stream ends as any other and the key is charged (an error event after the text would
        make the SDKs throw the answer away, and the key would not pay for it)."""
        try:
            return await anext(state.chunks)
        except EventsNotShipped as exc:
            final = getattr(exc, "final", None)
            if not isinstance(final, StreamChunk):
                raise
            log.warning("streamed request %s answered; its events are not in the shared log yet "
                        "(they stay in the spool)", request.request_id)
            return final

    # -- helpers ---------------------------------------------------------------------------------
    def _authenticate(self, headers: Mapping[str, str]) -> GatewayKey:
        key = self.keys.authenticate(presented_key(headers))
        if key is None:
            raise GatewayRefusal("a valid virtual key is required (Authorization: Bearer KEY "
                                 "or x-api-key: KEY)", status=401, kind="authentication",
                                 code="invalid_api_key")
        return key

    async def _json_body(self, request: Request, headers: Mapping[str, str]) -> Any:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            parts.append(part)
        try:
            return orjson.loads(b"".join(parts))
        except orjson.JSONDecodeError:
            raise bad_request("the request body is not valid JSON", code="invalid_json") from None

    def _worst_case(self, request: ModelRequest, key: GatewayKey) -> Decimal:
        """The most ``request`` can cost on any model it may be served by (held on the key's
        budget while it runs)."""
        if key.budget_usd is None:
            return Decimal(0)
        bound, max_tokens = request.input_token_bound(), request.max_tokens
        c = request.constraints
        pinned = self._pinned_models(request.model_id)
        models = [m for m in self.config.models
                  if (m.id in pinned if pinned else m.enabled)
                  and (c.allowed_models is None or m.id in c.allowed_models)
                  and m.id not in c.excluded_models
                  and (c.allowed_providers is None or m.provider in c.allowed_providers)
                  and m.provider not in c.excluded_providers]
        worst = max((worst_case_cost_usd(m, bound, max_tokens) for m in models), default=Decimal(0))
        return worst * self._reroutes

    def _pinned_models(self, model_id: str | None) -> tuple[str, ...]:
        """A pinned model and the fallbacks that may serve it (empty: not pinned)."""
        if model_id is None:
            return ()
        return self._pins[model_id]

    def _cost(self, request: ModelRequest, model_id: str, result: ProviderResult) -> Decimal:
        """What the router settled for a streamed call (the same rule: ``settle_usage``)."""
        model = self.config.model(model_id)
        bound = usage_bound(model, request.input_token_bound(), request.max_tokens)
        return settle_usage(model, bound, result.input_tokens, result.output_tokens,
                            result.cached_tokens).cost_usd

    def _created(self) -> int:
        return int(self._clock.now().timestamp())

    def _error(self, wire: _Wire, error: HttpError, headers: Mapping[str, str]) -> Response:
        return _json(wire.error(error), status=error.status, headers={**headers, **error.headers()})


class _App:
    """The gateway's ASGI app: a POST to a completion endpoint goes straight to its handler (the
    hot path: no routing table, no middleware stack); everything else (other paths and methods,
    a ``root_path``, lifespan) goes to the Starlette app, which also answers 404 and 405. An
    exception a handler lets out is answered with a plain 500 and raised again for the server
    to log, as Starlette's own error middleware does; :attr:`routes` is the Starlette app."""

    def __init__(self, routes: Starlette,
                 posts: Mapping[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.routes = routes
        self._posts = dict(posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self._posts.get(scope["path"])
            if handler is not None:
                await self._handle(handler, scope, receive, send)
                return
        await self.routes(scope, receive, send)

    @staticmethod
    async def _handle(handler: Callable[[Request], Awaitable[Response]], scope: Scope,
                      receive: Receive, send: Send) -> None:
        try:
            response = await handler(Request(scope, receive))
        except Exception:
            await Response("Internal Server Error", status_code=500,
                           media_type="text/plain")(scope, receive, send)
            raise
        await response(scope, receive, send)  # a failure once started: the server's to end


def _headers(scope: Scope) -> dict[str, str]:
    """A request's headers by (lower-case) name; the first of repeated ones, as
    ``Headers.get``."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out


class _Outcome:
    """Counts one request once in the metrics, whichever way it ends."""

    def __init__(self, gateway: Gateway, endpoint: str, started: float) -> None:
        self.gateway = gateway
        self.endpoint = endpoint
        self.started = started
        self.key = "-"
        self.model = "-"
        self.request_id: str | None = None
        self.headers: dict[str, str] = {}
        self._counted = False

    def finish(self, status: int, cost_usd: Decimal, failure: str | None = None) -> None:
        if self._counted:
            return
        self._counted = True
        g = self.gateway
        g.metrics.in_flight -= 1
        g.metrics.observe(self.endpoint, self.key, self.model, status,
                          g._clock.monotonic() - self.started, cost_usd, failure)
        log.debug("request %s key %s model %s: %s", self.request_id or "-", self.key,
                  self.model, failure or status)

    def ok(self, response: Response, cost_usd: Decimal) -> Response:
        self.finish(response.status_code, cost_usd)
        return response

    def failed(self, wire: _Wire, exc: BaseException) -> Response:
        error = http_error(exc)
        self.finish(error.status, Decimal(0), failure_kind(exc))
        headers = dict(self.headers)
        if self.request_id is not None:
            headers.setdefault("x-amm-request-id", self.request_id)
        return self.gateway._error(wire, error, headers)


class _StreamState:
    """One stream's loose ends: the key's hold, the engine's generator, the metrics. Closing
    is idempotent: the hold is released unless settled, the generator closed (cancelling the
    provider call), the request counted (as cancelled, if nothing counted it before)."""

    def __init__(self, limits: KeyLimits, hold: KeyHold,
                 chunks: AsyncGenerator[StreamChunk, None], done: _Outcome) -> None:
        self.limits = limits
        self.hold: KeyHold | None = hold
        self.chunks = chunks
        self.done = done

    def settle(self, cost_usd: Decimal) -> None:
        if self.hold is not None:
            self.limits.settle(self.hold, cost_usd)
            self.hold = None

    async def close(self) -> None:
        if self.hold is not None:
            self.limits.release(self.hold)
            self.hold = None
        try:
            await self.chunks.aclose()
        finally:
            self.done.finish(499, Decimal(0), "cancelled")


def _too_large(limit: int) -> GatewayRefusal:
    return GatewayRefusal(f"the request body is larger than {limit} bytes "
                          "(settings.gateway.max_body_bytes)", status=413,
                          kind="request_too_large", code="request_too_large")


def _json(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=dict(headers or {}),
                    media_type=_JSON)


def _streamed_response(request: ModelRequest, model_id: str, result: ProviderResult,
                       cost_usd: Decimal) -> ModelResponse:
    """The ``ModelResponse`` of a finished stream (for the closing events: reason, usage)."""
    return ModelResponse(
        request_id=request.request_id or "", model_id=model_id, provider="", text=result.text,
        finish_reason=result.finish_reason, tool_calls=result.tool_calls,
        input_tokens=result.input_tokens, output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens, cost_usd=cost_usd)
