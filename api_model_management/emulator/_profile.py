"""Fault profiles: what the emulator does wrong, and how often.

A profile is a JSON file validated by pydantic. Settings cascade: ``defaults`` apply to every
request, ``providers.<name>`` override them for one protocol and ``models.<name>`` for one model
(field by field; an unset field inherits). Example::

    {"seed": 7,
     "defaults": {"latency": {"kind": "lognormal", "median_s": 0.05, "sigma": 0.3}},
     "providers": {"anthropic": {"error_rates": {"529": 0.02}}},
     "models": {"gpt-4o-mini": {"rate_limits": {"requests_per_minute": 60},
                                "outages": [{"start_s": 5, "end_s": 20}]}}}

Tool calls and structured output have faults of their own, drawn only for answers of their kind:
``bad_tool_args_rate`` (arguments that do not validate against the tool's schema, or for OpenAI
sometimes not JSON) and ``bad_json_rate`` (structured output that does not parse or does not
validate); the header ``x-emulator-fault: bad-tool-args`` / ``bad-json`` asks for one (a request
with nothing of that kind is answered as without it). Both count as outcomes in the statistics.

Each API key may have limits of its own, as a provider gives every key (of its own organization):
``key_rate_limits`` maps a key to the limits of each model for requests made with it, over that
key's own window (``{"key_rate_limits": {"sk-a": {"requests_per_minute": 2}}}``), checked with
the model's limits (a request must fit both). The statistics count requests per key for the keys
the profile names (``key_rate_limits``, ``valid_keys``).

An *answer world* replays real per-prompt correctness: ``world_dir`` names a folder of
routellm-format CSV files (a ``prompt`` column, one ``True``/``False`` column per real model, and
optionally ``<column>_response`` texts), and ``world_models`` maps emulator model names to those
columns, e.g. ``{"world_dir": "routellm", "world_models": {"gpt-4o": {"column":
"gpt-4-1106-preview"}, "llama3.2": {"column": "mistralai/Mixtral-8x7B-Instruct-v0.1",
"provider": "ollama"}}}``. For a prompt of the world (the last user message), a world model answers
as its column did, the text ending with ``[correct]`` or ``[incorrect]``; other prompts get the
usual composed answer. World models are listed on the models endpoint of their ``provider``, or of
every provider when it is unset, after the ``catalog`` models (so ``strict_models`` accepts them).
Any model asked to grade an answer with the system's judge request replies ``Score: N``: 8-10 for
an answer ending in ``[correct]``, 1-3 for ``[incorrect]``, 4-7 without a marker (see
:mod:`._judge`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Provider = Literal["openai", "anthropic", "gemini", "ollama"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic", "gemini", "ollama")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message says what is wrong and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedLatency(_Strict):
    kind: Literal["fixed"]
    latency_s: float = Field(ge=0)
    #: Share of the latency spent before the first streamed token.
    ttft_share: float = Field(default=0.3, ge=0, le=1)


class LognormalLatency(_Strict):
    kind: Literal["lognormal"]
    median_s: float = Field(gt=0)
    sigma: float = Field(ge=0)
    ttft_share: float = Field(default=0.3, ge=0, le=1)


class TraceLatency(_Strict):
    """Replay a real llmperf trace: latency, time to first token and the recorded failures."""

    kind: Literal["trace"]
    file: str = Field(min_length=1)
    #: Multiplier on the recorded seconds (0.01 turns a 0.9 s call into 9 ms).
    scale: float = Field(default=1.0, ge=0)
    #: Replay recorded errors (429 stays 429, any other code becomes 500) at their real rates.
    errors: bool = True


Latency = Annotated[FixedLatency | LognormalLatency | TraceLatency, Field(discriminator="kind")]


class RateLimits(_Strict):
    """Per-model limits over a sliding 60 s window; unset means unlimited."""

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)


class Outage(_Strict):
    """A window (seconds since server start) during which requests fail."""

    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    #: ``status``: answer with ``status`` (default: 529 for Anthropic, 503 otherwise);
    #: ``drop``: close the connection; ``hang``: never answer.
    mode: Literal["status", "drop", "hang"] = "status"
    status: int | None = Field(default=None, ge=400, le=599)

    @model_validator(mode="after")
    def _ordered(self) -> Outage:
        if self.end_s <= self.start_s:
            raise ValueError("an outage must end after it starts (end_s > start_s)")
        return self


class FaultSpec(_Strict):
    """Behaviour of one scope (all requests, one provider or one model). Unset fields inherit."""

    #: Probability of answering with each HTTP status, e.g. ``{"500": 0.05, "529": 0.02}``.
    error_rates: dict[str, float] | None = None
    drop_rate: float | None = Field(default=None, ge=0, le=1)
    hang_rate: float | None = Field(default=None, ge=0, le=1)
    midstream_error_rate: float | None = Field(default=None, ge=0, le=1)
    malformed_rate: float | None = Field(default=None, ge=0, le=1)
    #: Probability of a degraded answer: a complete 200 whose text is the answer's first words
    #: over and over (a model stuck in a loop), which the quality evaluator scores near 0.
    degraded_rate: float | None = Field(default=None, ge=0, le=1)
    #: Probability that a tool call's arguments do not validate against the tool's schema, or
    #: (OpenAI, whose arguments are text) are not JSON; drawn only for answers that call a tool.
    bad_tool_args_rate: float | None = Field(default=None, ge=0, le=1)
    #: Probability that structured output (a JSON schema or JSON object was asked for) does not
    #: parse, or does not validate; drawn only for answers that are structured output.
    bad_json_rate: float | None = Field(default=None, ge=0, le=1)
    #: Probability of an answer of ``oversized_bytes`` of text (default 20 MiB).
    oversized_rate: float | None = Field(default=None, ge=0, le=1)
    oversized_bytes: int | None = Field(default=None, gt=0)
    latency: Latency | None = None
    rate_limits: RateLimits | None = None
    outages: list[Outage] | None = None

    @field_validator("error_rates")
    @classmethod
    def _statuses(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        for status, rate in value.items():
            if not status.isdigit() or not 400 <= int(status) <= 599:
                raise ValueError(f"error_rates key {status!r} is not an HTTP error status (400-599)")
            if not 0 <= rate <= 1:
                raise ValueError(f"error_rates[{status!r}] = {rate} is not a probability in [0, 1]")
        if sum(value.values()) > 1:
            raise ValueError("error_rates sum to more than 1")
        return value


class WorldModel(_Strict):
    """Which correctness column of the answer world an emulator model follows."""

    column: str = Field(min_length=1)
    #: The provider whose models endpoint lists the model (None: every provider lists it).
    provider: Provider | None = None


class Profile(_Strict):
    seed: int = 0
    #: If set, only these keys are accepted (others get the provider's bad-key error).
    valid_keys: list[str] | None = None
    #: Keys always rejected as invalid.
    invalid_keys: list[str] = Field(default_factory=lambda: ["invalid"])
    #: Key -> the limits of each model for requests made with that key (its own 60 s window per
    #: model), checked as well as the model's ``rate_limits``.
    key_rate_limits: dict[str, RateLimits] = Field(default_factory=dict)
    #: Models each provider lists on its models endpoint (defaults per provider when unset), before
    #: the world models it lists.
    catalog: dict[Provider, list[str]] = Field(default_factory=dict)
    #: Answer 404 for models not in the catalog.
    strict_models: bool = False
    defaults: FaultSpec = FaultSpec()
    providers: dict[Provider, FaultSpec] = Field(default_factory=dict)
    models: dict[str, FaultSpec] = Field(default_factory=dict)
    #: Folder (under the shared data directory, or absolute) with routellm-format CSV files.
    world_dir: str | None = None
    #: Emulator model name -> the world column it follows. Added to the catalogs (see ``catalog``).
    world_models: dict[str, WorldModel] = Field(default_factory=dict)
    #: Upper bound on a hang, so a forgotten client cannot hold the server forever.
    hang_max_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _world(self) -> Profile:
        if self.world_models and not self.world_dir:
            raise ValueError("world_models needs world_dir (e.g. \"routellm\")")
        return self


def parse_profile(data: object, source: str = "profile") -> Profile:
    """Validate profile data, raising :class:`ProfileError` with every problem and its path."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{source}: invalid profile: {problems}") from None


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return parse_profile(data, str(path))


_FIELDS = tuple(FaultSpec.model_fields)


def effective_spec(profile: Profile, provider: Provider, model: str) -> FaultSpec:
    """Merge defaults, provider and model settings (most specific wins, field by field)."""
    layers = [profile.defaults, profile.providers.get(provider), profile.models.get(model)]
    merged: dict[str, Any] = {}  # field name -> value, of the field's own type
    for layer in layers:
        if layer is None:
            continue
        for name in _FIELDS:
            value = getattr(layer, name)
            if value is not None:
                merged[name] = value
    return FaultSpec.model_construct(**{name: merged.get(name) for name in _FIELDS})
