"""Gemini generateContent / streamGenerateContent on the wire (protocols.md section 3)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _shape_gemini
from ._engine import RateInfo
from ._shape import ShapeError
from ._text import Answer, split_for_stream
from ._wire import Call, Reply, WireError, dumps, json_reply, random_id, text_of

name = "gemini"
stream_content_type = b"text/event-stream"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MESSAGES = {500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
             503: "The model is overloaded. Please try again later.",
             504: "Deadline expired before operation could complete."}
_ERROR_INFO_SERVICE = {"service": "generativelanguage.googleapis.com"}


def _status_body(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": status, "message": message,
                 "status": _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}
    if details:
        err["details"] = details
    return {"error": err}


def error(status: int, message: str | None = None, retry_after_s: float | None = None,
          rate: RateInfo | None = None, model: str = "") -> Reply:
    """A google.rpc.Status body; a 429 carries QuotaFailure and RetryInfo details."""
    details: list[dict[str, Any]] | None = None
    if status == 429:
        delay = max(1, int(-(-(retry_after_s or 1.0) // 1)))
        message = message or (f"You exceeded your current quota, please check your plan and billing "
                              f"details. Please retry in {delay}s.")
        details = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                             "quotaDimensions": {"location": "global", "model": model},
                             "quotaValue": str(rate.limit_requests if rate else 0)}]},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"},
        ]
    return json_reply(status, _status_body(status, message or _MESSAGES.get(status, "Request failed."),
                                           details), content_type=b"application/json; charset=UTF-8")


def auth_error(problem: str) -> Reply:
    if problem == "missing":
        return json_reply(403, _status_body(
            403, "Method doesn't allow unregistered callers (callers without established identity). "
                 "Please use API Key or other form of API consumer identity to call this API."))
    details: list[dict[str, Any]] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": _ERROR_INFO_SERVICE},
               {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key."}]
    return json_reply(400, _status_body(400, "API key not valid. Please pass a valid API key.", details))


def api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return (headers.get("x-goog-api-key") or query.get("key") or "").strip() or None


def success_headers(rate: RateInfo, now: datetime, latency_ms: int) -> list[tuple[bytes, bytes]]:
    return [(b"server-timing", f"gfet4t7; dur={latency_ms}".encode()), (b"vary", b"Origin")]


def parse(body: dict, query: dict[str, str], model: str, stream: bool) -> Call:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise WireError(error(400, "* GenerateContentRequest.contents: contents is not specified"))
    system = body.get("systemInstruction") or body.get("system_instruction")
    system_text = text_of(system.get("parts")) if isinstance(system, dict) else ""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        raise WireError(error(400, "Invalid value at 'generation_config' (type.googleapis.com/google.ai."
                                   "generativelanguage.v1beta.GenerationConfig)"))
    max_tokens = config.get("maxOutputTokens", config.get("max_output_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise WireError(error(400, "generationConfig.maxOutputTokens must be a positive integer"))
    if _shape_gemini.wanted(body, contents, config):
        try:
            conversation, prompt, shape = _shape_gemini.read(body, contents, config, system_text)
        except ShapeError as exc:
            raise WireError(error(400, exc.message)) from None
        return Call("gemini", model, prompt, conversation, max_tokens, stream, shape=shape)
    texts = [system_text] if system_text else []
    users = []
    for content in contents:
        text = text_of(content["parts"])
        texts.append(text)
        if content.get("role", "user") == "user":
            users.append(text)
    return Call("gemini", model, users[-1] if users else texts[-1], "\n".join(texts), max_tokens, stream)


def _usage(call: Call, answer: Answer, output_tokens: int | None = None) -> dict:
    out = answer.output_tokens if output_tokens is None else output_tokens
    image_tokens = call.shape.image_tokens if call.shape is not None else 0
    details = [{"modality": "TEXT", "tokenCount": answer.input_tokens - image_tokens}]
    if image_tokens:
        details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    return {"promptTokenCount": answer.input_tokens, "candidatesTokenCount": out,
            "totalTokenCount": answer.input_tokens + out, "promptTokensDetails": details}


def _parts(answer: Answer) -> list[dict[str, Any]] | None:
    """``functionCall`` parts of the complete tool calls (Gemini sends no id), or None."""
    calls = [{"functionCall": {"name": c.name, "args": c.arguments}}
             for c in answer.tool_calls if c.arguments is not None]
    return calls or None


def _finish(answer: Answer) -> str:
    """STOP also after a function call: Gemini has no finish reason of its own for one."""
    return "MAX_TOKENS" if answer.truncated else "STOP"


def _response(call: Call, text: str, finish: str | None, usage: dict, response_id: str,
              parts: list[dict[str, Any]] | None = None) -> dict:
    candidate: dict = {"content": {"parts": parts or [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": call.model,
            "responseId": response_id}


def body(call: Call, answer: Answer) -> bytes:
    return dumps(_response(call, answer.text, _finish(answer), _usage(call, answer), random_id(22),
                           _parts(answer)))


def frames(call: Call, answer: Answer) -> list[bytes]:
    response_id = random_id(22)
    parts = _parts(answer)
    if parts is not None:  # function calls arrive whole, in one chunk
        payload = _response(call, "", _finish(answer), _usage(call, answer), response_id, parts)
        return [b"data: " + dumps(payload) + b"\r\n\r\n"]
    pieces = split_for_stream(answer.text, words_per_chunk=6)
    out, sent = [], ""
    for i, piece in enumerate(pieces):
        sent += piece
        last = i == len(pieces) - 1
        finish = _finish(answer) if last else None
        usage = _usage(call, answer, None if last else (len(sent) + 3) // 4)
        out.append(b"data: " + dumps(_response(call, piece, finish, usage, response_id)) + b"\r\n\r\n")
    return out


def midstream_error() -> None:
    """Gemini has no in-stream error event: the connection is cut."""
    return None


def malformed_frame() -> bytes:
    return b'data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n'


def models(catalog: list[str]) -> bytes:
    return dumps({"models": [model_info(m) for m in catalog]})


def model_info(model: str) -> dict:
    return {"name": f"models/{model}", "version": "001", "displayName": model.replace("-", " ").title(),
            "description": "Emulated model", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"], "temperature": 1,
            "topP": 0.95, "topK": 64, "maxTemperature": 2}


def not_found(model: str) -> Reply:
    return error(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                      "generateContent. Call ListModels to see the list of available models and their "
                      "supported methods.")
