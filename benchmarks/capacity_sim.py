"""A discrete-event simulation of the control plane's capacity: routers admitting requests from
rate-limit leases and budget slices, one RateLimiter per model and the CostLedger granting them.

    python benchmarks/capacity_sim.py                       # reads benchmarks/results/control_plane.json
    python benchmarks/capacity_sim.py --service-us 1700 --hop-us 600 --seconds 20

Pure Python on simulated time (no Ray, no sockets). What it models, from the code:

- each router holds one lease per model and one slice per spend key; a request is admitted locally
  while its lease (slice) has room; the request that finds it empty asks for a new one (one refill
  in flight per holder; requests arriving meanwhile wait for it);
- a refill goes to its owner over a network hop, waits in the owner's FIFO queue (an actor serves
  one call at a time), is served (a grant with the return of the previous grant: one measured
  cycle, plus, at the ledger, the pending charge of every request settled under the returned
  slice), and comes back over a hop;
- sizes: a lease is ``lease_requests`` requests (or ``lease_tokens`` / tokens per request if
  fewer); a slice ``slice_calls`` worst-case calls; each doubles while its holder refills within
  ``fast_refill_s`` of the last refill, up to the cap (a lease starts again from the base after a
  slower refill, a slice keeps its size), as ``_grants.Growth`` does;
- a lease is used until ``ttl - safety margin`` after it was granted, then handed back (a return
  call queued at the owner); the owner counts a lease in full until it comes back, then its used
  part until it slides out of the RPM window; a strict budget grants at most ``SLICE_SHARE`` of
  the headroom (at least one call's worst case);
- arrivals are Poisson at each router, spread evenly over routers and spend keys. Between two
  events a holder's arrivals are drawn in bulk (the count in an interval is Poisson; the time the
  lease runs out is an order statistic), so millions of requests per second cost no more events
  than the grants they need.

Rate limiting and budget admission are simulated apart (a request needs both; the system's
throughput is the lower of the two). Service time and hop are drawn from the distributions
``control_plane.py`` measured (its JSON), or from ``--service-us``/``--hop-us`` (constant).

Outputs: throughput against offered load for one limiter and for the ledger at the default sizes,
the saturation points, what bigger leases (x4, x16) and a ledger sharded by scope (K ledgers) buy,
and what they cost (capacity held unused by routers); an exactness check (admitted in any window
never above the limit); and the simulator against one measured point of ``control_plane.py`` (its
closed loop of K callers, same inputs). Writes ``benchmarks/results/capacity_sim.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# --------------------------------------------------------------------------------------------
# inputs


class Dist:
    """An empirical distribution (evenly spaced quantiles, seconds), sampled by inverse CDF."""

    def __init__(self, quantiles_s: list[float]) -> None:
        if not quantiles_s:
            raise ValueError("a distribution needs at least one quantile")
        self.q = np.asarray(sorted(quantiles_s), dtype=float)

    @classmethod
    def constant(cls, seconds: float) -> Dist:
        return cls([seconds])

    @property
    def mean(self) -> float:
        return float(np.trapezoid(self.q, dx=1 / max(len(self.q) - 1, 1))) if len(self.q) > 1 \
            else float(self.q[0])

    def sample(self, rng: np.random.Generator) -> float:
        if len(self.q) == 1:
            return float(self.q[0])
        return float(np.interp(rng.random() * (len(self.q) - 1), np.arange(len(self.q)), self.q))

    def shifted(self, mean_s: float) -> Dist:
        """The same shape moved to mean ``mean_s`` (never below zero)."""
        return Dist([max(0.0, x + mean_s - self.mean) for x in self.q])


@dataclass
class Sizes:
    """Grant sizes and timings (the code's defaults unless changed)."""

    lease_requests: int = 4
    lease_tokens: int = 8000
    tokens_per_request: int = 1000
    lease_growth_max: int = 16
    lease_ttl_s: float = 5.0
    lease_margin_s: float = 0.5
    fast_refill_s: float = 1.0
    slice_calls: int = 8
    slice_calls_max: int = 512
    slice_ttl_s: float = 30.0
    slice_margin_s: float = 0.5
    slice_share: float = 0.1
    window_s: float = 60.0

    @classmethod
    def from_defaults(cls, d: dict) -> Sizes:
        return cls(lease_requests=d["lease_requests"], lease_tokens=d["lease_tokens"],
                   tokens_per_request=d.get("tokens_per_request", 1000),
                   lease_growth_max=d["lease_growth_max"], lease_ttl_s=d["lease_ttl_s"],
                   lease_margin_s=d["lease_safety_margin_s"],
                   fast_refill_s=d["lease_fast_refill_s"], slice_calls=d["slice_calls"],
                   slice_calls_max=d["slice_calls_max"], slice_ttl_s=d["slice_ttl_s"],
                   slice_share=d["slice_share_of_headroom"])

    def lease_base(self, multiple: int = 1) -> int:
        by_tokens = self.lease_tokens // max(self.tokens_per_request, 1)
        return max(1, min(self.lease_requests, by_tokens)) * multiple


@dataclass
class Owner:
    """One actor: a FIFO single server."""

    service: Dist
    cpu_share: float = 1.0  # the share of a core it gets (1: a core of its own)
    busy_until: float = 0.0
    busy_s: float = 0.0
    jobs: int = 0

    def serve(self, now: float, extra_s: float, rng: np.random.Generator,
              fraction: float = 1.0) -> float:
        """Queue a job arriving ``now``; returns when it is done."""
        start = max(now, self.busy_until)
        s = (self.service.sample(rng) * fraction + extra_s) / self.cpu_share
        self.busy_until = start + s
        self.busy_s += s
        self.jobs += 1
        return self.busy_until


# --------------------------------------------------------------------------------------------
# pools: what an owner may grant


class RpmPool:
    """A RateLimiter's request window: a lease counts in full until returned, then its used part
    until ``window_s`` after (or after its expiry, whichever is first)."""

    def __init__(self, rpm: float, window_s: float) -> None:
        self.rpm, self.window_s = rpm, window_s
        self.counted = 0
        self._expiry: list[tuple[float, int, int]] = []  # (until, id, requests)
        self._live: dict[int, tuple[int, float]] = {}  # id -> (requests, lease expiry)
        self._seq = 0
        self.max_counted = 0

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, _, requests = heapq.heappop(self._expiry)
            self.counted -= requests

    def grant(self, now: float, asked: int, expires_at: float) -> tuple[int, int]:
        self._prune(now)
        n = int(max(0, min(asked, self.rpm - self.counted))) if math.isfinite(self.rpm) else asked
        if n <= 0:
            return -1, 0
        self._seq += 1
        self.counted += n
        self.max_counted = max(self.max_counted, self.counted)
        self._live[self._seq] = (n, expires_at)
        return self._seq, n

    def give_back(self, now: float, grant_id: int, used: int) -> None:
        requests, expires_at = self._live.pop(grant_id)
        self._prune(now)
        self.counted -= requests - used
        heapq.heappush(self._expiry, (min(now, expires_at) + self.window_s, grant_id, used))

    def retry_after(self, now: float) -> float:
        return max(0.05, self._expiry[0][0] - now) if self._expiry else 0.05


class BudgetPool:
    """A strict budget in worst-case calls: a slice holds its amount until returned, then its used
    part is spent; at most ``share`` of the headroom per slice, at least one call."""

    def __init__(self, limit_calls: float, share: float) -> None:
        self.limit, self.share = limit_calls, share
        self.spent = 0
        self.held = 0
        self._live: dict[int, int] = {}
        self._seq = 0

    def grant(self, now: float, asked: int, expires_at: float) -> tuple[int, int]:
        if math.isfinite(self.limit):
            room = max(0, self.limit - self.spent - self.held)
            asked = int(min(asked, max(room * self.share, min(1, room))))
        if asked <= 0:
            return -1, 0
        self._seq += 1
        self.held += asked
        self._live[self._seq] = asked
        return self._seq, asked

    def give_back(self, now: float, grant_id: int, used: int) -> None:
        self.held -= self._live.pop(grant_id)
        self.spent += used

    def retry_after(self, now: float) -> float:
        return math.inf  # refused: the budget is spent


# --------------------------------------------------------------------------------------------
# the simulation


@dataclass
class Holder:
    """One router's lease for a model, or its slice for a spend key."""

    rate: float  # requests/s arriving for it
    owner: int
    pool: int = 0  # the limit it draws from (its model's window, its key's budget)
    t: float = 0.0  # arrivals are accounted up to here
    remaining: int = 0
    granted: int = 0
    grant_id: int = -1
    stop_at: float = 0.0
    backlog: int = 0
    waiting: bool = False
    size: int = 1
    last_refill: float = -1e18  # when it last asked
    got_at: float = -1e18  # when its current grant arrived
    version: int = 0
    since: float = 0.0  # the grant's local use started here
    drawn: int = 0  # arrivals drawn for the grant's remaining span (fewer than it has room for)


@dataclass
class Result:
    offered: float
    admitted: float = 0.0
    refused: int = 0
    wait_area: float = 0.0  # request-seconds spent waiting for a grant
    grants: int = 0
    held_samples: list[float] = field(default_factory=list)
    owner_utilisation: list[float] = field(default_factory=list)
    window_admitted: deque = field(default_factory=deque)  # admission times (exactness)
    max_window_admitted: int = 0

    def summary(self, seconds: float) -> dict:
        admitted = max(self.admitted, 1)
        return {"offered_per_s": self.offered, "throughput_per_s": self.admitted / seconds,
                "admitted_share": self.admitted / max(self.offered * seconds, 1e-9),
                "mean_wait_ms": self.wait_area / admitted * 1000,
                "grants_per_s": self.grants / seconds,
                "owner_utilisation": max(self.owner_utilisation, default=0.0),
                "held_unused_mean": (sum(self.held_samples) / len(self.held_samples)
                                     if self.held_samples else 0.0),
                "refused": self.refused, "max_window_admitted": self.max_window_admitted}


def simulate(kind: str, *, offered: float, routers: int, service: Dist, hop: Dist,
             sizes: Sizes, seconds: float = 20.0, warmup_s: float = 5.0, owners: int = 1,
             keys: int = 1, lease_multiple: int = 1, charge_s: float = 0.0,
             limit: float = math.inf, cpu_share: float = 1.0, seed: int = 1,
             growth_from: str = "grant") -> dict:
    """``kind`` "lease" (one model's RateLimiter; ``limit`` its RPM) or "slice" (the ledger,
    ``owners`` shards by spend key, ``keys`` spend keys; ``limit`` a strict budget in worst-case
    calls). ``offered`` requests/s in total. ``growth_from``: a refill is "fast" when it comes
    within ``fast_refill_s`` of the previous grant's *arrival* (``"grant"``: how long the grant
    lasted, not counting the wait for it; what ``_grants.Growth`` does) or of the previous *ask*
    (``"ask"``: what it did before this simulation showed leases shrinking under a queue). Returns the measured window's summary."""
    rng = np.random.default_rng(seed)
    end = warmup_s + seconds
    owner_list = [Owner(service, cpu_share) for _ in range(owners)]
    if kind == "lease":
        pool: RpmPool | BudgetPool = RpmPool(limit, sizes.window_s)
        base, cap, ttl = sizes.lease_base(lease_multiple), sizes.lease_growth_max, sizes.lease_ttl_s
        margin, reset = sizes.lease_margin_s, True
        holders = [Holder(offered / routers, 0) for _ in range(routers)]
        pools = [pool]
    else:
        base, cap = sizes.slice_calls, sizes.slice_calls_max // sizes.slice_calls
        ttl, margin, reset = sizes.slice_ttl_s, sizes.slice_margin_s, False
        # one budget per spend key (a limit per agent type), on the ledger its key maps to
        pools = [BudgetPool(limit, sizes.slice_share) for _ in range(keys)]
        shard = [zlib.crc32(f"key{k}".encode()) % owners for k in range(keys)]
        holders = [Holder(offered / routers / keys, shard[k], pool=k)
                   for _ in range(routers) for k in range(keys)]
    result = Result(offered)
    events: list[tuple[float, int, str, int, int]] = []  # (time, seq, what, holder, version)
    seq = 0

    def push(t: float, what: str, h: int, version: int = 0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, what, h, version))

    def admit(now: float, n: int, since: float | None = None, last_at_end: bool = False) -> None:
        """``n`` requests admitted: at ``now``, or arriving over ``(since, now]`` (uniformly;
        with ``last_at_end`` the last of them at ``now``), counted for the part inside the
        measured window."""
        if n <= 0:
            return
        t0 = now if since is None else since
        if t0 >= now:
            share = 1.0 if warmup_s <= now < end else 0.0
        else:
            share = max(0.0, min(now, end) - max(t0, warmup_s)) / (now - t0)
        result.admitted += n * share
        if not math.isfinite(limit) or kind != "lease":
            return
        # exactness: the admission times themselves, then the most in any window_s
        times = sorted(rng.uniform(t0, now, n - 1 if last_at_end else n).tolist())
        if last_at_end:
            times.append(now)
        win = result.window_admitted
        for t in times:
            win.append(t)
        while win and win[0] <= win[-1] - sizes.window_s:
            win.popleft()
        result.max_window_admitted = max(result.max_window_admitted, len(win))

    def arrivals(h: Holder, until: float) -> int:
        """Requests arriving at ``h`` in (h.t, until]; they join the backlog (waiting)."""
        span = until - h.t
        if span <= 0:
            return 0
        n = int(rng.poisson(h.rate * span))
        if h.t >= warmup_s and until <= end:
            result.wait_area += h.backlog * span + n * span / 2
        h.backlog += n
        h.t = until
        return n

    def ask(now: float, i: int) -> None:
        """Refill: return the old grant and ask for a new one (one call, one served cycle)."""
        h = holders[i]
        h.waiting = True
        size = h.size
        since = h.last_refill if growth_from == "ask" else h.got_at
        if now - since < sizes.fast_refill_s:
            size = min(size * 2, cap)
        elif reset:
            size = 1
        h.size, h.last_refill = size, now
        push(now + hop.sample(rng), "arrive", i)

    def consume(now: float, i: int) -> None:
        """Serve the backlog from the grant, then schedule its end (run out or expiry)."""
        h = holders[i]
        served = min(h.backlog, h.remaining)
        h.backlog -= served
        h.remaining -= served
        admit(now, served)
        h.version += 1
        if h.remaining == 0:
            finish(now, i, expired=False)
            return
        span = h.stop_at - now
        n = int(rng.poisson(h.rate * span)) if span > 0 else 0
        h.t = h.since = now
        if n >= h.remaining:  # runs out first: when its last request arrives
            at = now + span * rng.beta(h.remaining, n - h.remaining + 1)
            push(at, "out", i, h.version)
        else:
            h.drawn = n
            push(max(now, h.stop_at), "expire", i, h.version)

    def finish(now: float, i: int, *, expired: bool) -> None:
        """The grant is used up (or expired): next refill at once if requests wait, else at the
        next arrival."""
        h = holders[i]
        h.t = now
        if h.grant_id >= 0:
            used = h.granted - h.remaining
            if expired:  # handed back on its own call (the refill carries it otherwise); the
                # unused part is freed when sent (it was never used), the call queues at the owner
                owner_list[h.owner].serve(now + hop.sample(rng), charge_s * used, rng,
                                          fraction=0.5)
                pools[h.pool].give_back(now, h.grant_id, used)
                h.grant_id = -1
            h.remaining = 0
        if h.backlog > 0:
            ask(now, i)
        else:
            push(now + rng.exponential(1 / h.rate), "arrival", i, h.version)

    for i, h in enumerate(holders):
        h.size = 1
        push(rng.exponential(1 / h.rate) if h.rate > 0 else math.inf, "arrival", i, 0)
    sample_every, next_sample = 0.1, warmup_s
    while events:
        now, _, what, i, version = heapq.heappop(events)
        if now >= end:
            break
        while next_sample <= now:  # capacity held unused by routers (leased, not yet used)
            if next_sample >= warmup_s:
                result.held_samples.append(sum(h.remaining for h in holders))
            next_sample += sample_every
        h = holders[i]
        if what == "arrival":
            if version != h.version or h.waiting:
                continue
            h.t = now
            h.backlog += 1
            ask(now, i)
        elif what == "arrive":  # at the owner
            o = owner_list[h.owner]
            pool = pools[h.pool]
            used = h.granted - h.remaining if h.grant_id >= 0 else 0
            done = o.serve(now, charge_s * used, rng)
            if h.grant_id >= 0:
                pool.give_back(done, h.grant_id, used)
                h.grant_id = -1
            asked = base * h.size
            gid, n = pool.grant(done, asked, done + ttl)
            result.grants += warmup_s <= done < end
            push(done + hop.sample(rng), "granted", i, gid * 10**9 + n if gid >= 0 else -1)
        elif what == "granted":
            arrivals(h, now)
            h.waiting = False
            if version < 0:
                retry = pools[h.pool].retry_after(now)
                if math.isinf(retry):  # the budget is spent: the waiting requests are refused
                    result.refused += h.backlog
                    h.backlog = 0
                    push(now + rng.exponential(1 / h.rate), "arrival", i, h.version)
                else:
                    h.version += 1
                    push(now + retry, "retry", i, h.version)
                continue
            h.grant_id, h.granted = divmod(version, 10**9)
            h.remaining = h.granted
            h.stop_at = now + ttl - margin
            h.got_at = now
            consume(now, i)
        elif what == "retry":
            if version == h.version:
                arrivals(h, now)
                ask(now, i)
        elif what == "out":  # its last request arrived: every one of them was admitted at once
            if version != h.version:
                continue
            admit(now, h.remaining, h.since, last_at_end=True)
            h.remaining = 0
            finish(now, i, expired=False)
        elif what == "expire":  # fewer arrived than it had room for
            if version != h.version:
                continue
            admit(now, h.drawn, h.since)
            h.remaining -= h.drawn
            finish(now, i, expired=True)
    for _, _, what, i, version in events:  # grants in use at the end: their share of the window
        h = holders[i]
        if version == h.version and what == "out":
            admit(_end_time(what, h, events, i), h.remaining, h.since, last_at_end=True)
        elif version == h.version and what == "expire":
            admit(h.stop_at, h.drawn, h.since)
    result.owner_utilisation = [o.busy_s / max(end, o.busy_until) for o in owner_list]
    out = result.summary(seconds)
    if isinstance(pools[0], RpmPool):
        out["max_counted_at_limiter"] = pools[0].max_counted
    else:
        out["spent_calls"] = sum(p.spent for p in pools)
        out["held_calls_end"] = sum(p.held for p in pools)
        out["max_key_spent_and_held"] = max(p.spent + p.held for p in pools)
    return out


def _end_time(what: str, h: Holder, events: list, i: int) -> float:
    """When holder ``i``'s pending ``what`` event falls."""
    return min(t for t, _, w, j, v in events if j == i and w == what and v == h.version)


def closed_loop(*, callers: int, service: Dist, hop: Dist, seconds: float = 10.0,
                cpu_share: float = 1.0, seed: int = 1) -> dict:
    """``control_plane.py``'s load: ``callers`` tasks, each awaiting a grant and asking again at
    once (the return is part of the served cycle). Grants/s and p50/p99 latency."""
    rng = np.random.default_rng(seed)
    owner = Owner(service, cpu_share)
    events: list[tuple[float, int, int, float]] = []
    for c in range(callers):
        heapq.heappush(events, (0.0, c, c, 0.0))
    latencies: list[float] = []
    warmup = 1.0
    n = callers
    while events:
        now, _, c, sent = heapq.heappop(events)
        if now >= warmup + seconds:
            break
        if sent > 0 or now > 0:
            if now >= warmup:
                latencies.append(now - sent)
        at = now + hop.sample(rng)
        done = owner.serve(at, 0.0, rng)
        n += 1
        heapq.heappush(events, (done + hop.sample(rng), n, c, now))
    lat = np.asarray(latencies) * 1000
    return {"per_s": len(latencies) / seconds, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


# --------------------------------------------------------------------------------------------
# experiments


def inputs_from(path: Path | None, service_us: float | None, hop_us: float | None,
                ) -> tuple[dict, Dist, Dist, Dist, float, dict]:
    """(defaults, limiter service, ledger service, hop, per-request charge in s, measured)."""
    measured = json.loads(path.read_text()) if path is not None and path.exists() else {}
    d = measured.get("defaults", {})
    if service_us is not None or "ray" not in measured:
        s = (service_us or 1700.0) / 1e6
        h = (hop_us or 500.0) / 1e6
        charge = measured.get("charge_us_per_request", 55.0) / 1e6
        return d, Dist.constant(s), Dist.constant(s), Dist.constant(h), charge, measured
    runs = measured["ray"]["runs"]
    direct = measured["direct"]
    services = {}
    for owner, shell in (("limiter", "limiter shell"), ("ledger", "ledger shell")):
        # the actor's CPU per grant cycle, unloaded (one caller, one task): the mean; its shape
        # from the shell's own cycle times without Ray
        mean_s = runs[f"{owner} c1"]["actor_cpu_us_per_grant"] / 1e6
        shape = Dist([q / 1e6 for q in direct[shell]["quantiles_us"]])
        services[owner] = shape.shifted(mean_s)
    # one way: half of an unloaded grant's latency less its service
    c1 = runs["limiter c1"]["latency_quantiles_ms"]
    hop = Dist([max(0.0, (q / 1000 - services["limiter"].mean) / 2) for q in c1])
    if hop_us is not None:
        hop = Dist.constant(hop_us / 1e6)
    return d, services["limiter"], services["ledger"], hop, \
        measured.get("charge_us_per_request", 0.0) / 1e6, measured


#: A load is "served" when at least this share is admitted within the window and the mean wait
#: for a grant stays below ``SERVED_WAIT_MS``.
SERVED_SHARE, SERVED_WAIT_MS = 0.98, 10.0


def saturation(kind: str, loads: list[float], **kw) -> tuple[list[dict], float, float]:
    """Throughput at each offered load; the highest load served (admitted, short waits); the
    capacity (the most admitted per second, reached under overload)."""
    rows = []
    served = 0.0
    for load in loads:
        r = simulate(kind, offered=load, **kw)
        rows.append(r)
        if r["admitted_share"] >= SERVED_SHARE and r["mean_wait_ms"] <= SERVED_WAIT_MS:
            served = max(served, load)
    return rows, served, max(r["throughput_per_s"] for r in rows)


def main() -> None:
    from _common import fmt, machine_line, markdown_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measured", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "control_plane.json")
    parser.add_argument("--service-us", type=float, default=None,
                        help="constant service time per grant cycle (overrides the measured)")
    parser.add_argument("--hop-us", type=float, default=None, help="constant one-way hop")
    parser.add_argument("--seconds", type=float, default=15.0, help="simulated window")
    parser.add_argument("--routers", type=int, default=16, help="routers (default 16: 8 nodes x 2)")
    parser.add_argument("--keys", type=int, default=8, help="spend keys (agent types) (default 8)")
    args = parser.parse_args()
    d, s_lim, s_led, hop, charge_s, measured = inputs_from(args.measured, args.service_us,
                                                           args.hop_us)
    sizes = Sizes.from_defaults(d) if d else Sizes()
    print(machine_line())
    print(f"inputs: limiter service {s_lim.mean * 1e6:.0f} µs, ledger service "
          f"{s_led.mean * 1e6:.0f} µs per grant cycle, hop {hop.mean * 1e6:.0f} µs one way, "
          f"pending charge {charge_s * 1e6:.0f} µs per request; {args.routers} routers\n")
    out: dict = {"inputs": {"limiter_service_us": s_lim.mean * 1e6,
                            "ledger_service_us": s_led.mean * 1e6, "hop_us": hop.mean * 1e6,
                            "charge_us": charge_s * 1e6, "routers": args.routers,
                            "keys": args.keys, "sizes": sizes.__dict__}}

    # 1. the simulator against a measured point
    if "ray" in measured:
        rows = []
        out["validation"] = []
        for name, run in measured["ray"]["runs"].items():
            if not name.split()[-1].startswith("k"):
                continue
            owner = name.split()[0]
            service = s_lim if owner == "limiter" else s_led
            share = run["actor_cpu_share"]
            sim = closed_loop(callers=run["callers"] * run["concurrency"], service=service,
                              hop=hop, cpu_share=min(1.0, share))
            out["validation"].append({"point": name, "measured": run["per_s"], "sim": sim,
                                      "cpu_share": share, "measured_p50_ms": run["p50_ms"]})
            rows.append((name, run["callers"] * run["concurrency"], f"{share:.0%}",
                         fmt(run["per_s"]), fmt(sim["per_s"]), fmt(run["p50_ms"]),
                         fmt(sim["p50_ms"])))
        print("Simulator against control_plane.py (closed loop, the actor's measured CPU share; "
              "service from the unloaded run):\n")
        print(markdown_table(["point", "tasks", "actor CPU share", "measured grants/s",
                              "simulated grants/s", "measured p50 ms", "simulated p50 ms"],
                             rows))
        print()

    common = {"routers": args.routers, "hop": hop, "sizes": sizes, "seconds": args.seconds,
              "charge_s": 0.0}
    # 2. one limiter: default leases, and bigger ones
    out["limiter"] = {}
    lim_rows = []
    x_lim = 1 / s_lim.mean
    for multiple in (1, 4, 16):
        top = x_lim * sizes.lease_base(multiple) * sizes.lease_growth_max
        loads = [top * f for f in (0.05, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2)]
        rows, best, cap = saturation("lease", loads, service=s_lim, lease_multiple=multiple,
                                     **common)
        out["limiter"][f"x{multiple}"] = {"rows": rows, "served_per_s": best, "capacity_per_s": cap}
        for r in rows:
            lim_rows.append((f"x{multiple}", fmt(r["offered_per_s"]), fmt(r["throughput_per_s"]),
                             f"{r['admitted_share']:.0%}", fmt(r["grants_per_s"]),
                             f"{r['owner_utilisation']:.0%}", fmt(r["mean_wait_ms"]),
                             fmt(r["held_unused_mean"]),
                             f"{r['held_unused_mean'] / (r['offered_per_s'] * 60):.2%}"))
    print(f"One RateLimiter (one model), {args.routers} routers; lease base x1 = "
          f"{sizes.lease_base()} requests, growing x2 per fast refill up to x"
          f"{sizes.lease_growth_max}:\n")
    print(markdown_table(["lease base", "offered req/s", "admitted req/s", "admitted share",
                          "grants/s", "limiter busy", "mean wait ms",
                          "requests leased, unused (mean)", "of a minute's requests"], lim_rows))
    print(f"\nserved (>= {SERVED_SHARE:.0%} admitted, mean wait <= {SERVED_WAIT_MS:g} ms) / "
          "capacity (most admitted, under overload): " + ", ".join(
              f"x{m}: {fmt(out['limiter'][f'x{m}']['served_per_s'])} / "
              f"{fmt(out['limiter'][f'x{m}']['capacity_per_s'])} req/s" for m in (1, 4, 16)))

    # 2b. the same load spread over more routers: fewer requests per router per second, so
    # leases grow less (a router refilling slower than once a second stays at the base size)
    out["limiter_routers"] = []
    spread_rows = []
    for load in (2_000.0, 10_000.0):
        for n in (16, 128, 1024):
            variants = [("ask", 1), ("grant", 1)] + ([("grant", 4), ("grant", 16)] if n >= 1024 else [])
            for growth_from, multiple in variants:
                r = simulate("lease", offered=load, service=s_lim, growth_from=growth_from,
                             lease_multiple=multiple,
                             **dict(common, routers=n, seconds=min(args.seconds, 10.0)))
                out["limiter_routers"].append({"routers": n, "growth_from": growth_from,
                                               "lease_multiple": multiple, **r})
                spread_rows.append((fmt(load), n, fmt(load / n), f"x{multiple}", growth_from,
                                    fmt(r["throughput_per_s"]), fmt(r["grants_per_s"]),
                                    fmt(r["throughput_per_s"] / max(r["grants_per_s"], 1e-9), 1),
                                    f"{r['owner_utilisation']:.0%}", fmt(r["mean_wait_ms"])))
    print("\nOne RateLimiter, the same load over more routers (lease base x1 = the default; "
          "growth counted from the previous ask, as now, or from the previous grant's "
          "arrival):\n")
    print(markdown_table(["offered req/s", "routers", "req/s per router", "lease base",
                          "growth from",
                          "admitted req/s", "grants/s", "requests per grant", "limiter busy",
                          "mean wait ms"], spread_rows))

    # 3. the ledger: one, and sharded by scope
    out["ledger"] = {}
    led_rows = []
    common_l = dict(common, charge_s=charge_s, keys=args.keys)
    for shards in (1, 2, 4):
        per_req = 1 / (1 / (s_led.mean) * sizes.slice_calls_max) + charge_s
        top = shards / per_req
        loads = [top * f for f in (0.05, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2)]
        rows, best, cap = saturation("slice", loads, service=s_led, owners=shards, **common_l)
        out["ledger"][f"K{shards}"] = {"rows": rows, "served_per_s": best, "capacity_per_s": cap}
        for r in rows:
            led_rows.append((shards, fmt(r["offered_per_s"]), fmt(r["throughput_per_s"]),
                             f"{r['admitted_share']:.0%}", fmt(r["grants_per_s"]),
                             f"{r['owner_utilisation']:.0%}", fmt(r["mean_wait_ms"]),
                             fmt(r["held_unused_mean"])))
    print(f"\nThe CostLedger, {args.keys} spend keys spread over K ledgers (by scope key), "
          f"{args.routers} routers; a slice is {sizes.slice_calls} worst-case calls growing to "
          f"{sizes.slice_calls_max}; every request adds its pending charge at the ledger:\n")
    print(markdown_table(["K ledgers", "offered req/s", "admitted req/s", "admitted share",
                          "grants/s", "busiest ledger", "mean wait ms",
                          "calls sliced, unused (mean)"], led_rows))
    print("\nserved / capacity: " + ", ".join(
        f"K={k}: {fmt(out['ledger'][f'K{k}']['served_per_s'])} / "
        f"{fmt(out['ledger'][f'K{k}']['capacity_per_s'])} req/s" for k in (1, 2, 4)))

    # 4. exactness: with a binding RPM and a binding budget, admitted never passes the limit
    rpm = 6000
    ex_l = simulate("lease", offered=rpm / 60 * 3, service=s_lim, lease_multiple=16,
                    limit=rpm, **dict(common, seconds=120.0))
    ex_b = simulate("slice", offered=2000, service=s_led, limit=5000, owners=2,
                    **dict(common_l, seconds=30.0, warmup_s=0.0))
    out["exactness"] = {"lease": ex_l, "slice": ex_b}
    print(f"\nexactness, leases x16 at 3x an RPM of {rpm}: at most {ex_l['max_window_admitted']:,} "
          f"admitted in any {sizes.window_s:g} s (limit {rpm:,}; the limiter counted at most "
          f"{ex_l['max_counted_at_limiter']:,}); a budget of 5,000 worst-case calls per spend key "
          f"({args.keys} keys over 2 ledgers) at 2,000 req/s for 30 s: at most "
          f"{ex_b['max_key_spent_and_held']:,} spent + held on one key, {ex_b['refused']:,} "
          "requests refused")
    print(f"wrote {write_json('capacity_sim', out)}")


if __name__ == "__main__":
    main()
