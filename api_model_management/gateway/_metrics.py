"""``GET /metrics``: the gateway's counters in Prometheus' text format (version 0.0.4), written
out here (a few dozen lines; no client library).

Per worker process (the ``pid`` label): requests by endpoint, key, served model and status;
failures by endpoint, key and kind; a latency histogram per endpoint; cost by key and model;
requests in flight; each key's budget (limit, spent, reserved, headroom) and its requests in
the last minute; the registry's budgets with their headroom. Labels are names from the
configuration or the registry, never a key or any text from a request.
"""

from __future__ import annotations

import bisect
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

from ..budget import BudgetStatus
from ._keys import KeyStatus

#: Latency buckets in seconds (upper bounds), from a cache hit to a long generation.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_Labels = tuple[tuple[str, str], ...]


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    """The counters of one process."""

    def __init__(self) -> None:
        self.requests: dict[_Labels, int] = defaultdict(int)
        self.failures: dict[_Labels, int] = defaultdict(int)
        self.cost_usd: dict[_Labels, Decimal] = defaultdict(Decimal)
        self.latency: dict[_Labels, _Histogram] = defaultdict(_Histogram)
        self.in_flight = 0
        self.pid = str(os.getpid())

    def observe(self, endpoint: str, key: str, model: str, status: int, seconds: float,
                cost_usd: Decimal = Decimal(0), failure: str | None = None) -> None:
        """One request answered (or failed) after ``seconds``."""
        self.requests[(("endpoint", endpoint), ("key", key), ("model", model),
                       ("status", str(status)))] += 1
        self.latency[(("endpoint", endpoint),)].observe(seconds)
        if failure is not None:
            self.failures[(("endpoint", endpoint), ("key", key), ("kind", failure))] += 1
        if cost_usd:
            self.cost_usd[(("key", key), ("model", model))] += cost_usd

    def render(self, keys: Sequence[KeyStatus], budgets: Sequence[BudgetStatus]) -> str:
        """Everything, as Prometheus text."""
        lines: list[str] = []
        pid = (("pid", self.pid),)
        _family(lines, "amm_gateway_requests_total", "counter",
                "Requests answered, by endpoint, virtual key, served model and HTTP status.",
                ((pid + k, v) for k, v in self.requests.items()))
        _family(lines, "amm_gateway_failures_total", "counter",
                "Requests that failed, by endpoint, virtual key and error kind.",
                ((pid + k, v) for k, v in self.failures.items()))
        _family(lines, "amm_gateway_cost_usd_total", "counter",
                "Cost of the requests answered, USD, by virtual key and served model.",
                ((pid + k, v) for k, v in self.cost_usd.items()))
        _family(lines, "amm_gateway_in_flight", "gauge", "Requests being served now.",
                [(pid, self.in_flight)])
        self._histograms(lines, pid)
        self._keys(lines, pid, keys)
        _family(lines, "amm_budget_headroom_usd", "gauge",
                "Headroom of each registry budget limit in its current window, USD.",
                ((pid + (("scope", b.scope), ("key", b.key), ("window", b.window)),
                  max(Decimal(0), b.limit_usd - b.spent_usd - b.reserved_usd)) for b in budgets))
        return "\n".join(lines) + "\n"

    def _histograms(self, lines: list[str], pid: _Labels) -> None:
        name = "amm_gateway_request_duration_seconds"
        lines.append(f"# HELP {name} Time from a request's arrival to its last byte, seconds.")
        lines.append(f"# TYPE {name} histogram")
        for labels, h in sorted(self.latency.items()):
            running = 0
            for bound, count in zip((*BUCKETS_S, float("inf")), h.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"{name}_bucket{_labels(pid + labels + (('le', le),))} {running}")
            lines.append(f"{name}_sum{_labels(pid + labels)} {h.total:.6f}")
            lines.append(f"{name}_count{_labels(pid + labels)} {h.n}")

    @staticmethod
    def _keys(lines: list[str], pid: _Labels, keys: Sequence[KeyStatus]) -> None:
        budgeted = [k for k in keys if k.limit_usd is not None]
        for name, help_text, value_of in (
            ("amm_gateway_key_budget_limit_usd", "Each virtual key's budget (this worker's share), USD.",
             lambda k: k.limit_usd),
            ("amm_gateway_key_spent_usd", "Each virtual key's spend in its window, USD.",
             lambda k: k.spent_usd),
            ("amm_gateway_key_reserved_usd", "Each virtual key's holds of requests in flight, USD.",
             lambda k: k.reserved_usd),
            ("amm_gateway_key_budget_headroom_usd", "Each virtual key's budget left, USD.",
             lambda k: k.headroom_usd),
        ):
            _family(lines, name, "gauge", help_text,
                    ((pid + (("key", k.name),), value_of(k)) for k in budgeted))
        _family(lines, "amm_gateway_key_requests_last_minute", "gauge",
                "Requests of each virtual key in the last 60 s.",
                ((pid + (("key", k.name),), k.requests_in_window) for k in keys))


def _family(lines: list[str], name: str, kind: str, help_text: str,
            samples: Iterable[tuple[_Labels, int | float | Decimal | None]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in sorted(samples, key=lambda s: s[0]):
        if value is not None:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")


def _labels(labels: _Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return str(value)
