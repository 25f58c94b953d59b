"""When a model's RateLimiter may retire: after ``idle_s`` without a decision, with nothing
outstanding (see :meth:`RateLimiterCore.outstanding`). Plain, on the injected clock; the Ray
shell asks it and exits (its journal brings the window back when the model is used again)."""

from __future__ import annotations

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import InvalidInput

#: The longest a retirement check waits (so a limiter notices it is idle within this of the
#: moment it may retire, whatever ``idle_s``).
MAX_CHECK_S = 30.0


class IdleRetirement:
    """Tracks a limiter's last decision; ``idle_s`` None or 0: never retires."""

    def __init__(self, idle_s: float | None, clock: Clock = SYSTEM_CLOCK) -> None:
        if idle_s is not None and not (isinstance(idle_s, int | float) and idle_s >= 0):
            raise InvalidInput("idle_s must be a non-negative number or None", field="idle_s")
        self.idle_s = float(idle_s) if idle_s else None
        self._clock = clock
        self._started = self._last = clock.monotonic()
        self._decided = False

    @property
    def enabled(self) -> bool:
        return self.idle_s is not None

    def touch(self) -> None:
        """A decision was made now (a lease, a return, a reservation, a cool-down, ...)."""
        self._last = self._clock.monotonic()
        self._decided = True

    def idle_for(self) -> float:
        """Seconds since the last decision (or since start)."""
        return max(0.0, self._clock.monotonic() - self._last)

    def settled(self, quiet_s: float, latest_s: float) -> bool:
        """Whether a decision has been made and none in the last ``quiet_s``, or ``latest_s``
        have passed since the start: when a started limiter does the work it puts off until it
        has answered the decision it was started for (finding its subscribers)."""
        now = self._clock.monotonic()
        return (self._decided and now - self._last >= quiet_s) or now - self._started >= latest_s

    def due(self, outstanding: bool) -> bool:
        """Whether the limiter may retire now: enabled, idle for ``idle_s``, nothing outstanding."""
        return self.idle_s is not None and not outstanding and self.idle_for() >= self.idle_s

    def check_in_s(self) -> float | None:
        """How long until it is worth asking :meth:`due` again (None: never)."""
        if self.idle_s is None:
            return None
        left = self.idle_s - self.idle_for()
        return min(MAX_CHECK_S, max(left, min(1.0, self.idle_s / 4)))
