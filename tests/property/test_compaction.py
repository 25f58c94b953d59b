"""Compaction never loses or duplicates an event, whatever the interleaving and wherever it crashes."""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections import Counter

import duckdb
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from api_model_management.events._compact import compact
from api_model_management.events._log import EventLog
from api_model_management.projections._duckdb import connect

from strategies import small_event

pytestmark = pytest.mark.property


class Crash(Exception):
    """Stands for the process dying at a step."""


def crash_at(k: int):
    """A step hook that raises at the ``k``-th change (0-based) and counts the steps it saw."""
    seen = []

    def hook(step: str) -> None:
        seen.append(step)
        if len(seen) - 1 == k:
            raise Crash(step)

    hook.seen = seen
    return hook


_DUCK = duckdb.connect()  # one connection: opening one costs ~80 ms


def glob_ids(data_dir: str) -> Counter:
    """Event ids as plain DuckDB sees them (no knowledge of compaction claims)."""
    if not glob.glob(f"{data_dir}/events/*/*/*.parquet"):
        return Counter()  # DuckDB raises on a glob that matches nothing
    rows = _DUCK.sql(
        f"SELECT event_id FROM read_parquet('{data_dir}/events/*/*/*.parquet', "
        "hive_partitioning=true, union_by_name=true)"
    ).fetchall()
    return Counter(r[0] for r in rows)


def log_ids(log: EventLog) -> Counter:
    return Counter(e.event_id for e in log.read())


def seeded_log(data_dir: str) -> tuple[EventLog, Counter]:
    """Two partitions with four files each, a third with a single file."""
    from datetime import UTC, datetime

    from api_model_management.events import AttemptFailed, RequestCompleted

    log = EventLog(data_dir, fsync="never")
    day1, day2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    batches = [[RequestCompleted(occurred_at=day1, latency_ms=i), RequestCompleted(occurred_at=day2,
                latency_ms=i)] for i in range(4)]
    batches.append([AttemptFailed(occurred_at=day1, attempt=1, error_kind="timeout", transient=True)])
    for batch in batches:
        log.append(batch)
    return log, Counter(e.event_id for b in batches for e in b)


def test_crash_at_every_step_then_rerun_is_exact():
    with tempfile.TemporaryDirectory() as probe:
        log, _ = seeded_log(probe)
        counter = crash_at(-1)
        compact(log, _on_step=counter)
        total_steps = len(counter.seen)
    assert total_steps >= 10  # two merges: write, publish, 4 retires each
    for k in range(total_steps):
        with tempfile.TemporaryDirectory() as data_dir:
            log, expected = seeded_log(data_dir)
            with pytest.raises(Crash):
                compact(log, _on_step=crash_at(k))
            assert log_ids(log) == expected, f"EventLog.read after a crash at step {k}"
            assert Counter(r[0] for r in connect(log).sql("SELECT event_id FROM events")
                           .fetchall()) == expected
            compact(log)
            assert log_ids(log) == expected
            assert glob_ids(data_dir) == expected, f"plain DuckDB after re-run (crash at {k})"


def test_rerun_after_a_crash_in_recovery_is_exact():
    """A crash while recovering (deleting leftovers) is itself recovered by the next run."""
    with tempfile.TemporaryDirectory() as data_dir:
        log, expected = seeded_log(data_dir)
        with pytest.raises(Crash):
            compact(log, _on_step=crash_at(3))  # after publishing the first merge, mid-retire
        with pytest.raises(Crash):
            compact(log, _on_step=crash_at(0))  # the first recovery delete
        assert log_ids(log) == expected
        compact(log)
        assert glob_ids(data_dir) == expected


class AppendCompactMachine(RuleBasedStateMachine):
    """Any interleaving of appends, compactions and crashed compactions reads back exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="amm-compaction-")
        self.log = EventLog(self.data_dir, fsync="never")
        self.expected: Counter = Counter()
        self.crashed = False

    @rule(batch=st.lists(small_event(), min_size=1, max_size=8, unique_by=lambda e: e.event_id))
    def append(self, batch):
        self.log.append(batch)
        self.expected.update(e.event_id for e in batch)

    @rule(min_files=st.integers(2, 4))
    def compact(self, min_files):
        compact(self.log, min_files=min_files)
        self.crashed = False

    @rule(k=st.integers(0, 12))
    def crashed_compaction(self, k):
        try:
            compact(self.log, _on_step=crash_at(k))
        except Crash:
            self.crashed = True

    @precondition(lambda self: not self.crashed)
    @invariant()
    def plain_duckdb_exact_when_no_crash_pending(self):
        # with no crashed compaction pending, a plain glob reader sees exactly what was appended
        assert glob_ids(self.data_dir) == self.expected

    @invariant()
    def log_reads_exactly_what_was_appended(self):
        assert log_ids(self.log) == self.expected

    def teardown(self) -> None:
        try:
            compact(self.log)
            assert log_ids(self.log) == self.expected
            assert glob_ids(self.data_dir) == self.expected
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


AppendCompactMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_append_compact_machine = AppendCompactMachine.TestCase
