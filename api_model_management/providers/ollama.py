"""Ollama native ``/api/chat`` (protocols.md §4). No caching: ``prompt_eval_count`` is input,
``eval_count`` output; both may be absent (→ 0). Streams are NDJSON ending with ``"done": true``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import SecretStr

from .. import errors
from .._request import ModelRequest
from ..config import ModelConfig
from ..ratelimit import RateLimitState
from ..ratelimit._headers import retry_after_from_headers, retry_only_state
from ._base import ProviderAdapter, StreamState, Usage, count
from ._errors import generic_kind, malformed, mentions_context_overflow, status_error
from ._sse import iter_ndjson
from .openai import chat_messages, sampling

FINISH_REASONS = {"stop": "stop", "length": "length"}


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
            "messages": chat_messages(request),
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
    def _parse_reply(self, body: Any, model: ModelConfig) -> tuple[str, StreamState]:
        if "error" in body:
            raise self._classify_error(200, body, {}, model.id)
        content = body["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not a string")
        state = StreamState()
        self._done(state, body)
        return content, state

    def _done(self, state: StreamState, line: dict) -> None:
        raw = line.get("done_reason")
        state.raw_finish_reason = str(raw) if raw is not None else None
        state.finish_reason = FINISH_REASONS.get(str(raw), "other") if raw is not None else "stop"
        if (line.get("message") or {}).get("tool_calls"):
            state.finish_reason = "tool_calls"
        self._set_usage(state, ollama_usage(line))
        state.completed = True

    async def _parse_stream(
        self, lines: AsyncIterator[str], state: StreamState, model: ModelConfig
    ) -> AsyncIterator[str]:
        async for raw in iter_ndjson(lines):
            line = self._decode_event(raw, model.id)
            if not isinstance(line, dict):
                raise malformed(self.name, model.id, "stream line is not an object")
            if "error" in line:
                raise self._classify_error(200, line, {}, model.id)
            text = (line.get("message") or {}).get("content")
            if isinstance(text, str) and text:
                yield text
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
