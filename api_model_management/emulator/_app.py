"""The emulator's ASGI app: the four providers' real paths on one server, plus admin endpoints.

Chat requests go: auth -> JSON body -> provider validation -> answer -> :meth:`Engine.plan`
(header fault, outage, rate limit, random fault, latency) -> the reply in the provider's format.
Health probes (model lists, Ollama's version/tags/root) follow header faults and provider-wide
outages, so health checking can be tested against an outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from . import _anthropic, _gemini, _ollama, _openai
from ._engine import (
    FAULT_HEADER,
    INFLATED_OUTPUT_TOKENS,
    Engine,
    HeaderFaultError,
    Plan,
    plan_from_header,
)
from ._profile import ProfileError, Provider, parse_profile
from ._replies import TRANSPORT_KEY, Dropped, Hung, Plain, Receive, Scope, Send, Streamed
from ._shape import (
    JSON,
    TEXT,
    answer_counts,
    break_json,
    break_tool_calls,
    fault_kind,
    request_counts,
    shaped_answer,
)
from ._text import Answer, degraded_answer, make_answer, oversized_answer
from ._wire import Call, Reply, WireError, json_reply

_WIRES: dict[str, Any] = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini,
                          "ollama": _ollama}
_BAD_JSON = {
    "openai": "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
              "using your HTTP library correctly.)",
    "anthropic": "There was an issue with your request body: invalid JSON",
    "gemini": "Invalid JSON payload received.",
    "ollama": "invalid character in request body",
}


class EmulatorApp:
    """An ASGI application serving all four protocols from one :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.hangs: set[asyncio.Future[None]] = set()
        self._starlette = Starlette(routes=self._routes())
        #: The chat endpoints skip Starlette's routing (the hot path); everything else uses it.
        self._hot = {"/v1/chat/completions": self.openai_chat, "/v1/messages": self.anthropic_messages,
                     "/api/chat": self.ollama_chat}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
            handler = self._hot.get(scope["path"]) if scope["method"] == "POST" else None
            if handler is not None:
                reply = await handler(Request(scope, receive))
                await reply(scope, receive, send)
                return
        await self._starlette(scope, receive, send)

    def release_hangs(self) -> None:
        """End every hung request (their connections are closed); call on the server's loop."""
        for release in list(self.hangs):
            if not release.done():
                release.set_result(None)

    def _routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            Route("/v1/models", self.v1_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.v1_model, methods=["GET", "POST"]),
            Route("/v1beta/models", self.gemini_models, methods=["GET"]),
            Route("/v1beta/models/{name:path}", self.gemini_model, methods=["GET", "POST"]),
            Route("/api/chat", self.ollama_chat, methods=["POST"]),
            Route("/api/version", self.ollama_version, methods=["GET", "HEAD"]),
            Route("/api/tags", self.ollama_tags, methods=["GET", "HEAD"]),
            Route("/api/ps", self.ollama_ps, methods=["GET"]),
            Route("/", self.ollama_root, methods=["GET", "HEAD"]),
            Route("/_emulator/stats", self.admin_stats, methods=["GET"]),
            Route("/_emulator/reset", self.admin_reset, methods=["POST"]),
            Route("/_emulator/clock", self.admin_clock, methods=["POST"]),
            Route("/_emulator/profile", self.admin_profile, methods=["PUT"]),
        ]

    # ------------------------------------------------------------------ chat endpoints

    async def openai_chat(self, request: Request) -> Any:
        return await self._chat(request, "openai", lambda body: _openai.parse(body, {}))

    async def anthropic_messages(self, request: Request) -> Any:
        return await self._chat(request, "anthropic", lambda body: _anthropic.parse(body, {}))

    async def ollama_chat(self, request: Request) -> Any:
        return await self._chat(request, "ollama", lambda body: _ollama.parse(body, {}))

    async def gemini_model(self, request: Request) -> Any:
        name = request.path_params["name"]
        if request.method == "GET":
            return self._probe(request, "gemini", lambda: json_reply(200, _gemini.model_info(name)))
        model, _, method = name.partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return Plain(_gemini.error(404, f"Method {method or '(none)'} not found on models/{model}."))
        stream = method == "streamGenerateContent"
        sse = request.query_params.get("alt") == "sse"
        return await self._chat(request, "gemini", lambda body: _gemini.parse(body, {}, model, stream),
                                json_array=stream and not sse)

    async def _chat(self, request: Request, provider: Provider, parse: Any, json_array: bool = False) -> Any:
        engine, wire = self.engine, _WIRES[provider]
        denied = self._auth(request, provider)
        if denied is not None:
            engine.record(provider, "-", str(denied.status))
            return Plain(denied)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            engine.record(provider, "-", "400")
            return Plain(wire.error(400, _BAD_JSON[provider]))
        try:
            call: Call = parse(body)
        except WireError as exc:
            engine.record(provider, "-", str(exc.reply.status))
            return Plain(exc.reply)
        if not engine.knows(provider, call.model):
            engine.record(provider, call.model, "404")
            return Plain(wire.not_found(call.model))
        if call.shape is None:
            answer = make_answer(engine.answer_text(call.model, call.conversation, call.prompt),
                                 len(call.conversation), call.max_tokens)
            answer_kind = TEXT
        else:
            engine.count_content(provider, request_counts(call.shape))
            answer, answer_kind = shaped_answer(
                call, lambda: engine.answer_text(call.model, call.conversation, call.prompt))
        key = self._key_of(request, provider)
        try:
            plan = engine.plan(provider, call.model, answer.input_tokens + answer.output_tokens,
                               request.headers.get(FAULT_HEADER), key, fault_kind(answer_kind))
        except HeaderFaultError as exc:
            engine.record(provider, call.model, "400", key)
            return Plain(wire.error(400, str(exc)))
        return self._reply(provider, call, answer, plan, json_array, key, answer_kind)

    def _key_of(self, request: Request, provider: Provider) -> str | None:
        """The request's API key when the profile names keys (per-key limits and statistics),
        else None (the common case reads no header)."""
        profile = self.engine.profile
        if not profile.key_rate_limits and profile.valid_keys is None:
            return None
        if provider == "anthropic":
            return _anthropic.api_key(request.headers)
        if provider == "gemini":
            return _gemini.api_key(request.headers, request.query_params)
        return _openai.api_key(request.headers)  # OpenAI, and Ollama's optional bearer token

    def _reply(self, provider: Provider, call: Call, answer: Answer, plan: Plan, json_array: bool,
               key: str | None = None, answer_kind: str = TEXT) -> Any:
        engine, wire = self.engine, _WIRES[provider]
        kind = plan.kind
        if kind in ("bad_tool_args", "bad_json"):
            broken = _broken(call, answer, kind, answer_kind)
            if broken is None:  # nothing of that kind to break: answered as without the fault
                kind = "ok"
                plan = dataclasses.replace(plan, kind="ok")
            else:
                answer = broken
        if kind == "error":
            engine.record(provider, call.model, str(plan.status), key)
            return Plain(self._error(provider, plan.status, call.model, plan.retry_after_s, key),
                         plan.latency_s)
        if kind == "drop":
            engine.record(provider, call.model, "drop", key)
            return Dropped()
        if kind == "hang":
            engine.record(provider, call.model, "hang", key)
            return Hung(engine.profile.hang_max_s, self.hangs)
        engine.record(provider, call.model, {"ok": "200", "midstream": "midstream_error"}.get(kind, kind), key)
        if kind == "oversized":
            answer = oversized_answer(answer, plan.size_bytes)
        elif kind == "inflated_usage":
            answer = dataclasses.replace(answer, output_tokens=INFLATED_OUTPUT_TOKENS)
        elif kind == "degraded":
            answer = degraded_answer(answer)
        if call.shape is not None:
            engine.count_content(provider, answer_counts(answer, answer_kind))
        rate = engine.rate_info(provider, call.model, key)
        latency_ms = int(plan.latency_s * 1000)
        headers = wire.success_headers(rate, engine.clock.now(), latency_ms)
        if call.stream and not json_array:
            return self._stream(wire, call, answer, plan, headers)
        payload = wire.body(call, answer)
        if json_array:
            payload = b"[" + payload + b"]"
        headers = [(b"content-type", b"application/json"), *headers]
        if kind == "malformed":
            return Plain(Reply(200, headers, payload[: len(payload) // 2]), plan.latency_s)
        cut = len(payload) // 2 if kind == "midstream" else None
        return Plain(Reply(200, headers, payload), plan.latency_s, cut_after=cut)

    def _stream(self, wire: Any, call: Call, answer: Any, plan: Plan,
                headers: list[tuple[bytes, bytes]]) -> Streamed:
        frames = wire.frames(call, answer)
        headers = [(b"content-type", wire.stream_content_type), (b"cache-control", b"no-cache"), *headers]
        fault_at, fault_frame = None, None
        if plan.kind in ("midstream", "malformed"):
            fault_at = max(1, len(frames) // 2)
            fault_frame = wire.midstream_error() if plan.kind == "midstream" else wire.malformed_frame()
        return Streamed(200, headers, frames, plan.ttft_s, plan.latency_s, fault_at, fault_frame)

    def _error(self, provider: Provider, status: int, model: str, retry_after_s: float | None,
               key: str | None = None) -> Reply:
        engine = self.engine
        if provider == "openai":
            return _openai.error(status, retry_after_s=retry_after_s,
                                 rate=engine.rate_info("openai", model, key))
        if provider == "anthropic":
            return _anthropic.error(status, retry_after_s=retry_after_s,
                                    rate=engine.rate_info("anthropic", model, key), now=engine.clock.now())
        if provider == "gemini":
            return _gemini.error(status, retry_after_s=retry_after_s,
                                 rate=engine.rate_info("gemini", model, key), model=model)
        return _ollama.error(status)

    def _auth(self, request: Request, provider: Provider) -> Reply | None:
        headers, engine = request.headers, self.engine
        if provider == "openai":
            problem = engine.key_problem(_openai.api_key(headers))
            return _openai.auth_error(problem) if problem else None
        if provider == "anthropic":
            problem = engine.key_problem(_anthropic.api_key(headers))
            if problem:
                return _anthropic.auth_error(problem)
            return _anthropic.version_error(headers)
        if provider == "gemini":
            problem = engine.key_problem(_gemini.api_key(headers, request.query_params))
            return _gemini.auth_error(problem) if problem else None
        return None

    # ------------------------------------------------------------------ health probes

    def _probe(self, request: Request, provider: Provider, ok: Any) -> Any:
        """Answer a probe: auth, then header faults and provider-wide outages, then ``ok()``."""
        denied = self._auth(request, provider)
        if denied is not None:
            return Plain(denied)
        header = request.headers.get(FAULT_HEADER)
        try:
            plan = plan_from_header(header) if header else self.engine.provider_outage(provider)
        except HeaderFaultError as exc:
            return Plain(_WIRES[provider].error(400, str(exc)))
        if plan is None or plan.kind not in ("drop", "hang", "error"):
            reply = ok()
            if request.method == "HEAD":
                reply = Reply(reply.status, reply.headers, b"")
            return Plain(reply)
        if plan.kind == "drop":
            return Dropped()
        if plan.kind == "hang":
            return Hung(self.engine.profile.hang_max_s, self.hangs)
        return Plain(self._error(provider, plan.status, "-", plan.retry_after_s))

    async def v1_models(self, request: Request) -> Any:
        provider = _v1_provider(request)
        if provider == "gemini":
            return await self.gemini_models(request)
        catalog = self.engine.catalog(provider)
        wire = _openai if provider == "openai" else _anthropic
        return self._probe(request, provider, lambda: Reply(200, [(b"content-type", b"application/json")],
                                                            wire.models(catalog)))

    async def v1_model(self, request: Request) -> Any:
        provider, model = _v1_provider(request), request.path_params["model"]
        if provider == "gemini" or request.method == "POST":
            request.path_params["name"] = model
            return await self.gemini_model(request)
        if provider == "openai":
            payload = {"id": model, "object": "model", "created": 1686935002, "owned_by": "system"}
        else:
            payload = {"type": "model", "id": model, "display_name": model,
                       "created_at": "2025-09-29T00:00:00Z"}
        return self._probe(request, provider, lambda: json_reply(200, payload))

    async def gemini_models(self, request: Request) -> Any:
        catalog = self.engine.catalog("gemini")
        return self._probe(request, "gemini", lambda: Reply(
            200, [(b"content-type", b"application/json; charset=UTF-8")], _gemini.models(catalog)))

    async def ollama_version(self, request: Request) -> Any:
        return self._probe(request, "ollama", lambda: json_reply(200, {"version": _ollama.VERSION},
                                                                 content_type=_ollama.JSON_UTF8))

    async def ollama_tags(self, request: Request) -> Any:
        catalog = self.engine.catalog("ollama")
        return self._probe(request, "ollama", lambda: Reply(
            200, [(b"content-type", _ollama.JSON_UTF8)], _ollama.tags(catalog)))

    async def ollama_ps(self, request: Request) -> Any:
        return self._probe(request, "ollama", lambda: json_reply(200, {"models": []},
                                                                 content_type=_ollama.JSON_UTF8))

    async def ollama_root(self, request: Request) -> Any:
        return self._probe(request, "ollama", lambda: Reply(
            200, [(b"content-type", b"text/plain; charset=utf-8")], b"Ollama is running"))

    # ------------------------------------------------------------------ admin

    async def admin_stats(self, request: Request) -> Any:
        return Plain(json_reply(200, self.engine.stats()))

    async def admin_reset(self, request: Request) -> Any:
        self.engine.reset()
        return Plain(json_reply(200, {"reset": True}))

    async def admin_clock(self, request: Request) -> Any:
        try:
            advance_s = float(orjson.loads(await request.body())["advance_s"])
            self.engine.advance(advance_s)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return Plain(json_reply(400, {"error": f"expected {{\"advance_s\": <seconds >= 0>}}: {exc}"}))
        return Plain(json_reply(200, {"advanced_s": advance_s}))

    async def admin_profile(self, request: Request) -> Any:
        try:
            profile = parse_profile(orjson.loads(await request.body()), "request body")
            self.engine.set_profile(profile)
        except orjson.JSONDecodeError as exc:
            return Plain(json_reply(400, {"error": f"profile is not JSON: {exc}"}))
        except ProfileError as exc:
            return Plain(json_reply(400, {"error": str(exc)}))
        return Plain(json_reply(200, {"applied": True}))


def _broken(call: Call, answer: Answer, kind: str, answer_kind: str) -> Answer | None:
    """The answer broken by a ``bad_tool_args`` or ``bad_json`` fault, or None when it has
    nothing of that kind (a header fault on a request without tools or a schema)."""
    if kind == "bad_tool_args":
        return break_tool_calls(call, answer)
    return break_json(call, answer) if answer_kind == JSON else None


def _v1_provider(request: Request) -> Provider:
    """``/v1/models`` is shared: Gemini's key (its ``v1`` API version) picks Gemini, Anthropic's
    headers pick Anthropic, anything else OpenAI."""
    headers = request.headers
    if "x-goog-api-key" in headers or "key" in request.query_params:
        return "gemini"
    if "x-api-key" in headers or "anthropic-version" in headers:
        return "anthropic"
    return "openai"


def create_app(engine: Engine | None = None) -> EmulatorApp:
    """An emulator app over ``engine`` (a fault-free one by default)."""
    return EmulatorApp(engine or Engine())
