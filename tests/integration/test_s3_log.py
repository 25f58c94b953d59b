"""The event log on S3-compatible object storage, over the wire: an S3 server (moto) on loopback,
pyarrow's S3 filesystem configured from the AWS_* variables only. Appends, compaction (killed
with SIGKILL mid-way: readers never see a duplicate or a gap), DuckDB views without any extension,
``amm query`` / ``report`` / ``compact`` / ``tune`` / ``replay`` / ``status``, the sink's ingestion
from a local spool, the ledger's spend, quarantine, and no secret in any message."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.fs as pafs
import pytest
from typer.testing import CliRunner

from api_model_management._clock import ManualClock
from api_model_management.budget import LogSpend
from api_model_management.cli import app
from api_model_management.config import EventSettings
from api_model_management.events import (
    AttemptFailed,
    CandidateScore,
    FeedbackRecorded,
    ModelSelected,
    RequestCompleted,
)
from api_model_management.events._compact import CompactionInProgress, compact
from api_model_management.events._ingest import SpoolIngestor, read_all_events
from api_model_management.events._lease import StoreLease
from api_model_management.events._log import EventLog
from api_model_management.events._spool import SpoolWriter
from api_model_management.projections import open_projections
from api_model_management.projections._duckdb import connect
from api_model_management.replay._decisions import load_decisions

pytestmark = pytest.mark.integration

BUCKET = "amm-test"
KEY, SECRET = "AKIDLOOPBACKTEST", "loopback-secret-4f9c2e7a"
DAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on 127.0.0.1 (moto), with one bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request lines on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        admin = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, scheme="http",
                                  endpoint_override=f"{host}:{port}", region="us-east-1",
                                  allow_bucket_creation=True)
        admin.create_dir(BUCKET)
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def uri(s3_env) -> str:
    """A fresh log: its own prefix in the bucket."""
    return f"s3://{BUCKET}/logs/{uuid.uuid4().hex[:12]}"


def completed(i: int, at: datetime = DAY, cost: str = "0.000123456789", **kw) -> RequestCompleted:
    return RequestCompleted(occurred_at=at, latency_ms=float(i), model_id="m-a", provider="openai",
                            agent_type="qa", cost_usd=Decimal(cost), **kw)


def failed(at: datetime = DAY) -> AttemptFailed:
    return AttemptFailed(occurred_at=at, attempt=1, error_kind="timeout", transient=True)


def keys(log: EventLog) -> list[str]:
    return sorted(p for p, _, _ in log.storage.list_tree(log.storage.root))


def seed(log: EventLog, files: int = 6) -> Counter:
    """``files`` small files in each of two partitions of RequestCompleted, one AttemptFailed."""
    events = []
    for i in range(files):
        batch = [completed(i), completed(i, at=DAY + timedelta(days=1))]
        log.append(batch)
        events.extend(batch)
    log.append([failed()])
    return Counter(e.event_id for e in [*events, *log.read("AttemptFailed")])


def view_ids(log: EventLog) -> Counter:
    con = connect(EventLog(log.storage.uri))
    return Counter(r[0] for r in con.execute("SELECT event_id FROM events").fetchall())


# ------------------------------------------------------------------------------------------------
# writing and reading


def test_appends_land_hive_partitioned_with_no_temporary_objects(uri):
    log = EventLog(uri)
    events = [completed(1), completed(2, at=DAY + timedelta(days=1)), failed()]
    written = log.append(events)
    assert len(written) == 3
    names = keys(log)
    assert all(k.startswith("events/event_type=") and "/date=" in k for k in names)
    assert not [k for k in names if ".tmp-" in k or k.endswith(".partial")]
    assert sorted(e.event_id for e in EventLog(uri).read()) == sorted(e.event_id for e in events)
    stem = "01900000-0000-7000-8000-000000000000-seg-1"
    first = log.append([completed(3)], file_stem=stem)
    assert log.append([completed(3)], file_stem=stem) == first  # a re-ingested segment: replaced
    assert len(EventLog(uri).read("RequestCompleted")) == 3


def test_duckdb_reads_the_store_through_pyarrow_without_extensions(uri):
    log = EventLog(uri)
    log.append([completed(i) for i in range(5)] + [failed()])
    con = connect(EventLog(uri))
    assert con.execute("SELECT count(*), sum(cost_usd), typeof(sum(cost_usd)), min(date) "
                       "FROM request_completed").fetchone() == \
        (5, Decimal("0.000617283945"), "DECIMAL(38,12)", DAY.date())
    assert con.execute("SELECT count(*) FROM events").fetchone() == (6,)
    assert con.execute("SELECT count(*) FROM request_failed").fetchone() == (0,)  # empty views
    loaded = {r[0] for r in con.execute(
        "SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    assert "httpfs" not in loaded and "aws" not in loaded
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)


def test_projections_and_report_over_the_store(uri):
    EventLog(uri).append([completed(i, cost="0.01") for i in range(4)] + [failed()])
    with open_projections(uri) as p:
        [row] = p.cost_by_model_day()
        assert row["model_id"] == "m-a" and row["cost_usd"] == Decimal("0.04")
        assert p.report().requests == 4


# ------------------------------------------------------------------------------------------------
# compaction


def test_compaction_merges_and_is_idempotent(uri):
    log = EventLog(uri)
    expected = seed(log)
    stats = compact(log, min_files=2)
    assert (stats.partitions_compacted, stats.files_merged, stats.files_written) == (2, 12, 2)
    assert Counter(e.event_id for e in EventLog(uri).read()) == expected == view_ids(log)
    assert len(list(EventLog(uri).iter_files())) == 3
    assert compact(log, min_files=2).partitions_compacted == 0
    assert not [k for k in keys(log) if k.startswith("locks/") and k.endswith(".lease")]


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from api_model_management.events._compact import compact
    from api_model_management.events._log import EventLog
    seen = []
    def hook(step):
        seen.append(step)
        if len(seen) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
    grace = None if sys.argv[3] == "default" else float(sys.argv[3])
    compact(EventLog(sys.argv[1]), min_files=2, retire_grace_s=grace, _on_step=hook)
""")


def _kill_compaction_at(uri: str, step: int, grace: str) -> None:
    done = subprocess.run([sys.executable, "-c", _KILLER, uri, str(step), grace],
                          env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.mark.parametrize(("merged_first", "step"), [
    (False, 1),  # before the first partition's merged file is published
    (False, 2),  # the first partition published, the second not
    (True, 1),   # retiring replaced files: before the first delete
    (True, 7),   # retiring: the first partition's six gone, the second's not
])
def test_compaction_killed_mid_way_never_shows_a_duplicate_or_a_gap(uri, merged_first, step):
    """A compacting process killed with SIGKILL at its n-th change to the store: every reader
    sees each event once, and the next compaction (at once: the dead holder's lease is taken
    over) finishes the job. ``merged_first``: the merged files are published already (inputs
    kept for their grace period) and the killed run is the one retiring the inputs."""
    log = EventLog(uri)
    expected = seed(log)
    if merged_first:
        assert compact(EventLog(uri), min_files=2).files_written == 2
    _kill_compaction_at(uri, step, "0" if merged_first else "default")
    assert [k for k in keys(log) if k.startswith("locks/compact/")]  # the dead holder's lease
    assert Counter(e.event_id for e in EventLog(uri).read()) == expected
    assert view_ids(log) == expected
    compact(EventLog(uri), min_files=2, retire_grace_s=0)
    assert Counter(e.event_id for e in EventLog(uri).read()) == expected == view_ids(log)
    assert len(list(EventLog(uri).iter_files())) == 3
    assert len([k for k in keys(log) if k.endswith(".parquet")]) == 3  # nothing replaced is left


def test_readers_during_a_compaction_see_every_event_once(uri):
    log = EventLog(uri)
    expected = seed(log)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            compact(EventLog(uri), min_files=2)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    reads = 0
    while thread.is_alive() or reads < 2:
        assert Counter(e.event_id for e in EventLog(uri).read()) == expected
        assert view_ids(log) == expected
        reads += 1
    thread.join()
    assert errors == [] and len(list(EventLog(uri).iter_files())) == 3


def test_one_compaction_at_a_time_on_the_store(uri):
    log = EventLog(uri)
    seed(log, files=2)
    holder = StoreLease(log.storage, "compact")
    assert holder.acquire()
    try:
        with pytest.raises(CompactionInProgress):
            compact(EventLog(uri), min_files=2)
        result = CliRunner().invoke(app, ["compact", "--data-dir", uri])
        assert result.exit_code == 1 and "another compaction" in result.stderr
    finally:
        holder.release()
    assert compact(EventLog(uri), min_files=2).partitions_compacted == 2


# ------------------------------------------------------------------------------------------------
# the commands


def _decision_log(uri: str, n: int = 60) -> None:
    """``n`` decisions between a cheap and a strong model, chosen uniformly (propensity 0.5),
    with their outcomes and a user's feedback."""
    rng = random.Random(3)
    events = []
    for i in range(n):
        chosen = rng.choice(["cheap", "strong"])
        cands = [CandidateScore(model_id=m, score=s, capability=1.0, cost=c, performance=p,
                                availability=1.0)
                 for m, s, c, p in (("cheap", 0.7, 1.0, 0.5), ("strong", 0.6, 0.0, 0.8))]
        cands.sort(key=lambda c: c.model_id != chosen)
        rid = f"r{i}"
        events += [
            ModelSelected(occurred_at=DAY, request_id=rid, agent_type="qa", model_id=chosen,
                          candidates=tuple(cands), propensity=0.5, explored=True),
            completed(i, request_id=rid, cost="0.01" if chosen == "strong" else "0.001"),
            FeedbackRecorded(occurred_at=DAY, request_id=rid, source="user",
                             score=0.9 if chosen == "strong" else 0.4),
        ]
    EventLog(uri).append(events)


def test_amm_query_report_status_tune_and_replay_read_the_store(uri, tmp_path):
    _decision_log(uri)
    runner = CliRunner()
    result = runner.invoke(app, ["query", "SELECT count(*) AS n, sum(cost_usd) AS usd "
                                 "FROM request_completed", "--data-dir", uri, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["n"] == 60 and Decimal(row["usd"]) > 0
    result = runner.invoke(app, ["report", "--data-dir", uri, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["requests"] == 60
    result = runner.invoke(app, ["status", "--data-dir", uri, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "tuned.json"
    result = runner.invoke(app, ["tune", "--out", str(out), "--data-dir", uri,
                                 "--grid-step", "0.5", "--samples", "5"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text())["provenance"]["data_dir"] == uri
    result = runner.invoke(app, ["replay", "--weights", str(out), "--data-dir", uri,
                                 "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n_decisions"] == 60
    assert len(load_decisions(uri)) == 60


def _one_error_line(result) -> str:
    assert result.exit_code in (1, 2), result.output
    assert result.stderr.startswith("error:") and result.stderr.strip().count("\n") == 0, result.stderr
    assert SECRET not in result.output + result.stderr and KEY not in result.stderr
    return result.stderr


def test_no_log_a_missing_bucket_or_no_server_is_one_line_without_secrets(uri, monkeypatch):
    """(moto accepts any signature, so a wrong secret is not tested here: only that the right one
    is never shown.)"""
    runner = CliRunner()
    for command in (["query", "SELECT 1"], ["report"], ["compact"]):
        assert "no event log at" in _one_error_line(runner.invoke(app, [*command, "--data-dir", uri]))
        result = runner.invoke(app, [*command, "--data-dir", "s3://no-such-bucket/x"])
        assert "no event log at s3://no-such-bucket/x" in _one_error_line(result)
    result = runner.invoke(app, ["query", "SELECT 1", "--data-dir", "s3://AKID:hunter2@b/x"])
    assert "hunter2" not in _one_error_line(result)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    for command in (["query", "SELECT 1"], ["report"], ["compact"]):
        line = _one_error_line(runner.invoke(app, [*command, "--data-dir", uri]))
        assert "cannot read the event log" in line


# ------------------------------------------------------------------------------------------------
# the sink, the ledger, quarantine


def test_the_sink_ingests_a_local_spool_into_the_store(uri, tmp_path):
    settings = EventSettings(spool_dir=str(tmp_path / "spool"), fsync="never")
    writer = SpoolWriter(uri, "router-0-1", spool_dir=settings.spool_dir, segment_max_bytes=1)
    events = [completed(i) for i in range(10)]
    for event in events:
        writer.write([event])  # one segment per write: closed as soon as written
    pending = read_all_events(uri, spool_dir=settings.spool_dir)
    assert {e.event_id for e in pending} == {e.event_id for e in events}  # from the spool alone
    ingestor = SpoolIngestor(uri, settings)
    assert ingestor.ingest() >= 9
    writer.close()
    ingestor.ingest()
    log = EventLog(uri)
    assert Counter(e.event_id for e in log.read()) == Counter(e.event_id for e in events)
    assert not list((tmp_path / "spool").glob("*/*.wal"))
    assert ingestor.compact()["files_written"] == 1
    assert Counter(e.event_id for e in EventLog(uri).read()) == Counter(e.event_id for e in events)


def test_the_ledgers_spend_follows_the_store_exactly_through_compaction(uri):
    log = EventLog(uri)
    for i in range(5):
        log.append([completed(i, at=datetime.now(UTC), cost="0.25")])
    spend = LogSpend(EventLog(uri), ManualClock(datetime.now(UTC)))
    start = spend.start()
    assert sum(a for *_, a in start.added) == Decimal("1.25") and start.files_read == 5
    compact(EventLog(uri), min_files=2)
    delta = spend.poll()
    assert delta.added == delta.removed == [] and delta.files_read == 0  # merged: known inputs


def test_an_unreadable_object_is_quarantined_and_alerted(uri):
    log = EventLog(uri)
    log.append([completed(1)])
    bad = f"{log.partition_dir('RequestCompleted', DAY.date().isoformat())}/01900000-0000-7000-8000-00000000000b-1.parquet"
    log.storage.write_new(bad, b"not parquet at all", fsync=False)
    reader = EventLog(uri)
    assert len(reader.read("RequestCompleted")) == 1
    [record] = reader.quarantined
    assert record.moved_to is not None and "/quarantine/RequestCompleted/" in record.moved_to
    assert not reader.storage.exists(bad)
    alerts = EventLog(uri).read("PerformanceAlert")
    assert [a.kind for a in alerts] == ["log_file_quarantined"]


def test_no_secret_in_log_records(uri, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="api_model_management")  # whatever an entry point set
    log = EventLog(uri)
    seed(log, files=2)
    compact(log, min_files=2)
    connect(EventLog(uri)).execute("SELECT count(*) FROM events").fetchall()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text and KEY not in text
