"""The capacity simulator of ``benchmarks/capacity_sim.py`` (imported by path: benchmarks are not
a package). Pure Python on simulated time: no Ray, no sockets."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "capacity_sim.py"


@pytest.fixture(scope="module")
def sim():
    sys.path.insert(0, str(_PATH.parent))
    try:
        spec = importlib.util.spec_from_file_location("capacity_sim", _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["capacity_sim"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("capacity_sim", None)
        sys.path.remove(str(_PATH.parent))


def _fast(sim):
    return {"service": sim.Dist.constant(1e-7), "hop": sim.Dist.constant(0.0),
            "sizes": sim.Sizes(), "seconds": 20.0, "warmup_s": 2.0}


@pytest.mark.parametrize("kind", ["lease", "slice"])
def test_fast_owner_admits_the_offered_load(sim, kind):
    """With no hop and a near-instant owner nothing waits: throughput is the offered load (up to
    Poisson noise) and nearly every request is admitted."""
    r = sim.simulate(kind, offered=2000.0, routers=4, keys=2, **_fast(sim))
    assert r["throughput_per_s"] == pytest.approx(2000.0, rel=0.03)
    assert r["mean_wait_ms"] < 0.01


def test_slow_limiter_caps_throughput_at_grants_times_lease_size(sim):
    """A limiter serving one cycle in 10 ms grants at most 100 leases/s, each of at most
    base x growth cap requests: an offered load far above that is cut to it."""
    sizes = sim.Sizes()
    cap = 100 * sizes.lease_base() * sizes.lease_growth_max
    r = sim.simulate("lease", offered=cap * 5, routers=4, service=sim.Dist.constant(0.01),
                     hop=sim.Dist.constant(0.0), sizes=sizes, seconds=20.0)
    assert r["owner_utilisation"] > 0.95
    assert r["grants_per_s"] <= 100.5
    assert r["throughput_per_s"] <= cap * 1.001
    assert r["throughput_per_s"] > cap * 0.9


def test_sharding_the_ledger_raises_its_saturation(sim):
    """Four ledgers serve (about) four times the slice grants of one when the keys spread."""
    kw = {"routers": 8, "keys": 8, "hop": sim.Dist.constant(0.0), "sizes": sim.Sizes(),
          "seconds": 10.0, "service": sim.Dist.constant(0.005), "offered": 500_000.0}
    one = sim.simulate("slice", owners=1, **kw)
    four = sim.simulate("slice", owners=4, **kw)
    assert one["owner_utilisation"] > 0.95
    assert four["grants_per_s"] > 2.5 * one["grants_per_s"]


def test_rpm_is_never_passed_in_any_window(sim):
    """Conservation: with a binding RPM, requests admitted in any window stay within it, and the
    limiter never counts more than the limit."""
    sizes = sim.Sizes()
    r = sim.simulate("lease", offered=600.0, routers=8, service=sim.Dist.constant(0.001),
                     hop=sim.Dist.constant(0.0005), sizes=sizes, limit=3000, lease_multiple=4,
                     seconds=150.0)
    assert 0 < r["max_window_admitted"] <= 3000
    assert r["max_counted_at_limiter"] <= 3000
    assert r["throughput_per_s"] < 600 * 0.95  # the limit bound (3000/min = 50/s offered 600)


def test_budget_is_never_overspent(sim):
    """A strict budget of 1000 worst-case calls per spend key, keys on two ledgers: spent plus held
    never passes it on any key; the rest is refused."""
    r = sim.simulate("slice", offered=400.0, routers=4, keys=3, owners=2,
                     service=sim.Dist.constant(0.001), hop=sim.Dist.constant(0.0005),
                     sizes=sim.Sizes(), limit=1000, seconds=20.0, warmup_s=0.0)
    assert r["max_key_spent_and_held"] <= 1000
    assert r["spent_calls"] + r["held_calls_end"] <= 3000
    assert r["spent_calls"] > 2500  # the budgets were used, not just refused
    assert r["refused"] > 0


def test_distribution_sampling_stays_in_range_and_keeps_its_mean(sim):
    import numpy as np

    d = sim.Dist([0.001 * i for i in range(101)])
    rng = np.random.default_rng(3)
    xs = [d.sample(rng) for _ in range(20_000)]
    assert min(xs) >= 0 and max(xs) <= 0.1
    assert sum(xs) / len(xs) == pytest.approx(d.mean, rel=0.02)
    assert d.shifted(0.2).mean == pytest.approx(0.2)
    assert math.isclose(sim.Dist.constant(0.5).sample(rng), 0.5)


def test_closed_loop_follows_littles_law(sim):
    """N tasks against a server of 1 ms with no hop: saturated at 1000/s, latency about N ms."""
    r = sim.closed_loop(callers=8, service=sim.Dist.constant(0.001), hop=sim.Dist.constant(0.0),
                        seconds=5.0)
    assert r["per_s"] == pytest.approx(1000.0, rel=0.01)
    assert r["p50_ms"] == pytest.approx(8.0, rel=0.05)
