"""``GET /metrics``: the gateway's counters in Prometheus' text format (version 0.0.4), written
out here (a few dozen lines; no client library).

Requests by endpoint, key, served model and status; failures by endpoint, key and kind; a
latency histogram per endpoint; cost by key and model; requests in flight; each key's budget
(limit, spent, reserved, headroom) and its requests in the last minute; the registry's budgets
with their headroom. Labels are names from the configuration or the registry, never a key or
any text from a request.

One process's figures are a :class:`Snapshot`. A server of N workers answers with the whole
server's (:func:`merge`): counters and histogram buckets summed (integers: exact; latency sums
are kept in nanoseconds, cost as ``Decimal``), requests in flight summed, and each budget's
gauges computed from the sums: its configured limit (not N shares of it), the spend and holds
of all workers, the headroom left of the limit by those.
"""

from __future__ import annotations

import bisect
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from ..budget import BudgetStatus
from ._keys import KeyStatus

#: Latency buckets in seconds (upper bounds), from a cache hit to a long generation.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_Labels = tuple[tuple[str, str], ...]
#: A budget gauge's identity: (scope, key, window)
BudgetId = tuple[str, str, str]


@dataclass
class Histogram:
    """Observations per bucket (not cumulative; the last is above every bound), their sum in
    nanoseconds and their number."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    total_ns: int = 0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total_ns += round(seconds * 1e9)
        self.n += 1

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total_ns += other.total_ns
        self.n += other.n


@dataclass(frozen=True)
class BudgetGauge:
    """A budget in its current window: what ``/metrics`` shows of a registry budget."""

    scope: str
    key: str
    window: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def id(self) -> BudgetId:
        return (self.scope, self.key, self.window)

    @property
    def headroom_usd(self) -> Decimal:
        return max(Decimal(0), self.limit_usd - self.spent_usd - self.reserved_usd)


@dataclass
class Snapshot:
    """The figures of one process (or, merged, of a server)."""

    requests: dict[_Labels, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[_Labels, int] = field(default_factory=lambda: defaultdict(int))
    cost_usd: dict[_Labels, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    latency: dict[_Labels, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    in_flight: int = 0
    keys: list[KeyStatus] = field(default_factory=list)
    budgets: list[BudgetGauge] = field(default_factory=list)

    def to_json(self) -> bytes:
        """For another worker of the same server (:meth:`from_json`)."""
        return orjson.dumps({
            "requests": [[k, v] for k, v in self.requests.items()],
            "failures": [[k, v] for k, v in self.failures.items()],
            "cost_usd": [[k, str(v)] for k, v in self.cost_usd.items()],
            "latency": [[k, h.counts, h.total_ns, h.n] for k, h in self.latency.items()],
            "in_flight": self.in_flight,
            "keys": [[k.name, _text(k.limit_usd), str(k.spent_usd), str(k.reserved_usd),
                      k.requests_per_minute, k.requests_in_window] for k in self.keys],
            "budgets": [[b.scope, b.key, b.window, str(b.limit_usd), str(b.spent_usd),
                         str(b.reserved_usd)] for b in self.budgets],
        })

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        raw: dict[str, Any] = orjson.loads(data)
        out = cls(in_flight=int(raw["in_flight"]))
        for k, v in raw["requests"]:
            out.requests[_labels_of(k)] = int(v)
        for k, v in raw["failures"]:
            out.failures[_labels_of(k)] = int(v)
        for k, v in raw["cost_usd"]:
            out.cost_usd[_labels_of(k)] = Decimal(v)
        for k, counts, total_ns, n in raw["latency"]:
            out.latency[_labels_of(k)] = Histogram([int(c) for c in counts], int(total_ns), int(n))
        out.keys = [KeyStatus(name, None if limit is None else Decimal(limit), Decimal(spent),
                              Decimal(reserved), rpm, int(recent))
                    for name, limit, spent, reserved, rpm, recent in raw["keys"]]
        out.budgets = [BudgetGauge(scope, key, window, Decimal(limit), Decimal(spent),
                                   Decimal(reserved))
                       for scope, key, window, limit, spent, reserved in raw["budgets"]]
        return out


class Metrics:
    """The counters of one process."""

    def __init__(self) -> None:
        self._figures = Snapshot()
        self.pid = str(os.getpid())

    @property
    def in_flight(self) -> int:
        return self._figures.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._figures.in_flight = value

    def observe(self, endpoint: str, key: str, model: str, status: int, seconds: float,
                cost_usd: Decimal = Decimal(0), failure: str | None = None) -> None:
        """One request answered (or failed) after ``seconds``."""
        f = self._figures
        f.requests[(("endpoint", endpoint), ("key", key), ("model", model),
                    ("status", str(status)))] += 1
        f.latency[(("endpoint", endpoint),)].observe(seconds)
        if failure is not None:
            f.failures[(("endpoint", endpoint), ("key", key), ("kind", failure))] += 1
        if cost_usd:
            f.cost_usd[(("key", key), ("model", model))] += cost_usd

    def snapshot(self, keys: Sequence[KeyStatus], budgets: Sequence[BudgetStatus]) -> Snapshot:
        """This process's figures now, with its keys' and budgets' state (a copy)."""
        f = self._figures
        return Snapshot(
            requests=defaultdict(int, f.requests), failures=defaultdict(int, f.failures),
            cost_usd=defaultdict(Decimal, f.cost_usd),
            latency=defaultdict(Histogram, {k: Histogram(list(h.counts), h.total_ns, h.n)
                                            for k, h in f.latency.items()}),
            in_flight=f.in_flight, keys=list(keys),
            budgets=[BudgetGauge(b.scope, b.key, b.window, b.limit_usd, b.spent_usd,
                                 b.reserved_usd) for b in budgets])

    def render(self, keys: Sequence[KeyStatus], budgets: Sequence[BudgetStatus]) -> str:
        """This process's figures, as Prometheus text (every series labelled with its pid)."""
        return render(self.snapshot(keys, budgets), pid=self.pid)


def merge(snapshots: Sequence[Snapshot], key_limits: Mapping[str, Decimal | None],
          budget_limit: Callable[[BudgetId], Decimal | None]) -> Snapshot:
    """The figures of a server from its workers': counters, histograms and requests in flight
    summed; each key's and budget's spend and holds summed and its limit the configured one
    (``key_limits`` by key name, ``budget_limit`` of a budget; None: the sum of the workers'
    limits), so the headroom is what the server has left, not a sum of shares' headroom."""
    out = Snapshot()
    keys: dict[str, KeyStatus] = {}
    budgets: dict[BudgetId, BudgetGauge] = {}
    for s in snapshots:
        for k, v in s.requests.items():
            out.requests[k] += v
        for k, v in s.failures.items():
            out.failures[k] += v
        for k, c in s.cost_usd.items():
            out.cost_usd[k] += c
        for k, h in s.latency.items():
            out.latency[k].add(h)
        out.in_flight += s.in_flight
        for key in s.keys:
            keys[key.name] = _add_key(keys.get(key.name), key)
        for b in s.budgets:
            budgets[b.id] = _add_budget(budgets.get(b.id), b)
    out.keys = [KeyStatus(k.name, key_limits.get(k.name, k.limit_usd), k.spent_usd,
                          k.reserved_usd, k.requests_per_minute, k.requests_in_window)
                for k in keys.values()]
    for b in budgets.values():
        limit = budget_limit(b.id)
        out.budgets.append(b if limit is None else BudgetGauge(
            b.scope, b.key, b.window, limit, b.spent_usd, b.reserved_usd))
    return out


def _add_key(total: KeyStatus | None, key: KeyStatus) -> KeyStatus:
    if total is None:
        return key
    limit = (None if total.limit_usd is None or key.limit_usd is None
             else total.limit_usd + key.limit_usd)
    rpm = (None if total.requests_per_minute is None or key.requests_per_minute is None
           else total.requests_per_minute + key.requests_per_minute)
    return KeyStatus(key.name, limit, total.spent_usd + key.spent_usd,
                     total.reserved_usd + key.reserved_usd, rpm,
                     total.requests_in_window + key.requests_in_window)


def _add_budget(total: BudgetGauge | None, b: BudgetGauge) -> BudgetGauge:
    if total is None:
        return b
    return BudgetGauge(b.scope, b.key, b.window, total.limit_usd + b.limit_usd,
                       total.spent_usd + b.spent_usd, total.reserved_usd + b.reserved_usd)


# -- the text format ------------------------------------------------------------------------------
def render(s: Snapshot, *, pid: str | None = None, workers: int | None = None) -> str:
    """``s`` as Prometheus text; ``pid``: a label on every series (one worker's figures);
    ``workers``: the number of workers whose figures were merged into ``s``."""
    lines: list[str] = []
    p: _Labels = (("pid", pid),) if pid is not None else ()
    if workers is not None:
        _family(lines, "amm_gateway_workers", "gauge",
                "Worker processes whose figures this answer sums.", [((), workers)])
    _family(lines, "amm_gateway_requests_total", "counter",
            "Requests answered, by endpoint, virtual key, served model and HTTP status.",
            ((p + k, v) for k, v in s.requests.items()))
    _family(lines, "amm_gateway_failures_total", "counter",
            "Requests that failed, by endpoint, virtual key and error kind.",
            ((p + k, v) for k, v in s.failures.items()))
    _family(lines, "amm_gateway_cost_usd_total", "counter",
            "Cost of the requests answered, USD, by virtual key and served model.",
            ((p + k, v) for k, v in s.cost_usd.items()))
    _family(lines, "amm_gateway_in_flight", "gauge", "Requests being served now.",
            [(p, s.in_flight)])
    _histograms(lines, p, s.latency)
    _keys(lines, p, s.keys)
    _family(lines, "amm_budget_headroom_usd", "gauge",
            "Headroom of each registry budget limit in its current window, USD.",
            ((p + (("scope", b.scope), ("key", b.key), ("window", b.window)), b.headroom_usd)
             for b in s.budgets))
    return "\n".join(lines) + "\n"


def _histograms(lines: list[str], pid: _Labels, latency: Mapping[_Labels, Histogram]) -> None:
    name = "amm_gateway_request_duration_seconds"
    lines.append(f"# HELP {name} Time from a request's arrival to its last byte, seconds.")
    lines.append(f"# TYPE {name} histogram")
    for labels, h in sorted(latency.items()):
        running = 0
        for bound, count in zip((*BUCKETS_S, float("inf")), h.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f"{name}_bucket{_labels(pid + labels + (('le', le),))} {running}")
        lines.append(f"{name}_sum{_labels(pid + labels)} {h.total_ns / 1e9:.6f}")
        lines.append(f"{name}_count{_labels(pid + labels)} {h.n}")


def _keys(lines: list[str], pid: _Labels, keys: Sequence[KeyStatus]) -> None:
    budgeted = [k for k in keys if k.limit_usd is not None]
    for name, help_text, value_of in (
        ("amm_gateway_key_budget_limit_usd", "Each virtual key's budget, USD (with a pid label: "
         "that worker's share).", lambda k: k.limit_usd),
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


def _labels_of(pairs: Any) -> _Labels:
    return tuple((str(k), str(v)) for k, v in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return str(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
