"""Ollama native ``/api/chat`` (protocols.md §4). No caching: ``prompt_eval_count`` is input,
``eval_count`` output; both may be absent (→ 0). Streams are NDJSON ending with ``"done": true``.

Tools go in OpenAI's form; an assistant's calls as ``tool_calls`` with ``arguments`` an object,
tool results as ``tool`` messages naming the function (``tool_name``). Ollama has no tool choice:
``none`` sends no tools, a named choice only that tool, ``required`` all of them (not enforced).
Calls come without ids: each gets one derived from the reply (``_tools.derived_id`` of
``created_at``, the call's position, name and arguments). Images go as base64 ``images`` of their
message (an http(s) image URL is refused: Ollama takes no URLs and nothing is fetched here).
``format`` is the JSON Schema of a ``json_schema`` answer, or ``"json"``. A streamed message's
calls come whole and are yielded as they come.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from .. import errors
from .._request import FinishReason, ModelRequest, ToolCall
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import retry_after_from_headers, retry_only_state
from ._base import ProviderAdapter, StreamState, Usage, count
from ._errors import generic_kind, malformed, mentions_context_overflow, status_error
from ._sse import iter_ndjson
from ._tools import call_names, derived_id
from .openai import sampling

FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


def ollama_messages(request: ModelRequest, provider: str, model_id: str) -> list[dict[str, Any]]:
    """Messages in Ollama's form, system prompt first; ``InvalidRequest`` for an image by URL."""
    names = call_names(request)
    messages: list[dict[str, Any]] = []
    system = request.system_prompt()
    if system:
        messages.append({"role": "system", "content": system})
    for message in request.chat_messages():
        out: dict[str, Any] = {"role": message.role, "content": message.text}
        images = [_image_data(image.inline, provider, model_id) for image in message.images]
        if images:
            out["images"] = images
        if message.tool_calls:
            out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.parsed_arguments()}}
                                 for c in message.tool_calls]
        if message.tool_call_id is not None:
            out["tool_name"] = names[message.tool_call_id]
        messages.append(out)
    return messages


def _image_data(inline: Any, provider: str, model_id: str) -> str:
    if inline is None:
        raise errors.InvalidRequest(
            f"{provider}: Ollama takes images as base64 data, not URLs", provider=provider,
            model_id=model_id, http_status=None, raw_type="image_url_unsupported")
    return str(inline.base64_data)


def tool_fields(request: ModelRequest) -> dict[str, Any]:
    """``tools`` (as the tool choice allows) and ``format``."""
    out: dict[str, Any] = {}
    choice = request.tool_choice
    tools = request.tools
    if choice is not None and not isinstance(choice, str):
        tools = tuple(t for t in tools if t.name == choice.name)
    if tools and choice != "none":
        out["tools"] = [t.to_openai() for t in tools]
    if request.wants_json():
        out["format"] = request.output_schema() or "json"
    return out


def ollama_usage(body: dict) -> Usage:
    return Usage(
        input_tokens=count(body.get("prompt_eval_count")),
        output_tokens=count(body.get("eval_count")),
    )


class OllamaAdapter(ProviderAdapter):
    """``POST /api/chat`` (``stream: false`` or NDJSON); probe ``GET /api/tags`` (lists models)."""

    provider_type = "ollama"

    def _root(self) -> str:
        return self.config.base_url.removesuffix("/api")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        if key is None:
            return {}
        return {"authorization": f"Bearer {key.get_secret_value()}"}

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._root()}/api/chat"

    _stream_url = _complete_url

    def _probe_path(self) -> str:
        return f"{self._root()}/api/tags"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        return {
            "model": model.wire_name,
            "messages": ollama_messages(request, self.name, model.id),
            **tool_fields(request),
            "stream": stream,
            "options": {"num_predict": request.max_tokens, **sampling(request)},
        }

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return retry_only_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            return None
        names = [str(m["name"]) for m in models if isinstance(m, dict) and "name" in m]
        # "llama3.2:latest" is what a request naming "llama3.2" gets: list both spellings
        bare = [n.removesuffix(":latest") for n in names if n.endswith(":latest")]
        return tuple(dict.fromkeys([*names, *bare]))

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig, state: StreamState) -> str:
        if "error" in body:
            raise self._classify_error(200, body, {}, model.id)
        content = body["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not a string")
        state.tool_calls.extend(self._calls(body, state, model.id))
        self._done(state, body)
        return content

    def _calls(self, line: dict, state: StreamState, model_id: str) -> list[ToolCall]:
        """The tool calls of one reply or stream line, each with an id derived from the reply."""
        calls = (line.get("message") or {}).get("tool_calls") or []
        if not isinstance(calls, list):
            raise malformed(self.name, model_id, "tool_calls is not a list")
        out = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                raise malformed(self.name, model_id, "a tool call has no function")
            arguments = function.get("arguments") or {}
            if isinstance(arguments, dict):
                arguments = orjson.dumps(arguments).decode()
            position = state.extra["calls"] = state.extra.get("calls", 0) + 1
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = derived_id(str(line.get("created_at", "")), str(position),
                                     str(function.get("name")), str(arguments))
            out.append(self._tool_call(model_id, call_id, function.get("name"), arguments))
        return out

    def _done(self, state: StreamState, line: dict) -> None:
        raw = line.get("done_reason")
        state.raw_finish_reason = str(raw) if raw is not None else None
        state.finish_reason = FINISH_REASONS.get(str(raw), "other") if raw is not None else "stop"
        if state.finish_reason == "stop" and state.extra.get("calls"):
            state.finish_reason = "tool_calls"  # Ollama says stop after tool calls
        self._set_usage(state, ollama_usage(line))
        state.completed = True

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str | ToolCall]:
        async for raw in iter_ndjson(lines):
            line = self._decode_event(raw, model.id)
            if not isinstance(line, dict):
                raise malformed(self.name, model.id, "stream line is not an object")
            if "error" in line:
                raise self._classify_error(200, line, {}, model.id)
            text = (line.get("message") or {}).get("content")
            if isinstance(text, str) and text:
                yield text
            for call in self._calls(line, state, model.id):
                yield call
            if line.get("done"):
                self._done(state, line)
                return

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        message = body.get("error") if isinstance(body, dict) else None
        kind: type[errors.ProviderError] | None = None
        if status in (200, 400, 500) and mentions_context_overflow(message):
            kind = errors.ContextWindowExceeded
        elif status == 200:  # an error line in a stream: the server failed mid-generation
            busy = isinstance(message, str) and "busy" in message.lower()
            kind = errors.ProviderOverloaded if busy else errors.ProviderServerError
        else:
            kind = generic_kind(status)
        return status_error(
            status,
            provider=self.name,
            model_id=model_id,
            raw_type=None,
            retry_after_s=retry_after_from_headers(headers, self._clock.now()),
            kind=kind,
        )
