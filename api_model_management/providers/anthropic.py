"""Anthropic Messages (protocols.md §2).

Usage: ``input_tokens`` excludes cache reads *and* cache writes. Normalized ``input_tokens`` is
``input_tokens + cache_creation_input_tokens`` (cache writes priced as input; Anthropic bills them
at a premium, so cost is a slight underestimate there) and ``cached_tokens`` is
``cache_read_input_tokens``.

Tools: ``tools`` with ``input_schema``; ``tool_choice`` auto/required/none/named as ``auto``/``any``/
``none``/``tool`` (``parallel_tool_calls: false`` as ``disable_parallel_tool_use``); an assistant's
calls as ``tool_use`` blocks, tool results as ``tool_result`` blocks of the next user turn (one
turn for a run of results, with any user message that follows), ids made Anthropic-safe
reversibly (``_tools.anthropic_id``). A function the conversation called but the request no longer
offers is declared with an open schema (Anthropic refuses ``tool_use`` blocks of undeclared
tools). Images are ``image`` blocks with a ``base64`` or ``url`` source. Structured output:
``json_schema`` through a forced tool whose ``input_schema`` is the schema (its input is the
answer's text, ``finish_reason`` ``stop``); ``json_object`` as an instruction in the system prompt
(Anthropic has no JSON mode). ``temperature`` above Anthropic's 1.0 is sent as 1.0; ``seed`` is not
sent (Anthropic has none). A stream's ``input_json_delta`` pieces are assembled per block; the
call is yielded at its ``content_block_stop``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from .. import errors
from .._request import (
    JSON_OBJECT_INSTRUCTION,
    FinishReason,
    ImagePart,
    ImageURL,
    Message,
    ModelRequest,
    TextPart,
    ToolCall,
)
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import anthropic_rate_limit_state, suggested_wait_s
from ._base import ProviderAdapter, StreamState, Usage, api_root, count, ids_of_data_list
from ._errors import generic_kind, malformed, mentions_context_overflow, safe_token, status_error
from ._sse import iter_sse
from ._tools import (
    ResponseTool,
    ToolCallAssembler,
    anthropic_id,
    assistant_message,
    call_names,
    from_anthropic_id,
    response_tool,
)
from .openai import sampling

API_VERSION = "2023-06-01"

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}

_ERROR_TYPES: dict[str, type[errors.ProviderError]] = {
    "authentication_error": errors.AuthenticationError,
    "permission_error": errors.AuthenticationError,
    "billing_error": errors.QuotaExceeded,
    "not_found_error": errors.ModelNotFound,
    "rate_limit_error": errors.RateLimited,
    "overloaded_error": errors.ProviderOverloaded,
    "api_error": errors.ProviderServerError,
    "timeout_error": errors.ProviderServerError,
    "request_too_large": errors.InvalidRequest,
    "model_context_window_exceeded": errors.ContextWindowExceeded,
}


def anthropic_usage(usage: Any, previous: Usage | None = None) -> Usage:
    """Normalized usage from an Anthropic ``usage`` object. In streams, ``message_delta`` may
    carry only ``output_tokens``; fields it lacks keep their ``previous`` values."""
    prev = previous or Usage()
    if not isinstance(usage, dict):
        return prev
    uncached = prev.input_tokens
    if "input_tokens" in usage or "cache_creation_input_tokens" in usage:
        uncached = count(usage.get("input_tokens")) + count(
            usage.get("cache_creation_input_tokens")
        )
    cached = (
        count(usage["cache_read_input_tokens"])
        if "cache_read_input_tokens" in usage
        else prev.cached_tokens
    )
    output = count(usage["output_tokens"]) if "output_tokens" in usage else prev.output_tokens
    return Usage(input_tokens=uncached, output_tokens=output, cached_tokens=cached)


#: Anthropic's highest temperature.
MAX_TEMPERATURE = 1.0
_OPEN_SCHEMA: dict[str, Any] = {"type": "object"}


def anthropic_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The conversation in Anthropic's turns (without the system prompt). Plain messages keep a
    string content; a run of tool results (and a user message right after it) is one user turn
    of blocks, results first."""
    turns: list[dict[str, Any]] = []
    for message in request.chat_messages():
        if message.role == "tool":
            block: dict[str, Any] = {"type": "tool_result",
                                     "tool_use_id": anthropic_id(message.tool_call_id or "")}
            if message.text:  # Anthropic refuses empty text; a result may have no content
                block["content"] = message.text
            if _open_results(turns):
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
        elif message.role == "user" and _open_results(turns):
            turns[-1]["content"].extend(_blocks(message))
        elif message.is_plain:
            turns.append({"role": message.role, "content": message.content})
        else:
            turns.append({"role": message.role, "content": _blocks(message)})
    return turns


def _open_results(turns: list[dict[str, Any]]) -> bool:
    """The last turn is a user turn of tool results only (more results or a user message join)."""
    if not turns or turns[-1]["role"] != "user" or not isinstance(turns[-1]["content"], list):
        return False
    return all(block["type"] == "tool_result" for block in turns[-1]["content"])


def _blocks(message: Message) -> list[dict[str, Any]]:
    content = message.content
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:  # Anthropic refuses empty text blocks
            blocks.append({"type": "text", "text": content})
    elif content:
        for part in content:
            if isinstance(part, TextPart):
                if part.text:
                    blocks.append({"type": "text", "text": part.text})
            else:
                blocks.append(_image_block(part.image_url))
    blocks.extend({"type": "tool_use", "id": anthropic_id(call.id), "name": call.name,
                   "input": call.parsed_arguments()} for call in message.tool_calls)
    return blocks


def _image_block(image: ImageURL) -> dict[str, Any]:
    inline = image.inline
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": inline.media_type,
                                        "data": inline.base64_data}}


def tool_fields(request: ModelRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice``: the request's tools, the functions its conversation called
    that it no longer offers, and the response tool of a ``json_schema`` answer."""
    tools: list[dict[str, Any]] = []
    for tool in request.tools:
        declared: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            declared["description"] = tool.description
        declared["input_schema"] = tool.input_schema()
        tools.append(declared)
    offered = set(request.tool_names())
    for name in dict.fromkeys(call_names(request).values()):
        if name not in offered:
            tools.append({"name": name, "input_schema": _OPEN_SCHEMA})
    answer = response_tool(request)
    if answer is not None:
        tools.append(answer.declaration())
    if not tools:
        return {}
    choice = _tool_choice(request, answer)
    return {"tools": tools, "tool_choice": choice} if choice else {"tools": tools}


def _tool_choice(request: ModelRequest, answer: ResponseTool | None) -> dict[str, Any] | None:
    asked = request.tool_choice
    choice: dict[str, Any] | None
    if not isinstance(asked, str) and asked is not None:
        choice = {"type": "tool", "name": asked.name}
    elif answer is not None:  # a structured answer: the response tool, or a real call
        real = request.tools and asked != "none"
        choice = {"type": "any"} if real else {"type": "tool", "name": answer.name}
    elif not request.tools:
        return {"type": "none"}  # only tools the conversation called before: answer in text
    else:
        choice = {"auto": {"type": "auto"}, "required": {"type": "any"},
                  "none": {"type": "none"}}.get(asked or "")
    if request.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def messages_from_anthropic(body: Mapping[str, Any]) -> list[Message]:
    """The conversation of an Anthropic Messages request body in OpenAI's shape (the inverse of
    the adapter's translation: the system prompt first, a user turn's tool results as tool
    messages before its other content, ids as they were before ``anthropic_id``)."""
    out: list[Message] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    if system:
        out.append(Message(role="system", content=system))
    for turn in body["messages"]:
        content = turn["content"]
        if isinstance(content, str):
            out.append(Message(role=turn["role"], content=content))
        elif turn["role"] == "assistant":
            out.append(_assistant_from_blocks(content))
        else:
            out.extend(_user_from_blocks(content))
    return out


def _assistant_from_blocks(blocks: list[dict[str, Any]]) -> Message:
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    calls = tuple(ToolCall(id=from_anthropic_id(b["id"]), name=b["name"],
                           arguments=orjson.dumps(b["input"]).decode())
                  for b in blocks if b["type"] == "tool_use")
    return assistant_message(text, calls)


def _user_from_blocks(blocks: list[dict[str, Any]]) -> list[Message]:
    out: list[Message] = []
    parts: list[TextPart | ImagePart] = []
    for block in blocks:
        if block["type"] == "tool_result":
            out.append(Message(role="tool", tool_call_id=from_anthropic_id(block["tool_use_id"]),
                               content=_result_text(block.get("content"))))
        elif block["type"] == "text":
            parts.append(TextPart(text=block["text"]))
        elif block["type"] == "image":
            source = block["source"]
            url = (source["url"] if source["type"] == "url"
                   else f"data:{source['media_type']};base64,{source['data']}")
            parts.append(ImagePart(image_url=ImageURL(url=url)))
    if parts:
        out.append(Message(role="user", content=tuple(parts)))
    return out


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


class AnthropicAdapter(ProviderAdapter):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version``; probe ``GET /v1/models``."""

    provider_type = "anthropic"

    def _root(self) -> str:
        return api_root(self.config.base_url, "v1")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key is not None:
            headers["x-api-key"] = key.get_secret_value()
        return headers

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._root()}/messages"

    _stream_url = _complete_url

    def _probe_path(self) -> str:
        return f"{self._root()}/models"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        params = sampling(request)
        body: dict[str, Any] = {
            "model": model.wire_name,
            "max_tokens": request.max_tokens,
            "messages": anthropic_messages(request),
        }
        system = request.system_prompt()
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object":
            system = f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else JSON_OBJECT_INSTRUCTION
        if system:
            body["system"] = system
        if "temperature" in params:
            body["temperature"] = min(params["temperature"], MAX_TEMPERATURE)
        if "top_p" in params:
            body["top_p"] = params["top_p"]
        if "stop" in params:
            body["stop_sequences"] = params["stop"]
        body.update(tool_fields(request))
        body["stream"] = stream
        return body

    def _answers_by_tool(self, request: ModelRequest) -> bool:
        return request.output_schema() is not None

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("request-id")

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return anthropic_rate_limit_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        return ids_of_data_list(body)

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig, state: StreamState) -> str:
        if body.get("type") == "error":
            raise self._error_object(200, body.get("error"), {}, model.id)
        texts: list[str] = []
        for block in body["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                arguments = block["input"]
                if not isinstance(arguments, dict):
                    raise TypeError("tool_use input is not an object")
                item = self._use(model.id, state, block["id"], block["name"],
                                 orjson.dumps(arguments).decode())
                if isinstance(item, str):
                    texts.append(item)
                else:
                    state.tool_calls.append(item)
        state.provider_request_id = body.get("id")
        self._finish(state, body.get("stop_reason"))
        self._set_usage(state, anthropic_usage(body.get("usage")))
        return "".join(texts)

    def _use(self, model_id: str, state: StreamState, call_id: Any, name: Any,
             arguments: str) -> str | ToolCall:
        """A ``tool_use`` block: the answer's text when it is the response tool's, else a call."""
        if state.response_tool is not None and name == state.response_tool:
            state.extra["answered_by_tool"] = True
            return arguments
        if not isinstance(call_id, str):
            raise malformed(self.name, model_id, "tool_use without an id")
        return self._tool_call(model_id, from_anthropic_id(call_id), name, arguments)

    def _finish(self, state: StreamState, raw: Any) -> None:
        if raw is None:
            return
        state.raw_finish_reason = str(raw)
        state.finish_reason = FINISH_REASONS.get(str(raw), "other")
        if state.finish_reason == "tool_calls" and state.extra.get("answered_by_tool"):
            state.finish_reason = "stop"  # the response tool answered; real calls say tool_calls

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str | ToolCall]:
        usage = Usage()
        calls = ToolCallAssembler(self.config.max_response_bytes,
                                  lambda: self._too_large(model.id, 200, "streamed tool calls"))
        async for event in iter_sse(lines):
            data = self._decode_event(event.data, model.id)
            if not isinstance(data, dict):
                raise malformed(self.name, model.id, "stream event is not an object")
            name = event.event or data.get("type")
            if name == "message_start":
                message = data.get("message") or {}
                state.provider_request_id = state.provider_request_id or message.get("id")
                usage = anthropic_usage(message.get("usage"), usage)
            elif name == "content_block_start":
                self._block_start(data, calls, model.id)
            elif name == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    yield delta["text"]
                elif delta.get("type") == "input_json_delta":
                    fragment = delta.get("partial_json")
                    if data.get("index") not in calls or not isinstance(fragment, str):
                        raise malformed(self.name, model.id, "input_json_delta out of a tool_use")
                    calls.add(data["index"], fragment)
            elif name == "content_block_stop" and data.get("index") in calls:
                call_id, tool, arguments = calls.take(data["index"])
                yield self._use(model.id, state, call_id, tool, _object_text(arguments))
            elif name == "message_delta":
                self._finish(state, (data.get("delta") or {}).get("stop_reason"))
                usage = anthropic_usage(data.get("usage"), usage)
            elif name == "message_stop":
                state.completed = True
                break
            elif name == "error":
                raise self._error_object(200, data.get("error"), {}, model.id)
            # ping, other blocks' start/stop and unknown events carry nothing we need
        self._set_usage(state, usage)

    def _block_start(self, data: dict, calls: ToolCallAssembler, model_id: str) -> None:
        block = data.get("content_block") or {}
        if block.get("type") != "tool_use":
            return
        index, call_id, name = data.get("index"), block.get("id"), block.get("name")
        if not isinstance(index, int) or not isinstance(call_id, str) or not isinstance(name, str):
            raise malformed(self.name, model_id, "tool_use block without index, id or name")
        calls.start(index, call_id, name)
        if block.get("input"):  # whole input at the start (not sent so today; allowed)
            calls.add(index, orjson.dumps(block["input"]).decode())

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        return self._error_object(status, error, headers, model_id)

    def _error_object(
        self, status: int, error: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        """Classify an Anthropic ``error`` object (HTTP error body or ``event: error``)."""
        error = error if isinstance(error, dict) else {}
        etype = safe_token(error.get("type"))
        message = error.get("message")
        kind = _ERROR_TYPES.get(etype or "")
        if kind is None:  # invalid_request_error or an unknown type: the message tells more
            kind = _invalid_request_kind(message)
        if kind is None:
            kind = generic_kind(status) if status != 200 else errors.ProviderServerError
        retry_after_s = suggested_wait_s(self._rate_limit(headers)) if headers else None
        return status_error(
            status,
            provider=self.name,
            model_id=model_id,
            raw_type=etype,
            retry_after_s=retry_after_s,
            kind=kind,
        )


def _object_text(arguments: str) -> str:
    """Streamed input JSON as compact text (as a non-streamed reply's input is dumped); text
    that does not parse is left for the tool-call check to refuse."""
    try:
        return orjson.dumps(orjson.loads(arguments)).decode()
    except orjson.JSONDecodeError:
        return arguments


def _invalid_request_kind(message: Any) -> type[errors.ProviderError] | None:
    if mentions_context_overflow(message):
        return errors.ContextWindowExceeded
    if isinstance(message, str) and "credit balance" in message.lower():
        return errors.QuotaExceeded
    return None
