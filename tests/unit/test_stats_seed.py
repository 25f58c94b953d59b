"""Live statistics seeded from the log (``selection.seed_stats``): the newest outcomes per model,
read with bounded work, folded as ``StatsCore.from_events`` folds them; no log, an unreadable
file or a log that cannot be read leaves start-up with empty statistics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api_model_management import ModelRequest
from api_model_management.compat import FailoverManager
from api_model_management.config._load import demo_config
from api_model_management.errors import InvalidInput
from api_model_management.events import (
    AttemptFailed,
    Event,
    EventLog,
    HealthChanged,
    PerformanceAlert,
    RequestCompleted,
    RequestFailed,
    ResponseEvaluated,
)
from api_model_management.events._compact import compact
from api_model_management.events._log import QUARANTINE_ALERT
from api_model_management.routing import ListEvents, build_local_router
from api_model_management.selection import (
    SEED_MAX_DAYS,
    SEED_OUTCOMES_PER_MODEL,
    StatsCore,
    recent_outcomes,
    seed_stats,
)

from _fakes import GOOD_PROMPT, fake_adapters

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
A, B = "gpt-4.1", "gpt-4.1-mini"


def done(model: str, i: int, latency_ms: float = 400.0, **kw) -> RequestCompleted:
    return RequestCompleted(request_id=f"{model}-{i}", model_id=model, provider="openai",
                            latency_ms=latency_ms, occurred_at=T0 + timedelta(seconds=i), **kw)


def failed(model: str, i: int, kind: str = "timeout") -> AttemptFailed:
    return AttemptFailed(request_id=f"{model}-{i}", model_id=model, provider="openai",
                         attempt=1, error_kind=kind, transient=True, latency_ms=30_000.0,
                         occurred_at=T0 + timedelta(seconds=i))


def scored(model: str, i: int, quality: float) -> ResponseEvaluated:
    return ResponseEvaluated(request_id=f"{model}-{i}", model_id=model, completeness=quality,
                             relevance=quality, coherence=quality, quality_score=quality,
                             low_quality=False, occurred_at=T0 + timedelta(seconds=i, microseconds=1))


def write(root: Path, events: list[Event], batch: int = 25) -> EventLog:
    log = EventLog(root)
    for start in range(0, len(events), batch):
        log.append(events[start:start + batch])
    return log


def a_fails_b_succeeds(n: int = 60) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        out.append(failed(A, 2 * i) if i % 3 else done(A, 2 * i, 900.0))
        out.append(done(B, 2 * i + 1, 300.0))
        out.append(scored(B, 2 * i + 1, 0.8))
    return out


def test_no_log_gives_empty_statistics(tmp_path):
    assert seed_stats(tmp_path / "absent", [A, B]).snapshot() == {}
    write(tmp_path, [HealthChanged(provider="openai", from_state="unknown", to_state="healthy")])
    assert seed_stats(tmp_path, [A, B]).snapshot() == {}


def test_a_short_log_is_folded_whole_as_from_events(tmp_path):
    history = a_fails_b_succeeds()
    write(tmp_path, history)
    seeded = seed_stats(tmp_path, [A, B]).snapshot()
    assert seeded == StatsCore.from_events(history).snapshot()
    assert seeded[A].success_rate < seeded[B].success_rate
    assert seeded[B].quality == pytest.approx(0.8)


def test_only_the_newest_outcomes_per_model_are_read(tmp_path):
    n = 3 * SEED_OUTCOMES_PER_MODEL
    older = [failed(A, i) for i in range(n)]  # a bad past, then a good present
    newer = [done(A, n + i, 250.0) for i in range(SEED_OUTCOMES_PER_MODEL)]
    write(tmp_path, older + newer, batch=100)
    got = recent_outcomes(EventLog(tmp_path), [A])
    assert got == newer
    stats = seed_stats(tmp_path, [A]).snapshot()[A]
    assert (stats.count, stats.failures, stats.success_rate) == (SEED_OUTCOMES_PER_MODEL, 0, 1.0)


def test_a_model_that_mostly_fails_keeps_as_many_latencies(tmp_path):
    history = [done(A, i, 100.0 + i) for i in range(10)]
    history += [failed(A, 10 + i) for i in range(20)]
    write(tmp_path, history)
    got = recent_outcomes(EventLog(tmp_path), [A], per_model=5)
    assert got == history[5:10] + history[-5:]  # the 5 newest successes and the 5 newest outcomes


def test_cache_hits_and_request_faults_neither_count_nor_use_up_the_bound(tmp_path):
    kept: list[Event] = [done(A, 0), failed(A, 1)]
    kept.append(RequestFailed(request_id="lost", model_id=A, error_kind="lost", attempts=1,
                              occurred_at=T0 + timedelta(seconds=2)))
    neutral = [done(A, 3 + i, cache_hit=True) for i in range(5)]
    neutral += [failed(A, 10 + i, kind="invalid_request") for i in range(5)]
    neutral += [RequestFailed(request_id=f"r{i}", model_id=A, error_kind="budget_exceeded",
                              attempts=0, occurred_at=T0 + timedelta(seconds=20 + i))
                for i in range(5)]
    write(tmp_path, kept + neutral)
    got = recent_outcomes(EventLog(tmp_path), [A], per_model=3)
    assert got == kept + neutral[-8:-5]  # and the newest attempts the request failed: neutral
    assert seed_stats(tmp_path, [A], per_model=3).snapshot() == \
        StatsCore.from_events(kept).snapshot()


def test_other_models_are_not_read(tmp_path):
    write(tmp_path, a_fails_b_succeeds(5))
    assert set(seed_stats(tmp_path, [B]).snapshot()) == {B}
    assert recent_outcomes(EventLog(tmp_path), []) == []


def test_dates_are_walked_back_until_every_model_has_enough(tmp_path):
    day = timedelta(days=1)
    old = done(B, 0).model_copy(update={"occurred_at": T0 - 3 * day})
    recent = [done(A, i) for i in range(3)] + [done(B, 5)]
    write(tmp_path, [old, *recent])
    log = EventLog(tmp_path)
    assert recent_outcomes(log, [A], per_model=3) == recent[:3]  # A is full on the newest date
    assert recent_outcomes(log, [A, B], per_model=2) == [old, *recent[1:]]  # B needs the old one
    assert recent_outcomes(log, [A, B], per_model=2, max_days=3) == recent[1:]  # too old


def test_at_most_max_days_are_walked(tmp_path):
    history = [done(A, 0).model_copy(update={"occurred_at": T0 - timedelta(days=d)})
               for d in range(SEED_MAX_DAYS + 3)]
    write(tmp_path, history, batch=1)
    assert len(recent_outcomes(EventLog(tmp_path), [A])) == SEED_MAX_DAYS


def test_files_older_than_what_is_kept_are_not_read(tmp_path, monkeypatch):
    history = [done(A, i) for i in range(100)]
    log = write(tmp_path, history, batch=10)  # ten files, oldest to newest
    read: list[str] = []
    real = log.read_file
    monkeypatch.setattr(log, "read_file", lambda f, *a, **kw: read.append(f.name) or real(f))
    assert recent_outcomes(log, [A], per_model=15) == history[-15:]
    assert len(read) == 2  # the newest two files hold the 15 newest; the footers say the rest are older


def test_ties_in_time_are_ordered_by_event_id_as_the_log_reads(tmp_path):
    same = [done(A, 0).model_copy(update={"event_id": f"0000000{i}", "request_id": f"t{i}"})
            for i in (3, 1, 2)]
    write(tmp_path, same, batch=1)
    assert recent_outcomes(EventLog(tmp_path), [A]) == EventLog(tmp_path).read("RequestCompleted")


def test_a_compacted_log_seeds_the_same(tmp_path):
    history = a_fails_b_succeeds()
    log = write(tmp_path, history, batch=7)
    before = seed_stats(tmp_path, [A, B], per_model=20).snapshot()
    assert compact(log, min_files=2).partitions_compacted > 0
    assert seed_stats(tmp_path, [A, B], per_model=20).snapshot() == before


def test_an_unreadable_file_is_quarantined_and_the_rest_read(tmp_path, caplog):
    history = a_fails_b_succeeds(10)
    log = write(tmp_path, history)
    directory = Path(log.partition_dir("RequestCompleted", T0.date().isoformat()))
    (directory / "0190aaaa-bad.parquet").write_bytes(b"not parquet at all")
    alerts: list[Event] = []
    with caplog.at_level(logging.WARNING):
        seeded = seed_stats(tmp_path, [A, B], alerts=alerts.extend).snapshot()
    assert seeded == StatsCore.from_events(history).snapshot()
    assert [a.kind for a in alerts if isinstance(a, PerformanceAlert)] == [QUARANTINE_ALERT]
    assert (tmp_path / "quarantine" / "RequestCompleted").is_dir()


def test_a_log_that_cannot_be_read_gives_empty_statistics_and_a_warning(tmp_path, caplog,
                                                                        monkeypatch):
    log = write(tmp_path, a_fails_b_succeeds(3))

    def refused(*args, **kwargs):
        raise PermissionError(13, "denied")

    monkeypatch.setattr(log, "partitions", refused)
    with caplog.at_level(logging.WARNING):
        assert seed_stats(log, [A]).snapshot() == {}
    assert "PermissionError" in caplog.text


def test_bounds_must_be_positive(tmp_path):
    with pytest.raises(InvalidInput):
        recent_outcomes(EventLog(tmp_path), [A], per_model=0)
    with pytest.raises(InvalidInput):
        recent_outcomes(EventLog(tmp_path), [A], max_days=0)


def _performance(selection, model_id: str) -> float:
    return next(c.performance for c in selection.candidates if c.model_id == model_id)


def test_a_local_router_starts_from_the_stats_it_is_given(tmp_path):
    write(tmp_path, a_fails_b_succeeds())
    config = demo_config()
    ids = [m.id for m in config.models]
    request = ModelRequest(prompt=GOOD_PROMPT, agent_type="research",
                           constraints={"allowed_models": [A, B]})
    cold = build_local_router(config, events=ListEvents(), adapters=fake_adapters(config))
    seeded = build_local_router(config, events=ListEvents(), adapters=fake_adapters(config),
                                stats=seed_stats(tmp_path, ids))
    before, after = cold.selector.select(request), seeded.selector.select(request)
    assert _performance(after, A) < _performance(before, A)
    assert _performance(after, B) > _performance(before, B)


def test_the_failover_manager_starts_from_the_log(tmp_path):
    keys = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000"}
    write(tmp_path / "seeded", a_fails_b_succeeds())
    request = ModelRequest(prompt=GOOD_PROMPT, agent_type="research",
                           constraints={"allowed_models": [A, B]})
    cold = FailoverManager(demo_config(), env=keys, data_dir=tmp_path / "empty")
    warm = FailoverManager(demo_config(), env=keys, data_dir=tmp_path / "seeded")
    before = cold.model_selector.core.select(request)
    after = warm.model_selector.core.select(request)
    assert _performance(after, A) < _performance(before, A)


def test_the_standalone_gateway_engine_starts_from_the_log(tmp_path):
    from api_model_management.config import override
    from api_model_management.gateway._engine import LocalEngine

    keys = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000"}
    request = ModelRequest(prompt=GOOD_PROMPT, agent_type="research",
                           constraints={"allowed_models": [A, B]})
    engines = {}
    for name in ("empty", "seeded"):
        config = override(demo_config(), settings={"data_dir": str(tmp_path / name)})
        if name == "seeded":
            write(tmp_path / name, a_fails_b_succeeds())
        engines[name] = LocalEngine(config, env=keys, probe=False)
    before = engines["empty"].selector.core.select(request)
    after = engines["seeded"].selector.core.select(request)
    assert _performance(after, A) < _performance(before, A)


def _calls(outcomes, model_id: str, ok: bool, error_kind: str | None, n: int = 20,
           latency_ms: float = 300.0) -> None:
    for _ in range(n):
        outcomes.outcome("openai", model_id, ok, error_kind, latency_ms)


def test_the_failover_managers_calls_move_its_selection_after_the_seed(tmp_path):
    keys = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000"}
    manager = FailoverManager(demo_config(), env=keys, data_dir=tmp_path)
    request = ModelRequest(prompt=GOOD_PROMPT, agent_type="research",
                           constraints={"allowed_models": [A, B]})
    before = manager.model_selector.core.select(request)
    _calls(manager.router.outcomes, A, False, "server_error")
    assert manager.stats.snapshot()[A].failures == 20
    manager.model_selector._stats_read_at = None  # the next sync reads (its TTL has not passed)
    manager.model_selector.sync()
    manager.model_selector.core.clear_assignment_cache()  # its TTL bounds staleness, not passed
    after = manager.model_selector.core.select(request)
    assert _performance(after, A) < _performance(before, A)


def test_a_request_at_fault_does_not_count_against_the_model_live(tmp_path):
    from api_model_management.routing._ports import BatchedOutcomes

    keys = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000"}
    manager = FailoverManager(demo_config(), env=keys, data_dir=tmp_path)
    batched = BatchedOutcomes(StatsCore(), reporter=_NoReports())
    for outcomes, stats in ((manager.router.outcomes, manager.stats), (batched, batched.stats)):
        _calls(outcomes, A, False, "invalid_request")
        assert A not in stats.snapshot()  # as the log's fold ignores it
        _calls(outcomes, A, False, "server_error", n=1)
        assert stats.snapshot()[A].failures == 1


class _NoReports:
    def report(self, provider, batch):
        return None


def test_the_standalone_gateway_engines_calls_move_its_selection(tmp_path):
    from api_model_management.config import override
    from api_model_management.gateway._engine import LocalEngine

    keys = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000"}
    config = override(demo_config(), settings={"data_dir": str(tmp_path)})
    engine = LocalEngine(config, env=keys, probe=False)
    request = ModelRequest(prompt=GOOD_PROMPT, agent_type="research",
                           constraints={"allowed_models": [A, B]})
    before = engine.selector.core.select(request)
    # slow answers (failures would open the provider's breaker: no model left to compare)
    _calls(engine.manager.router.outcomes, A, True, None, latency_ms=20_000.0)
    engine.selector._stats_read_at = None
    engine.sync()
    engine.selector.core.clear_assignment_cache()
    after = engine.selector.core.select(request)
    assert _performance(after, A) < _performance(before, A)
