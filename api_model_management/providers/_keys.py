"""A provider's API keys as a pool: which key the next call uses, and which keys rest.

Each key has its own limits at the provider. Calls go round robin over the keys in rotation that
are not cooling down for the call's scope (the model; ``""`` for a probe). A key's 429 cools that
key for that scope (for the provider's retry hint, else :data:`COOL_DOWN_DEFAULT_S`); the other
keys carry on, and the provider is rate-limited for a scope only when every key is cooling for it
(:meth:`KeyPool.retry_after_s` is then the wait for the first to free). A key the provider refuses
(auth or quota: a revoked key, an account out of credit) leaves the rotation for
:data:`SET_ASIDE_S` while another key is in it; the last key in rotation is never set aside, so a
provider whose keys are all refused still reports its own errors.

A key is named by ``ApiKey.name`` (the variable it was read from, or ``#<n>``) in every log line,
repr and snapshot; its value is only read to build the auth header.

One pool per adapter: its state is this process's view (each router learns from its own calls).
A pick is O(keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from .._clock import SYSTEM_CLOCK, Clock
from ..config import ApiKey
from ..errors import InvalidInput
from ..ratelimit import RateLimitState

#: The cool-down after a 429 that gives no retry hint (as the router's).
COOL_DOWN_DEFAULT_S = 1.0
#: How long a key the provider refused (auth, quota) stays out of the rotation before it is
#: tried again (a key re-enabled or topped up comes back by itself).
SET_ASIDE_S = 300.0

KeySource = SecretStr | Sequence[ApiKey | SecretStr] | None


def keys_of(source: KeySource) -> tuple[ApiKey, ...]:
    """The keys of ``source``: none, one key given directly (named ``#1``), or several (an
    ``ApiKey`` keeps its name; a bare ``SecretStr`` is named by its place, ``#<n>``)."""
    if source is None:
        return ()
    if isinstance(source, SecretStr):
        return (ApiKey("#1", source),)
    keys = []
    for i, item in enumerate(source, start=1):
        if isinstance(item, ApiKey):
            keys.append(item)
        elif isinstance(item, SecretStr):
            keys.append(ApiKey(f"#{i}", item))
        else:
            raise InvalidInput(f"key #{i} is a {type(item).__name__}, not an ApiKey or SecretStr",
                               field="api_key")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key as :meth:`KeyPool.snapshot` sees it (names and counts, no value)."""

    name: str
    #: Calls made with the key (picks).
    calls: int
    #: 429s the key met.
    rate_limited: int
    #: Refusals (auth, quota) the key met.
    refused: int
    #: Scope (model id; ``""`` for probes) -> seconds the key still cools down for it.
    cooling_s: dict[str, float]
    #: Seconds before a refused key returns to the rotation (0: in rotation).
    set_aside_s: float


class KeyPool:
    """The keys of one provider (see the module docstring). ``len(pool)`` is 0 for a provider
    that needs no key; then nothing is ever picked."""

    __slots__ = ("provider", "_keys", "_clock", "_next", "_cooling", "_aside_until", "_calls",
                 "_rate_limited", "_refused")

    def __init__(self, provider: str, keys: Sequence[ApiKey] = (), *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.provider = provider
        self._keys = tuple(keys)
        self._clock = clock
        self._next = 0
        n = len(self._keys)
        self._cooling: list[dict[str, float]] = [{} for _ in range(n)]  # scope -> until
        self._aside_until = [0.0] * n
        self._calls = [0] * n
        self._rate_limited = [0] * n
        self._refused = [0] * n

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # names only
        return f"KeyPool(provider={self.provider!r}, keys={list(self.names)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(key.name for key in self._keys)

    def name(self, index: int) -> str:
        """The name of key ``index`` (its variable, or ``#<n>``)."""
        return self._keys[index].name

    def secret(self, index: int) -> SecretStr:
        """The value of key ``index``, for the auth header only."""
        return self._keys[index].secret

    # -- the hot path ----------------------------------------------------------------------------
    def pick(self, scope: str) -> int | None:
        """The next key (round robin) in rotation and not cooling for ``scope``, counted as a
        call; None when there is none (every key cools, or the pool is empty)."""
        n = len(self._keys)
        now = self._clock.monotonic()
        start = self._next
        for step in range(n):
            i = (start + step) % n
            if self._aside_until[i] <= now and self._cooling[i].get(scope, 0.0) <= now:
                self._next = (i + 1) % n
                self._calls[i] += 1
                return i
        return None

    # -- what the provider said ------------------------------------------------------------------
    def cool_down(self, index: int, scope: str, retry_after_s: float | None) -> None:
        """Key ``index`` met a 429 for ``scope``: it is not picked for ``scope`` for
        ``retry_after_s`` (:data:`COOL_DOWN_DEFAULT_S` when the provider gave no hint)."""
        self._rate_limited[index] += 1
        seconds = retry_after_s if retry_after_s is not None and retry_after_s > 0 else COOL_DOWN_DEFAULT_S
        self._cool(index, scope, seconds)

    def set_aside(self, index: int) -> bool:
        """The provider refused key ``index`` (auth, quota). It leaves the rotation for
        :data:`SET_ASIDE_S` if another key is in rotation; returns whether it did (False: it is
        the last one, whose errors the caller raises as they are)."""
        self._refused[index] += 1
        now = self._clock.monotonic()
        if not any(until <= now for j, until in enumerate(self._aside_until) if j != index):
            return False
        self._aside_until[index] = now + SET_ASIDE_S
        return True

    def observe(self, index: int, scope: str, state: RateLimitState | None) -> RateLimitState | None:
        """Key ``index``'s limits as reported on a success, turned into what holds for the
        model as a whole. With one key (or none) that is ``state`` itself. With several, a key
        reported as used up (nothing remaining, with a reset time) cools for ``scope`` until
        the reset; the result is None while another key is free (one key's counts are not the
        model's), or nothing remaining until the first key frees when every key cools."""
        if state is None or len(self._keys) <= 1:
            return state
        resets = [reset for remaining, reset in ((state.remaining_requests, state.reset_requests_s),
                                                 (state.remaining_tokens, state.reset_tokens_s))
                  if remaining == 0 and reset is not None and reset > 0]
        if not resets:
            return None
        self._cool(index, scope, max(resets))
        wait = self.retry_after_s(scope)
        return RateLimitState(remaining_requests=0, reset_requests_s=wait) if wait > 0 else None

    def retry_after_s(self, scope: str) -> float:
        """Seconds before some key may be picked for ``scope`` (0: one may be now, or the pool
        is empty)."""
        now = self._clock.monotonic()
        waits = [max(self._aside_until[i], self._cooling[i].get(scope, 0.0)) - now
                 for i in range(len(self._keys))]
        return max(0.0, min(waits, default=0.0))

    # -- reporting -------------------------------------------------------------------------------
    def snapshot(self) -> list[KeyState]:
        """Every key's name, counts, cool-downs and set-aside time, in configured order."""
        now = self._clock.monotonic()
        return [
            KeyState(
                name=key.name, calls=self._calls[i], rate_limited=self._rate_limited[i],
                refused=self._refused[i],
                cooling_s={scope: until - now for scope, until in self._cooling[i].items() if until > now},
                set_aside_s=max(0.0, self._aside_until[i] - now),
            )
            for i, key in enumerate(self._keys)
        ]

    def _cool(self, index: int, scope: str, seconds: float) -> None:
        now = self._clock.monotonic()
        cooling = self._cooling[index]
        for expired in [s for s, until in cooling.items() if until <= now]:
            del cooling[expired]  # at most one entry per model: pruned here, never on the hot path
        cooling[scope] = max(cooling.get(scope, 0.0), now + seconds)
