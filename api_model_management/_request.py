"""The request and response types of the public API and of the provider adapters."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidInput
from .ratelimit._state import RateLimitState

__all__ = [
    "Message",
    "ModelRequest",
    "ModelResponse",
    "Priority",
    "ProviderResult",
    "RateLimitState",
    "SelectionConstraints",
    "StreamChunk",
]

Priority = Literal["low", "normal", "medium", "high", "critical"]

#: Tokens a provider adds around each message (role marker, turn separators), generous: OpenAI's
#: chat format adds 3-4, Gemini's about 5.
FRAMING_TOKENS_PER_MESSAGE = 8
#: Tokens a provider adds once per request (reply priming, begin-of-text).
FRAMING_TOKENS_PER_REQUEST = 16


def _utf8_bytes(text: str) -> int:
    """UTF-8 bytes of ``text``: its length when ASCII (O(1)), else an encode (about 1 ms a MB)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _invalid(exc: ValidationError) -> InvalidInput:
    """A request's validation errors as one ``InvalidInput``: field paths and messages, no input."""
    problems, fields = [], []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
        fields.append(where or "request")
    return InvalidInput(f"invalid ModelRequest: {'; '.join(problems)}", field=fields[0])


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SelectionConstraints(BaseModel):
    """Constraints a request puts on selection (the original system's ``constraints``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_providers: tuple[str, ...] | None = None
    excluded_providers: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] | None = None
    excluded_models: tuple[str, ...] = ()
    max_cost_per_request: Decimal | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_quality: float | None = Field(default=None, ge=0, le=1)


class ModelRequest(BaseModel):
    """A request for a completion, as in the original system.

    Give ``prompt`` (a user message) or ``messages``; ``system`` is an optional system prompt.
    ``parameters`` holds sampling parameters (``temperature``, ``top_p``, ``stop``). ``model_id``
    pins a model (selection then only checks it is usable). ``cacheable`` None means "by default":
    cacheable when temperature is 0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    system: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    task_id: str | None = None
    agent_type: str = "default"
    max_tokens: int = Field(default=512, gt=0)
    required_capabilities: tuple[str, ...] = ("text-generation",)
    priority: Priority = "normal"
    constraints: SelectionConstraints = SelectionConstraints()
    cacheable: bool | None = None
    model_id: str | None = None
    request_id: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    if not TYPE_CHECKING:  # the type checker keeps the signature pydantic's plugin derives

        def __init__(self, **data: Any) -> None:
            """Validates; bad input raises ``InvalidInput`` (a ``ValueError``) naming each field
            and problem on one line, never an input value (a prompt must not reach a message)."""
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _invalid(exc) from None

    @model_validator(mode="after")
    def _has_input(self) -> ModelRequest:
        if not self.prompt and not self.messages:
            raise ValueError("a request needs a prompt or messages")
        return self

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str | None) -> str | None:
        if prompt and not prompt.strip():
            raise ValueError("only whitespace (give the text to answer)")
        return prompt

    # -- derived ----------------------------------------------------------------------------------
    def chat_messages(self) -> list[Message]:
        """The conversation as messages (without the system prompt)."""
        if self.messages:
            return [m for m in self.messages if m.role != "system"]
        return [Message.model_construct(role="user", content=self.prompt or "")]  # valid by construction

    def system_prompt(self) -> str | None:
        if self.system:
            return self.system
        if self.messages:
            parts = [m.content for m in self.messages if m.role == "system"]
            return "\n".join(parts) if parts else None
        return None

    def prompt_text(self) -> str:
        """All text sent, for estimates and hashing (never logged)."""
        parts = [self.system_prompt() or "", *self._chat_contents()]
        return "\n".join(p for p in parts if p)

    def _chat_contents(self) -> list[str]:
        """The contents of :meth:`chat_messages`, without building Message objects (hot path)."""
        if self.messages:
            return [m.content for m in self.messages if m.role != "system"]
        return [self.prompt or ""]

    @property
    def temperature(self) -> float:
        return float(self.parameters.get("temperature", 1.0))

    def estimated_input_tokens(self) -> int:
        """A token estimate for fitting a context window (about 3 characters a token, plus
        framing). Not a bound: budgets and rate limits use :meth:`input_token_bound`."""
        return len(self.prompt_text()) // 3 + 4 * len(self._chat_contents()) + 8

    def input_token_bound(self) -> int:
        """The most input tokens this request can be billed for, on any provider.

        Every tokenizer in use (byte-level BPE, SentencePiece with byte fallback) makes each text
        token out of at least one byte of UTF-8, so the UTF-8 bytes of everything sent (the system
        prompt and every message) bound the text tokens; the role markers and turn separators a
        provider adds are allowed for with :data:`FRAMING_TOKENS_PER_MESSAGE` per message (the
        system prompt counts as one) plus :data:`FRAMING_TOKENS_PER_REQUEST`. ASCII text is
        counted without encoding (one byte a character)."""
        system = self.system_prompt()
        parts = self._chat_contents()
        total = sum(map(_utf8_bytes, parts)) + FRAMING_TOKENS_PER_REQUEST
        total += FRAMING_TOKENS_PER_MESSAGE * len(parts)
        if system:
            total += _utf8_bytes(system) + FRAMING_TOKENS_PER_MESSAGE
        return total

    def is_cacheable(self, deterministic_only: bool = True) -> bool:
        if self.cacheable is not None:
            return self.cacheable
        return not deterministic_only or self.temperature == 0

    def cache_key(self) -> str:
        """Exact-match key on the normalized request: messages and parameters, model-agnostic
        unless the request pins a model."""
        body = {
            "system": self.system_prompt(),
            "messages": [(m.role, m.content) for m in self.chat_messages()],
            "parameters": self.parameters,
            "max_tokens": self.max_tokens,
            "model": self.model_id,
        }
        raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def prompt_hash(self) -> str:
        return hashlib.sha256(self.prompt_text().encode()).hexdigest()[:32]


class ProviderResult(BaseModel):
    """A normalized provider response."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    finish_reason: str  # normalized: stop | length | content_filter | tool_calls | error | other
    raw_finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    provider_request_id: str | None = None
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    rate_limit: RateLimitState | None = None


class StreamChunk(BaseModel):
    """One piece of a stream: a text delta, or (last) the final result with usage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delta: str = ""
    done: bool = False
    result: ProviderResult | None = None
    model_id: str | None = None


class ModelResponse(BaseModel):
    """What ``complete()`` returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    model_id: str
    provider: str
    text: str
    finish_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    cache_hit: bool = False
    attempts: int = 1
    quality_score: float | None = None
    selection_reason: str = ""
