"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` (protocols.md §3).

Usage: ``promptTokenCount`` includes ``cachedContentTokenCount``, so
``input_tokens = promptTokenCount - cachedContentTokenCount (+ toolUsePromptTokenCount)``;
``thoughtsTokenCount`` is *not* in ``candidatesTokenCount`` but is billed as output, so
``output_tokens = candidatesTokenCount + thoughtsTokenCount`` and ``reasoning_tokens`` the latter.

Tools: ``tools[].functionDeclarations`` (``parameters`` in Gemini's Schema form when the JSON Schema
converts, else ``parametersJsonSchema``), ``toolConfig.functionCallingConfig`` (auto/required/none/
named as ``AUTO``/``ANY``/``NONE``/``ANY`` with ``allowedFunctionNames``; Gemini has no switch for
parallel calls, so ``parallel_tool_calls`` is not sent). An assistant's calls are ``functionCall``
parts and tool results ``functionResponse`` parts (``response: {"result": <text>}``, named after
the call they answer) of one user turn; our call ids travel in their ``id`` fields, and a call
Gemini returns without an id gets one derived from the reply (``_tools.derived_id`` of
``responseId``, the call's position, name and arguments). Images: ``inlineData`` for a data URL,
``fileData`` (MIME type guessed from the URL, else JPEG) for an http(s) URL. Structured output:
``responseMimeType: application/json`` with ``responseSchema`` (or ``responseJsonSchema``); with
tools, which Gemini refuses beside a JSON MIME type, a ``json_schema`` answer comes through a
response tool and ``json_object`` is asked for in the system instruction. Function calls arrive as
whole parts, yielded as they come.
"""

from __future__ import annotations

import mimetypes
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
    Tool,
    ToolCall,
)
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import (
    gemini_is_daily_quota,
    gemini_retry_delay_s,
    retry_after_from_headers,
    retry_only_state,
)
from ._base import ProviderAdapter, StreamState, Usage, api_root, count
from ._errors import generic_kind, malformed, mentions_context_overflow, safe_token, status_error
from ._sse import iter_sse
from ._tools import (
    ResponseTool,
    assistant_message,
    call_names,
    derived_id,
    gemini_schema,
    response_tool,
)
from .openai import sampling

_SAFETY = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "LANGUAGE",
}
FINISH_REASONS: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length", **{r: "content_filter" for r in _SAFETY}}

_STATUS_KINDS: dict[str, type[errors.ProviderError]] = {
    "UNAUTHENTICATED": errors.AuthenticationError,
    "PERMISSION_DENIED": errors.AuthenticationError,
    "NOT_FOUND": errors.ModelNotFound,
    "UNAVAILABLE": errors.ProviderOverloaded,
    "INTERNAL": errors.ProviderServerError,
    "DEADLINE_EXCEEDED": errors.ProviderServerError,
    "FAILED_PRECONDITION": errors.QuotaExceeded,
}


def gemini_usage(meta: Any) -> Usage:
    """Normalized usage from ``usageMetadata`` (missing counts are 0)."""
    if not isinstance(meta, dict):
        return Usage()
    prompt = count(meta.get("promptTokenCount"))
    cached = min(count(meta.get("cachedContentTokenCount")), prompt)
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=prompt - cached + count(meta.get("toolUsePromptTokenCount")),
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=cached,
        reasoning_tokens=thoughts,
    )


def gemini_contents(request: ModelRequest) -> list[dict[str, Any]]:
    """The conversation as Gemini ``contents`` (without the system instruction): a run of tool
    results, and a user message right after it, is one user turn, function responses first."""
    names = call_names(request)
    contents: list[dict[str, Any]] = []
    for message in request.chat_messages():
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            part = {"functionResponse": {"id": call_id, "name": names[call_id],
                                         "response": {"result": message.text}}}
            if _open_responses(contents):
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif message.role == "user" and _open_responses(contents):
            contents[-1]["parts"].extend(_parts(message))
        else:
            role = "model" if message.role == "assistant" else "user"
            contents.append({"role": role, "parts": _parts(message)})
    return contents


def _open_responses(contents: list[dict[str, Any]]) -> bool:
    if not contents or contents[-1]["role"] != "user":
        return False
    return all("functionResponse" in part for part in contents[-1]["parts"])


def _parts(message: Message) -> list[dict[str, Any]]:
    content = message.content
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content or not message.tool_calls:
            parts.append({"text": content})
    elif content:
        parts.extend({"text": p.text} if isinstance(p, TextPart) else _image_part(p.image_url)
                     for p in content)
    parts.extend({"functionCall": {"id": call.id, "name": call.name,
                                   "args": call.parsed_arguments()}}
                 for call in message.tool_calls)
    return parts


def _image_part(image: ImageURL) -> dict[str, Any]:
    inline = image.inline
    if inline is not None:
        return {"inlineData": {"mimeType": inline.media_type, "data": inline.base64_data}}
    guessed, _ = mimetypes.guess_type(image.url.split("?", 1)[0])
    mime = guessed if guessed and guessed.startswith("image/") else "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": image.url}}


def _declaration(name: str, description: str | None,
                 parameters: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if description is not None:
        out["description"] = description
    if parameters is not None:
        converted = gemini_schema(parameters)
        if converted is not None:
            out["parameters"] = converted
        else:
            out["parametersJsonSchema"] = parameters
    return out


def answers_by_tool(request: ModelRequest) -> bool:
    """A ``json_schema`` answer beside tools comes through a response tool."""
    return bool(request.tools) and request.output_schema() is not None


def tool_fields(request: ModelRequest) -> dict[str, Any]:
    """``tools`` and ``toolConfig`` (with the response tool when :func:`answers_by_tool`)."""
    if not request.tools:
        return {}
    answer = response_tool(request) if answers_by_tool(request) else None
    declarations = [_declaration(t.name, t.description, t.parameters) for t in request.tools]
    if answer is not None:
        declarations.append(_declaration(answer.name, answer.description, answer.schema))
    out: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    config = _calling_config(request.tool_choice, request.tools, answer)
    if config is not None:
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def _calling_config(asked: Any, tools: tuple[Tool, ...],
                    answer: ResponseTool | None) -> dict[str, Any] | None:
    if asked is not None and not isinstance(asked, str):
        return {"mode": "ANY", "allowedFunctionNames": [asked.name]}
    if answer is not None:
        if asked == "none":
            return {"mode": "ANY", "allowedFunctionNames": [answer.name]}
        return {"mode": "ANY"}  # the response tool or a real call
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[asked]} if asked else None


def generation_config(request: ModelRequest) -> dict[str, Any]:
    """``generationConfig``: limits, sampling and the JSON answer's MIME type and schema."""
    params = sampling(request)
    config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
    if "temperature" in params:
        config["temperature"] = params["temperature"]
    if "top_p" in params:
        config["topP"] = params["top_p"]
    if "stop" in params:
        config["stopSequences"] = params["stop"]
    if "seed" in params:
        config["seed"] = params["seed"]
    if request.wants_json() and not request.tools:
        config["responseMimeType"] = "application/json"
        schema = request.output_schema()
        if schema is not None:
            converted = gemini_schema(schema)
            if converted is not None:
                config["responseSchema"] = converted
            else:
                config["responseJsonSchema"] = schema
    return config


def messages_from_gemini(body: Mapping[str, Any]) -> list[Message]:
    """The conversation of a Gemini request body in OpenAI's shape (the inverse of the
    adapter's translation: the system instruction first, a user turn's function responses as
    tool messages before its other parts; a user turn of one text part as a string)."""
    out: list[Message] = []
    system = body.get("systemInstruction")
    if system:
        out.append(Message(role="system", content="".join(p.get("text", "")
                                                          for p in system["parts"])))
    for content in body["contents"]:
        parts = content["parts"]
        if content.get("role") == "model":
            out.append(_assistant_from_parts(parts))
        else:
            out.extend(_user_from_parts(parts))
    return out


def _assistant_from_parts(parts: list[dict[str, Any]]) -> Message:
    text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    calls = tuple(ToolCall(id=p["functionCall"]["id"], name=p["functionCall"]["name"],
                           arguments=orjson.dumps(p["functionCall"].get("args") or {}).decode())
                  for p in parts if "functionCall" in p)
    return assistant_message(text, calls)


def _user_from_parts(parts: list[dict[str, Any]]) -> list[Message]:
    out: list[Message] = []
    items: list[TextPart | ImagePart] = []
    for part in parts:
        if "functionResponse" in part:
            response = part["functionResponse"]
            result = response.get("response") or {}
            text = (result["result"] if set(result) == {"result"} and isinstance(result["result"], str)
                    else orjson.dumps(result).decode())
            out.append(Message(role="tool", tool_call_id=response["id"], content=text))
        elif "text" in part:
            items.append(TextPart(text=part["text"]))
        elif "inlineData" in part:
            data = part["inlineData"]
            url = f"data:{data['mimeType']};base64,{data['data']}"
            items.append(ImagePart(image_url=ImageURL(url=url)))
        elif "fileData" in part:
            items.append(ImagePart(image_url=ImageURL(url=part["fileData"]["fileUri"])))
    if len(items) == 1 and isinstance(items[0], TextPart):
        out.append(Message(role="user", content=items[0].text))
    elif items:
        out.append(Message(role="user", content=tuple(items)))
    return out


class GeminiAdapter(ProviderAdapter):
    """``POST /v1beta/models/{model}:generateContent`` with ``x-goog-api-key``; probe
    ``GET /v1beta/models``."""

    provider_type = "google"

    def _root(self) -> str:
        return api_root(self.config.base_url, "v1beta")

    def _auth_headers(self, key: SecretStr | None) -> dict[str, str]:
        if key is None:
            return {}
        return {"x-goog-api-key": key.get_secret_value()}

    def _model_path(self, model: ModelConfig) -> str:
        name = model.wire_name
        return f"{self._root()}/{name if name.startswith('models/') else 'models/' + name}"

    def _complete_url(self, model: ModelConfig) -> str:
        return f"{self._model_path(model)}:generateContent"

    def _stream_url(self, model: ModelConfig) -> str:
        return f"{self._model_path(model)}:streamGenerateContent?alt=sse"

    def _probe_path(self) -> str:
        return f"{self._root()}/models?pageSize=50"

    def _body(self, request: ModelRequest, model: ModelConfig, *, stream: bool) -> dict:
        body: dict[str, Any] = {
            "contents": gemini_contents(request),
            "generationConfig": generation_config(request),
        }
        body.update(tool_fields(request))
        system = request.system_prompt()
        fmt = request.response_format
        if request.tools and fmt is not None and fmt.type == "json_object":
            system = f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else JSON_OBJECT_INSTRUCTION
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        return body

    def _answers_by_tool(self, request: ModelRequest) -> bool:
        return answers_by_tool(request)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitState | None:
        return retry_only_state(headers, self._clock.now())

    def _probe_models(self, body: Any) -> tuple[str, ...] | None:
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            return None
        names = (str(m["name"]) for m in models if isinstance(m, dict) and "name" in m)
        return tuple(n.removeprefix("models/") for n in names)

    # -- replies -------------------------------------------------------------------------------
    def _parse_reply(self, body: Any, model: ModelConfig, state: StreamState) -> str:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        state.provider_request_id = body.get("responseId")
        items = self._read_chunk(body, state, model.id)
        if state.finish_reason is None and not body["candidates"]:
            raise KeyError("candidates")
        state.tool_calls.extend(i for i in items if isinstance(i, ToolCall))
        return "".join(i for i in items if isinstance(i, str))

    def _read_chunk(self, chunk: dict, state: StreamState, model_id: str) -> list[str | ToolCall]:
        """Texts and tool calls of one response object, in order; updates usage, id and finish
        reason in ``state``."""
        if "error" in chunk:
            raise self._classify_error(200, chunk, {}, model_id)
        state.provider_request_id = state.provider_request_id or chunk.get("responseId")
        if "usageMetadata" in chunk:
            self._set_usage(state, gemini_usage(chunk["usageMetadata"]))
        block = (chunk.get("promptFeedback") or {}).get("blockReason")
        candidates = chunk.get("candidates") or []
        if block and not candidates:
            self._finish(state, "SAFETY", raw=str(block))
            return []
        if not candidates:
            return []
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        items: list[str | ToolCall] = []
        for part in parts:
            if isinstance(part.get("text"), str) and not part.get("thought"):
                items.append(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                items.append(self._function_call(part["functionCall"], state, model_id))
        if candidate.get("finishReason"):
            self._finish(state, str(candidate["finishReason"]))
        return items

    def _function_call(self, call: dict, state: StreamState, model_id: str) -> str | ToolCall:
        """A ``functionCall`` part: the answer's text when it is the response tool's, else a
        call (with Gemini's id, or one derived from the reply)."""
        arguments = call.get("args") or {}
        if not isinstance(arguments, dict):
            raise malformed(self.name, model_id, "functionCall args is not an object")
        text = orjson.dumps(arguments).decode()
        name = call.get("name")
        if state.response_tool is not None and name == state.response_tool:
            return text
        position = state.extra["calls"] = state.extra.get("calls", 0) + 1
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = derived_id(str(state.provider_request_id or ""), str(position), str(name),
                                 text)
        return self._tool_call(model_id, call_id, name, text)

    def _finish(self, state: StreamState, reason: str, raw: str | None = None) -> None:
        state.raw_finish_reason = raw or reason
        state.finish_reason = FINISH_REASONS.get(reason, "other")
        if state.finish_reason == "stop" and state.extra.get("calls"):
            state.finish_reason = "tool_calls"  # Gemini says STOP after function calls
        state.completed = True

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str | ToolCall]:
        async for event in iter_sse(lines):
            chunk = self._decode_event(event.data, model.id)
            if not isinstance(chunk, dict):
                raise malformed(self.name, model.id, "stream chunk is not an object")
            for item in self._read_chunk(chunk, state, model.id):
                yield item
        # the stream ends when the connection closes; ``completed`` says a finishReason arrived

    # -- errors --------------------------------------------------------------------------------
    def _classify_error(
        self, status: int, body: Any, headers: Mapping[str, str], model_id: str | None
    ) -> errors.ProviderError:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        if status == 200 and isinstance(code, int) and code >= 400:
            status = code  # an error object inside a 200 stream carries its own code
        rpc_status = safe_token(error.get("status"))
        reason = _error_reason(error)
        kind, retry_after_s = self._kind(status, rpc_status, reason, body, error.get("message"))
        if retry_after_s is None:
            retry_after_s = retry_after_from_headers(headers, self._clock.now())
        return status_error(
            status,
            provider=self.name,
            model_id=model_id,
            raw_type=reason or rpc_status,
            retry_after_s=retry_after_s,
            kind=kind,
        )

    def _kind(
        self, status: int, rpc_status: str | None, reason: str | None, body: Any, message: Any
    ) -> tuple[type[errors.ProviderError], float | None]:
        if reason == "API_KEY_INVALID" or (
            isinstance(message, str) and "api key not valid" in message.lower()
        ):
            return errors.AuthenticationError, None
        if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
            if gemini_is_daily_quota(body):
                return errors.QuotaExceeded, None
            return errors.RateLimited, gemini_retry_delay_s(body)
        if rpc_status == "INVALID_ARGUMENT" and mentions_context_overflow(message):
            return errors.ContextWindowExceeded, None
        kind = _STATUS_KINDS.get(rpc_status or "")
        if kind is None:
            kind = generic_kind(status) if status != 200 else errors.ProviderServerError
        return kind, None


def _error_reason(error: dict) -> str | None:
    """``ErrorInfo.reason`` (e.g. ``API_KEY_INVALID``) from an error's details."""
    details = error.get("details")
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("rpc.ErrorInfo"):
            return safe_token(detail.get("reason"))
    return None
