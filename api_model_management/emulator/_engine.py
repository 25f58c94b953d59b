"""The emulator's state and decisions: rate windows, fault draws, outages, answers, statistics.

Plain Python with an injected clock, so it is tested without sockets. The HTTP layer asks
:meth:`Engine.plan` what to do with a request and reports the outcome with :meth:`Engine.record`.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._clock import SYSTEM_CLOCK, Clock
from ._data import TraceRecord, WorldEntry, load_trace, load_world, prompt_key
from ._judge import judge_reply
from ._profile import (
    PROVIDERS,
    FaultSpec,
    Profile,
    Provider,
    RateLimits,
    TraceLatency,
    effective_spec,
)
from ._text import compose_answer, world_answer

WINDOW_S = 60.0
#: Limits reported in headers for a model without configured limits (never enforced).
NOMINAL_RPM = 10_000
NOMINAL_TPM = 30_000_000
#: What each provider lists on its models endpoint unless the profile says otherwise: the
#: current public models (those of the shipped registries).
DEFAULT_CATALOG: dict[str, list[str]] = {
    "openai": ["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-5-mini", "o4-mini"],
    "anthropic": ["claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-5", "claude-sonnet-4-5"],
    "gemini": ["gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"],
    "ollama": ["llama3.2", "mistral", "qwen2.5"],
}
FAULT_HEADER = "x-emulator-fault"


class OffsetClock:
    """A clock that can be moved forward, for outage windows and rate windows in tests."""

    def __init__(self, base: Clock) -> None:
        self._base = base
        self._offset_s = 0.0

    def monotonic(self) -> float:
        return self._base.monotonic() + self._offset_s

    def now(self) -> datetime:
        return self._base.now() + timedelta(seconds=self._offset_s)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._offset_s += seconds


@dataclass(frozen=True, slots=True)
class RateInfo:
    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float


class RateWindow:
    """Requests and tokens of one model over the last 60 s."""

    __slots__ = ("entries", "tokens")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.tokens = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW_S
        entries = self.entries
        while entries and entries[0][0] <= horizon:
            self.tokens -= entries.popleft()[1]

    def retry_after_s(self, now: float, rpm: int | None, tpm: int | None, tokens: int) -> float | None:
        """Seconds until this request would fit, or None if it fits now."""
        waits = []
        if rpm is not None and len(self.entries) + 1 > rpm:
            waits.append(self._wait_for(now, lambda i: len(self.entries) - i + 1 <= rpm))
        if tpm is not None and self.tokens + tokens > tpm:
            waits.append(self._wait_tokens(now, tpm, tokens))
        return max(waits) if waits else None

    def _wait_for(self, now: float, fits) -> float:
        for i, (t, _) in enumerate(self.entries):
            if fits(i + 1):
                return max(0.0, t + WINDOW_S - now)
        return WINDOW_S

    def _wait_tokens(self, now: float, tpm: int, tokens: int) -> float:
        total = self.tokens
        for t, used in self.entries:
            total -= used
            if total + tokens <= tpm:
                return max(0.0, t + WINDOW_S - now)
        return WINDOW_S

    def add(self, now: float, tokens: int) -> None:
        self.entries.append((now, tokens))
        self.tokens += tokens

    def info(self, now: float, rpm: int | None, tpm: int | None) -> RateInfo:
        limit_r = rpm or NOMINAL_RPM
        limit_t = tpm or NOMINAL_TPM
        reset_s = (self.entries[-1][0] + WINDOW_S - now) if self.entries else 0.0
        return RateInfo(
            limit_r, max(0, limit_r - len(self.entries)), max(0.0, reset_s),
            limit_t, max(0, limit_t - self.tokens), max(0.0, reset_s),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request."""

    #: ok, error, drop, hang, midstream, malformed, oversized, inflated_usage, degraded,
    #: bad_tool_args, bad_json
    kind: str
    status: int = 200
    retry_after_s: float | None = None
    latency_s: float = 0.0
    ttft_s: float = 0.0
    #: For outages: the reply is the provider's overload answer.
    reason: str = ""
    #: For ``oversized``: the bytes of answer text.
    size_bytes: int = 0


#: The answer text of ``x-emulator-fault: oversized`` without a size (the 20 MB of issue 10.10).
OVERSIZED_DEFAULT_BYTES = 20 * 1024 * 1024
#: The output tokens ``x-emulator-fault: inflated-usage`` reports (the 5M of issue 10.3).
INFLATED_OUTPUT_TOKENS = 5_000_000


OK = Plan("ok")


class HeaderFaultError(ValueError):
    """An ``x-emulator-fault`` value the emulator does not understand."""


def plan_from_header(value: str) -> Plan:
    value = value.strip().lower()
    if value.startswith("status="):
        code = value.removeprefix("status=")
        if not code.isdigit() or not 400 <= int(code) <= 599:
            raise HeaderFaultError(f"{FAULT_HEADER}: status must be 400-599, got {code!r}")
        status = int(code)
        return Plan("error", status, retry_after_s=1.0 if status == 429 else None, reason="header")
    if value == "oversized" or value.startswith("oversized="):
        size = value.removeprefix("oversized").removeprefix("=") or str(OVERSIZED_DEFAULT_BYTES)
        if not size.isdigit() or int(size) <= 0:
            raise HeaderFaultError(f"{FAULT_HEADER}: oversized=<bytes> needs a positive size")
        return Plan("oversized", reason="header", size_bytes=int(size))
    kinds = {"timeout": "hang", "hang": "hang", "drop": "drop", "midstream-error": "midstream",
             "malformed": "malformed", "inflated-usage": "inflated_usage", "degraded": "degraded",
             "bad-tool-args": "bad_tool_args", "bad-json": "bad_json"}
    if value not in kinds:
        raise HeaderFaultError(
            f"{FAULT_HEADER}: expected status=<code>, timeout, drop, midstream-error, malformed, "
            "oversized[=<bytes>], inflated-usage or degraded; for tool calls and structured "
            "output, bad-tool-args or bad-json"
        )
    return Plan(kinds[value], reason="header")


class Engine:
    """All mutable emulator state. Not thread-safe: used from the server's event loop only."""

    def __init__(self, profile: Profile | None = None, clock: Clock | None = None) -> None:
        self.clock = OffsetClock(clock or SYSTEM_CLOCK)
        self.set_profile(profile or Profile())

    # ---- configuration

    def set_profile(self, profile: Profile) -> None:
        """Apply a profile (loading its traces and world first); outages count from now."""
        traces = _load_traces(profile)
        world = load_world(profile.world_dir) if profile.world_dir else {}
        self.profile = profile
        self._traces = traces
        self._world = world
        self._catalogs = {provider: catalog_of(profile, provider) for provider in PROVIDERS}
        self._known = {provider: frozenset(models) for provider, models in self._catalogs.items()}
        self._specs: dict[tuple[str, str], FaultSpec] = {}
        self._rates: dict[int, list[tuple[str, int, float]]] = {}
        self.profile_start = self.clock.monotonic()
        self.reset()

    def reset(self) -> None:
        """Forget rate windows and statistics; re-seed the fault draws."""
        self._windows: dict[tuple[str, str | None], RateWindow] = {}
        self._stats: dict[tuple[str, str], Counter[str]] = {}
        self._key_stats: dict[str, Counter[str]] = {}
        self._content: dict[str, Counter[str]] = {}
        self.rng = random.Random(self.profile.seed)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def spec(self, provider: Provider, model: str) -> FaultSpec:
        key = (provider, model)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = effective_spec(self.profile, provider, model)
        return spec

    # ---- auth and catalog

    def key_problem(self, key: str | None) -> str | None:
        """``missing``, ``invalid`` or None for an acceptable key."""
        if not key:
            return "missing"
        if key in self.profile.invalid_keys:
            return "invalid"
        if self.profile.valid_keys is not None and key not in self.profile.valid_keys:
            return "invalid"
        return None

    def catalog(self, provider: Provider) -> list[str]:
        """The models ``provider`` lists (see :func:`catalog_of`); do not modify."""
        return self._catalogs[provider]

    def knows(self, provider: Provider, model: str) -> bool:
        return not self.profile.strict_models or model in self._known[provider]

    # ---- answers

    def answer_text(self, model: str, conversation: str, prompt: str) -> str:
        """A judge's score for a judge request (see :mod:`._judge`), the world's answer for a world
        model and prompt, else a composed answer. ``prompt`` is the last user message."""
        verdict = judge_reply(prompt)
        if verdict is not None:
            return verdict
        mapping = self.profile.world_models.get(model)
        if mapping is not None and self._world:
            entry: WorldEntry | None = self._world.get(prompt_key(prompt))
            if entry is not None:
                text = world_answer(model, mapping.column, entry, conversation)
                if text is not None:
                    return text
        return compose_answer(model, conversation, prompt)

    # ---- decisions

    def rate_info(self, provider: Provider, model: str, key: str | None = None) -> RateInfo:
        """The limits a reply reports: those of ``key`` for ``model`` when the profile gives the
        key limits of its own, else the model's."""
        limits = self.profile.key_rate_limits.get(key) if key is not None else None
        window = self._window(model, key) if limits is not None else self._window(model)
        if limits is None:
            limits = self.spec(provider, model).rate_limits
        now = self.clock.monotonic()
        window.prune(now)
        rpm = limits.requests_per_minute if limits else None
        tpm = limits.tokens_per_minute if limits else None
        return window.info(now, rpm, tpm)

    def plan(self, provider: Provider, model: str, tokens: int, header: str | None = None,
             key: str | None = None, answer: str = "text") -> Plan:
        """Decide the fate of one request costing ``tokens`` (input + output), made with ``key``.

        ``answer`` is what the answer would be (``text``, ``tool_call`` or ``json``): the
        ``bad_tool_args_rate`` and ``bad_json_rate`` faults are drawn only for their kind (after the
        other faults, from the same draw, so plain requests draw as before)."""
        if header:
            return plan_from_header(header)
        spec = self.spec(provider, model)
        now = self.clock.monotonic()
        if spec.outages:
            outage = self._outage(provider, spec, now)
            if outage is not None:
                return outage
        key_limits = self.profile.key_rate_limits.get(key) if key is not None else None
        if spec.rate_limits is not None or key_limits is not None:
            limited = self._admit(model, spec.rate_limits, key, key_limits, now, tokens)
            if limited is not None:
                return limited
        else:
            window = self._window(model)
            window.prune(now)
            window.add(now, tokens)
        return self._draw(provider, spec, answer)

    def provider_outage(self, provider: Provider) -> Plan | None:
        """The outage (from ``defaults`` or ``providers``) a health probe would meet now, if any."""
        spec = self.spec(provider, "")
        return self._outage(provider, spec, self.clock.monotonic()) if spec.outages else None

    def _outage(self, provider: Provider, spec: FaultSpec, now: float) -> Plan | None:
        elapsed = now - self.profile_start
        for outage in spec.outages or ():
            if outage.start_s <= elapsed < outage.end_s:
                if outage.mode != "status":
                    return Plan(outage.mode, reason="outage")
                status = outage.status or (529 if provider == "anthropic" else 503)
                return Plan("error", status, reason="outage")
        return None

    def _admit(self, model: str, limits: RateLimits | None, key: str | None,
               key_limits: RateLimits | None, now: float, tokens: int) -> Plan | None:
        """A 429 when the request does not fit the model's window or its key's (the longer
        wait); else the request counts in both."""
        windows = [(self._window(model), limits)]
        if key_limits is not None:
            windows.append((self._window(model, key), key_limits))
        waits = []
        for window, bound in windows:
            window.prune(now)
            if bound is not None:
                wait = window.retry_after_s(now, bound.requests_per_minute, bound.tokens_per_minute, tokens)
                if wait is not None:
                    waits.append(wait)
        if waits:
            return Plan("error", 429, retry_after_s=max(max(waits), 0.001), reason="rate_limit")
        for window, _ in windows:
            window.add(now, tokens)
        return None

    def _draw(self, provider: Provider, spec: FaultSpec, answer: str = "text") -> Plan:
        latency_s, ttft_s, trace_status = self._latency(spec)
        if trace_status is not None:
            return Plan("error", trace_status, retry_after_s=1.0 if trace_status == 429 else None,
                        latency_s=latency_s, reason="trace")
        rates = self._rates.get(id(spec))
        if rates is None:
            rates = self._rates[id(spec)] = _fault_rates(spec)
        shaped = _shaped_fault(spec, answer) if answer != "text" else None
        if rates or shaped:
            draw = self.rng.random()
            for kind, status, rate in rates:
                if draw < rate:
                    if kind == "error":
                        return Plan("error", status, retry_after_s=1.0 if status == 429 else None)
                    size = spec.oversized_bytes or OVERSIZED_DEFAULT_BYTES
                    return Plan(kind, latency_s=latency_s, ttft_s=ttft_s, size_bytes=size)
                draw -= rate
            if shaped and draw < shaped[1]:
                return Plan(shaped[0], latency_s=latency_s, ttft_s=ttft_s)
        if latency_s == 0.0:
            return OK
        return Plan("ok", latency_s=latency_s, ttft_s=ttft_s)

    def _latency(self, spec: FaultSpec) -> tuple[float, float, int | None]:
        latency = spec.latency
        if latency is None:
            return 0.0, 0.0, None
        if latency.kind == "fixed":
            return latency.latency_s, latency.latency_s * latency.ttft_share, None
        if latency.kind == "lognormal":
            total = latency.median_s * math.exp(latency.sigma * self.rng.gauss(0.0, 1.0))
            return total, total * latency.ttft_share, None
        record: TraceRecord = self.rng.choice(self._traces[latency.file])
        status = record.error_status if latency.errors else None
        return record.end_to_end_s * latency.scale, record.ttft_s * latency.scale, status

    def _window(self, model: str, key: str | None = None) -> RateWindow:
        """The model's window, or with ``key`` that key's own window for the model."""
        window = self._windows.get((model, key))
        if window is None:
            window = self._windows[model, key] = RateWindow()
        return window

    # ---- statistics

    def record(self, provider: str, model: str, outcome: str, key: str | None = None) -> None:
        """Count one outcome, and against ``key`` too when the profile names that key."""
        scope = (provider, model)
        counter = self._stats.get(scope)
        if counter is None:
            counter = self._stats[scope] = Counter()
        counter[outcome] += 1
        if key is not None and self._named(key):
            self._key_stats.setdefault(key, Counter())[outcome] += 1

    def count_content(self, provider: str, counts: dict[str, int]) -> None:
        """Add what a request brought or an answer carried (images, tool calls, ...)."""
        counter = self._content.get(provider)
        if counter is None:
            counter = self._content[provider] = Counter()
        for name, n in counts.items():
            if n:
                counter[name] += n

    def _named(self, key: str) -> bool:
        return key in self.profile.key_rate_limits or key in (self.profile.valid_keys or ())

    def stats(self) -> dict[str, object]:
        """``{"total": n, "models": {model: {outcome: n}}, "providers": {provider: {outcome: n}},
        "keys": {key: {outcome: n}}, "content": {provider: {item: n}}}`` (``keys``: the keys the
        profile names, once used).

        Outcomes are HTTP statuses as strings (``"200"``, ``"429"``) or ``drop``, ``hang``,
        ``midstream_error``, ``malformed``, ``oversized``, ``inflated_usage``, ``degraded``,
        ``bad_tool_args``, ``bad_json``. ``content`` counts, per provider, the ``images`` and their
        ``image_tokens``, ``tool_results`` and ``requests_with_tools`` of accepted requests, and
        the ``tool_calls`` and ``structured`` answers sent (only items seen).
        """
        models: dict[str, Counter[str]] = {}
        providers: dict[str, Counter[str]] = {}
        for (provider, model), counter in self._stats.items():
            models.setdefault(model, Counter()).update(counter)
            providers.setdefault(provider, Counter()).update(counter)
        total = sum(sum(c.values()) for c in self._stats.values())
        return {
            "total": total,
            "models": {m: dict(c) for m, c in models.items()},
            "providers": {p: dict(c) for p, c in providers.items()},
            "keys": {k: dict(c) for k, c in self._key_stats.items()},
            "content": {p: dict(c) for p, c in self._content.items()},
        }


def catalog_of(profile: Profile, provider: Provider) -> list[str]:
    """The profile's catalog for ``provider`` (the default one when unset), then the world models
    that ``provider`` lists (those tied to it or to no provider); each model once."""
    listed = profile.catalog.get(provider) or DEFAULT_CATALOG[provider]
    world = [model for model, mapping in profile.world_models.items()
             if mapping.provider in (None, provider)]
    return list(dict.fromkeys([*listed, *world]))


def _fault_rates(spec: FaultSpec) -> list[tuple[str, int, float]]:
    rates = [("error", int(s), r) for s, r in sorted((spec.error_rates or {}).items()) if r > 0]
    for kind, rate in (("drop", spec.drop_rate), ("hang", spec.hang_rate),
                       ("midstream", spec.midstream_error_rate), ("malformed", spec.malformed_rate),
                       ("oversized", spec.oversized_rate), ("degraded", spec.degraded_rate)):
        if rate:
            rates.append((kind, 0, rate))
    return rates


def _shaped_fault(spec: FaultSpec, answer: str) -> tuple[str, float] | None:
    """The fault that breaks an answer of this kind, with its rate, if the spec sets one."""
    if answer == "tool_call" and spec.bad_tool_args_rate:
        return "bad_tool_args", spec.bad_tool_args_rate
    if answer == "json" and spec.bad_json_rate:
        return "bad_json", spec.bad_json_rate
    return None


def _load_traces(profile: Profile) -> dict[str, tuple[TraceRecord, ...]]:
    specs = [profile.defaults, *profile.providers.values(), *profile.models.values()]
    files = {s.latency.file for s in specs if isinstance(s.latency, TraceLatency)}
    return {name: load_trace(name) for name in sorted(files)}
