"""Where the log lives: data_dir forms (paths, file://, s3://, other pyarrow URIs), the S3
filesystem built from the AWS_* variables, the local directories beside a remote log, the
object-store write path (no temp, no rename) and the compaction lease. No server here: the
object-store path runs on pyarrow's in-memory filesystem with uploads marked atomic; the S3 wire
itself is in tests/integration/test_s3_log.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from api_model_management.config import EventSettings, Settings
from api_model_management.errors import InvalidInput
from api_model_management.events import AttemptFailed, RequestCompleted
from api_model_management.events._compact import CompactionInProgress, compact
from api_model_management.events._lease import LeaseLost, StoreLease, holding
from api_model_management.events._local import spool_dir, spool_root, state_dir
from api_model_management.events._log import EventLog
from api_model_management.events._spool import SpoolWriter
from api_model_management.events._storage import (
    Storage,
    display_uri,
    is_remote,
    local_default_dir,
    local_path,
    open_filesystem,
    s3_filesystem,
    uri_scheme,
)
from api_model_management.projections._duckdb import connect

pytestmark = pytest.mark.unit

DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-never-shown",
       "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}


def completed(i: int = 0) -> RequestCompleted:
    return RequestCompleted(occurred_at=DAY, latency_ms=float(i), model_id="m",
                            cost_usd=Decimal("0.000123456789"))


# ------------------------------------------------------------------------------------------------
# data_dir forms


@pytest.mark.parametrize(("text", "scheme", "remote", "local"), [
    ("data", None, False, Path("data")),
    ("/srv/amm", None, False, Path("/srv/amm")),
    ("file:///srv/amm", "file", False, Path("/srv/amm")),
    ("s3://bucket/logs/prod", "s3", True, None),
    ("S3://bucket/x", "s3", True, None),
    ("mock:///amm", "mock", True, None),
])
def test_data_dir_forms(text, scheme, remote, local):
    assert uri_scheme(text) == scheme
    assert is_remote(text) is remote
    assert local_path(text) == local


def test_display_uri_drops_credentials_and_options():
    assert display_uri("s3://AKID:secret@bucket/p?secret_key=x") == "s3://bucket/p"
    assert display_uri("/srv/amm") == "/srv/amm"
    assert display_uri("file:///srv/amm") == "file:///srv/amm"


@pytest.mark.parametrize("uri", ["s3://AKID:hunter2-secret@bucket/p", "s3://bucket/p?secret_key=hunter2-secret",
                                 "gs://bucket/p?access_key=hunter2-secret"])
def test_a_uri_with_credentials_is_refused_without_echoing_them(uri):
    with pytest.raises(InvalidInput) as info:
        open_filesystem(uri, env={})
    assert "hunter2" not in str(info.value) and "AWS_ACCESS_KEY_ID" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("uri", "problem"), [
    ("s3:///prefix-only", "names no bucket"),
    ("s3://bucket/p?region=eu-west-1", "environment variables"),
    ("nosuchscheme://x/y", "cannot open data_dir"),
])
def test_bad_uris_are_one_line(uri, problem):
    with pytest.raises(InvalidInput) as info:
        open_filesystem(uri, env=ENV)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_local_forms_open_the_local_filesystem(tmp_path):
    fs, root = open_filesystem(f"file://{tmp_path}")
    assert isinstance(fs, pafs.LocalFileSystem) and root == str(tmp_path)
    fs, root = open_filesystem("relative-dir")
    assert root == str(Path("relative-dir").absolute())


def test_s3_uri_opens_s3_with_the_bucket_and_prefix_as_root():
    fs, root = open_filesystem("s3://bucket/logs/prod/", env=ENV)
    assert isinstance(fs, pafs.S3FileSystem) and root == "bucket/logs/prod"
    _, root = open_filesystem("s3://bucket", env=ENV)
    assert root == "bucket"


def _options(fs: pafs.S3FileSystem) -> dict:
    return fs.__reduce__()[1][0]


def test_s3_filesystem_from_the_standard_variables():
    options = _options(s3_filesystem({**ENV, "AWS_SESSION_TOKEN": "tok"}))
    assert (options["access_key"], options["secret_key"], options["session_token"]) == \
        ("AKIDEXAMPLE", "s3cr3t-value-never-shown", "tok")
    assert (options["endpoint_override"], options["scheme"], options["region"]) == \
        ("127.0.0.1:9000", "http", "us-east-1")  # an endpoint without a region: no lookup
    assert options["connect_timeout"] > 0 and options["request_timeout"] > 0
    options = _options(s3_filesystem({**ENV, "AWS_ENDPOINT_URL_S3": "https://minio.internal:9443",
                                      "AWS_REGION": "eu-west-1"}))
    assert (options["endpoint_override"], options["scheme"], options["region"]) == \
        ("minio.internal:9443", "https", "eu-west-1")
    options = _options(s3_filesystem({"AWS_DEFAULT_REGION": "ap-south-1"}))
    assert not options["access_key"] and options["region"] == "ap-south-1"  # the AWS chain


@pytest.mark.parametrize(("env", "problem"), [
    ({"AWS_ACCESS_KEY_ID": "AKID"}, "AWS_SECRET_ACCESS_KEY is not set"),
    ({"AWS_SECRET_ACCESS_KEY": "s3cr3t-value-never-shown"}, "AWS_ACCESS_KEY_ID is not set"),
    ({**ENV, "AWS_ENDPOINT_URL": "ftp://127.0.0.1:21"}, "AWS_ENDPOINT_URL must be"),
    ({**ENV, "AWS_ENDPOINT_URL": "http://user:pw@127.0.0.1:9"}, "AWS_ENDPOINT_URL must be"),
])
def test_bad_s3_variables_are_one_line_without_secrets(env, problem):
    with pytest.raises(InvalidInput) as info:
        s3_filesystem(env)
    assert problem in str(info.value) and "s3cr3t" not in str(info.value) and "pw" not in str(info.value)


def test_settings_refuse_a_data_dir_with_credentials_and_a_remote_spool():
    with pytest.raises(ValueError) as info:
        Settings(data_dir="s3://AKID:hunter2-secret@bucket/p")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError):
        EventSettings(spool_dir="s3://bucket/spool")
    assert Settings(data_dir="s3://bucket/p").data_dir == "s3://bucket/p"


def test_storage_names_its_log_without_credentials(tmp_path):
    assert Storage(tmp_path).uri == str(tmp_path)
    storage = Storage("mock:///amm")
    assert not storage.local and not storage.atomic_upload and storage.uri == "mock:///amm"


# ------------------------------------------------------------------------------------------------
# local directories beside the log


def test_spool_and_state_beside_a_local_log(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    assert spool_dir(settings) == tmp_path / "spool" and state_dir(settings) == tmp_path / "state"
    settings = Settings(data_dir=f"file://{tmp_path}")
    assert spool_dir(settings) == tmp_path / "spool"


def test_spool_and_state_of_a_remote_log_are_local_and_per_log():
    a, b = Settings(data_dir="s3://bucket/a"), Settings(data_dir="s3://bucket/b")
    assert spool_dir(a).parent == state_dir(a).parent == local_default_dir("s3://bucket/a")
    assert str(spool_dir(a)).startswith(tempfile.gettempdir())
    assert spool_dir(a) != spool_dir(b)
    assert local_default_dir("s3://bucket/a") == local_default_dir("s3://bucket/a")


def test_configured_spool_and_state_dirs_win(tmp_path):
    settings = Settings(data_dir="s3://bucket/a", events=EventSettings(
        spool_dir=str(tmp_path / "sp"), state_dir=str(tmp_path / "st")))
    assert spool_dir(settings) == tmp_path / "sp" and state_dir(settings) == tmp_path / "st"
    assert spool_root("s3://bucket/a", tmp_path / "x") == tmp_path / "x"
    with pytest.raises(InvalidInput):
        spool_root(tmp_path, "s3://bucket/spool")


def test_a_writer_of_a_remote_log_spools_locally(tmp_path):
    writer = SpoolWriter("s3://bucket/a", "w-1", spool_dir=tmp_path / "spool")
    try:
        writer.write([completed()])
        assert (tmp_path / "spool" / "w-1").is_dir()
        assert any(p.suffix == ".open" for p in (tmp_path / "spool" / "w-1").iterdir())
    finally:
        writer.close()


# ------------------------------------------------------------------------------------------------
# the object-store write path (uploads are the publish): on the in-memory filesystem


def object_store_log(name: str) -> EventLog:
    log = EventLog(f"mock:///{name}", fsync="always")
    log.storage.atomic_upload = True  # as on S3: write the final name, never rename
    return log


def all_paths(log: EventLog) -> list[str]:
    return [p for p, _, _ in log.storage.list_tree(log.storage.root)]


def test_object_store_appends_write_final_names_only():
    log = object_store_log("appends")
    renames = []
    log.storage.rename = lambda src, dst: renames.append((src, dst))  # type: ignore[method-assign]
    written = log.append([completed(1), AttemptFailed(occurred_at=DAY, attempt=1,
                                                      error_kind="timeout", transient=True)])
    assert len(written) == 2 and renames == []
    assert not [p for p in all_paths(log) if ".tmp-" in p]
    again = log.append([completed(1)], file_stem="01900000-0000-7000-8000-000000000000-seg")
    assert log.append([completed(1)], file_stem="01900000-0000-7000-8000-000000000000-seg") == again
    assert len(log.read("RequestCompleted")) == 2  # the rewrite replaced, not duplicated


def test_object_store_failed_append_leaves_nothing_visible():
    log = object_store_log("failing")
    real = log.storage.write_new
    calls = []

    def second_fails(path, data, *, fsync):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(5, "upload failed")
        real(path, data, fsync=fsync)

    log.storage.write_new = second_fails  # type: ignore[method-assign]
    with pytest.raises(OSError):
        log.append([completed(1), AttemptFailed(occurred_at=DAY, attempt=1, error_kind="timeout",
                                                transient=True)])
    assert log.read() == [] and not any(p.endswith(".parquet") for p in all_paths(log))


class Crash(Exception):
    """Stands for the compacting process dying at a step."""


def crash_at(k: int):
    seen: list[str] = []

    def hook(step: str) -> None:
        seen.append(step)
        if len(seen) - 1 == k:
            raise Crash(step)

    return hook


def test_object_store_compaction_crashing_at_every_step_never_duplicates_or_loses():
    probe = object_store_log("probe")
    _seed(probe)
    steps: list[str] = []
    compact(probe, _on_step=steps.append)
    assert "write-temp" not in steps and "publish" in steps  # upload = publish, no temp
    for k in range(len(steps)):
        log = object_store_log(f"crash-{k}")
        expected = _seed(log)

        with pytest.raises(Crash):
            compact(log, _on_step=crash_at(k))
        assert Counter(e.event_id for e in log.read()) == expected  # readers honour the claims
        assert _view_ids(log) == expected
        compact(log)  # the next run finishes the job
        assert Counter(e.event_id for e in log.read()) == expected == _view_ids(log)
        assert sum(1 for _ in log.iter_files()) == 2
        assert not [p for p in all_paths(log) if p.startswith("locks/") and p.endswith(".lease")]


def _seed(log: EventLog) -> Counter:
    events = [completed(i) for i in range(4)]
    events.append(AttemptFailed(occurred_at=DAY, attempt=1, error_kind="timeout", transient=True))
    for event in events[:4]:
        log.append([event])
    log.append(events[4:])
    return Counter(e.event_id for e in events)


def _view_ids(log: EventLog) -> Counter:
    con = connect(log)
    return Counter(r[0] for r in con.execute("SELECT event_id FROM events").fetchall())


def test_listing_claims_reads_each_merged_footer_once():
    log = object_store_log("claims")
    _seed(log)
    compact(log)
    reads = []
    real = log.storage.parquet_file
    log.storage.parquet_file = lambda path: (reads.append(path), real(path))[1]  # type: ignore[method-assign]
    for _ in range(3):
        assert len(log.snapshot()) == 2
    assert len(reads) == 1  # the one merged file's footer, once


def test_one_listing_of_the_tree_on_an_object_store():
    log = object_store_log("tree")
    _seed(log)
    calls = Counter()
    for name in ("list_dir", "list_tree"):
        real = getattr(log.storage, name)

        def counted(path, real=real, name=name):
            calls[name] += 1
            return real(path)

        setattr(log.storage, name, counted)
    files = list(log.iter_files())
    assert len(files) == 5 and calls == Counter({"list_tree": 1})
    assert [f.event_type for f in log.iter_files("AttemptFailed")] == ["AttemptFailed"]


# ------------------------------------------------------------------------------------------------
# the compaction lease (one compaction at a time on a store without locks)


def test_lease_is_exclusive_and_released(tmp_path):
    storage = Storage(tmp_path)
    first, second = StoreLease(storage, "compact"), StoreLease(storage, "compact")
    assert first.acquire() and not second.acquire()
    assert not os.path.exists(second.path)  # a loser takes its object away again
    first.release()
    with holding(second) as held:
        assert held
    assert os.listdir(tmp_path / "locks" / "compact") == []


@pytest.mark.parametrize("during", ["upload", "listing"])
def test_racing_contenders_never_both_hold(tmp_path, during):
    """B runs its whole acquire inside A's upload (before A's object exists) or inside A's
    listing (after it): either way at most one holds, and the lock dir is left consistent."""
    storage = Storage(tmp_path)
    a, b = StoreLease(storage, "compact"), StoreLease(storage, "compact")
    results: dict[str, bool] = {}
    started: list[bool] = []
    real_write, real_list = storage.write_new, storage.list_dir

    def write(path, data, *, fsync):
        if during == "upload" and path == a.path and "b" not in results:
            results["b"] = b.acquire()
        real_write(path, data, fsync=fsync)

    def listing(path):
        if during == "listing" and not started:
            started.append(True)
            results["b"] = b.acquire()
        return real_list(path)

    storage.write_new, storage.list_dir = write, listing  # type: ignore[method-assign]
    results["a"] = a.acquire()
    assert [results["a"], results["b"]].count(True) <= 1
    assert results["b"] if during == "upload" else results["a"]


def test_a_stale_lease_is_taken_over_and_its_holder_stops(tmp_path):
    storage = Storage(tmp_path)
    dead, newcomer = StoreLease(storage, "compact", ttl_s=60), StoreLease(storage, "compact", ttl_s=60)
    assert dead.acquire()
    old = os.path.getmtime(dead.path) - 120
    os.utime(dead.path, (old, old))  # its holder stopped renewing two minutes ago
    assert newcomer.acquire()
    assert not os.path.exists(dead.path)
    with pytest.raises(LeaseLost):
        dead.renew()
    newcomer.renew()  # a holder renews as it goes
    with pytest.raises(ValueError):
        StoreLease(storage, "x", ttl_s=0)


def test_compaction_on_a_store_refuses_while_another_holds_the_lease():
    log = object_store_log("busy")
    _seed(log)
    other = StoreLease(log.storage, "compact")
    assert other.acquire()
    with pytest.raises(CompactionInProgress):
        compact(log)
    other.release()
    assert compact(log).partitions_compacted == 1


def _foreign_lease(storage: Storage, **holder) -> str:
    path = storage.join("locks", "compact", "01900000-0000-7000-8000-000000000000-1.lease")
    storage.makedirs(storage.join("locks", "compact"))
    storage.write_new(path, json.dumps(holder).encode(), fsync=False)
    return path


def _finished_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_lease_of_a_dead_process_here_is_taken_over_at_once(tmp_path):
    storage = Storage(tmp_path)
    me = _lease_identity()
    stale = _foreign_lease(storage, **{**me, "pid": _finished_pid()})  # killed mid-compaction
    lease = StoreLease(storage, "compact")
    assert lease.acquire() and not os.path.exists(stale)
    lease.release()


@pytest.mark.parametrize("holder", [
    {"host": "another-machine", "pid_ns": None},  # elsewhere: only the ttl can tell
    {},  # a live process here (this test's own parent)
])
def test_a_lease_of_a_live_or_remote_holder_is_respected(tmp_path, holder):
    storage = Storage(tmp_path)
    me = _lease_identity()
    _foreign_lease(storage, **{**me, "pid": _finished_pid() if holder else os.getppid(), **holder})
    assert not StoreLease(storage, "compact").acquire()


def _lease_identity() -> dict:
    from api_model_management.events._lease import _identity

    return _identity()


# ------------------------------------------------------------------------------------------------
# retiring replaced files after a grace period (remote logs: queries over an older snapshot)


def test_a_remote_log_keeps_replaced_files_for_the_grace_period():
    log = object_store_log("grace")
    expected = _seed(log)
    stats = compact(log)
    assert stats.files_merged == 4 and stats.leftovers_removed == 0
    assert len([p for p in all_paths(log) if p.endswith(".parquet")]) == 6  # 4 inputs stay
    assert Counter(e.event_id for e in log.read()) == expected == _view_ids(log)
    assert compact(log, retire_grace_s=0).leftovers_removed == 4
    assert len([p for p in all_paths(log) if p.endswith(".parquet")]) == 2
    with pytest.raises(ValueError):
        compact(log, retire_grace_s=-1)


def _age(path: str, seconds: float) -> None:
    at = os.path.getmtime(path) - seconds
    os.utime(path, (at, at))


def test_replaced_files_go_once_their_merged_file_is_older_than_the_grace(tmp_path):
    log = EventLog(tmp_path, fsync="never")
    expected = _seed(log)
    assert compact(log, retire_grace_s=60).files_merged == 4
    [first] = [f for f in log.iter_files() if ".c-" in f.name]
    for event in (completed(10), completed(11)):  # two more small files, merged with the first
        log.append([event])
        expected[event.event_id] += 1
    assert compact(log, retire_grace_s=60).files_merged == 3
    [second] = [f for f in log.iter_files() if ".c-" in f.name]
    _age(first.path, 120)  # the first merge is past its grace, the second is not
    stats = compact(log, retire_grace_s=60)
    assert stats.leftovers_removed == 4 and os.path.exists(first.path)  # its inputs only
    assert Counter(e.event_id for e in log.read()) == expected == _view_ids(log)
    _age(second.path, 120)
    assert compact(log, retire_grace_s=60).leftovers_removed == 3  # the first, and the two
    partition = Path(second.path).parent
    assert sorted(p.name for p in partition.glob("*.parquet")) == [second.name]
    assert Counter(e.event_id for e in log.read()) == expected


# ------------------------------------------------------------------------------------------------
# one spool per node: {node_id} in the configured directories


def test_node_placeholder_gives_each_node_its_own_spool_and_state(tmp_path):
    from api_model_management.events._local import for_node, node_settings

    settings = Settings(data_dir="s3://bucket/a", events=EventSettings(
        spool_dir=str(tmp_path / "spool-{node_id}"), state_dir=str(tmp_path / "state-{node_id}")))
    assert spool_dir(settings, "n1") == tmp_path / "spool-n1" != spool_dir(settings, "n2")
    assert state_dir(settings, "n1") == tmp_path / "state-n1"
    assert spool_dir(settings) == tmp_path / "spool-local"  # outside Ray
    resolved = node_settings(settings, "n7")
    assert (resolved.events.spool_dir, resolved.events.state_dir) == \
        (str(tmp_path / "spool-n7"), str(tmp_path / "state-n7"))
    plain = Settings(data_dir=str(tmp_path))
    assert node_settings(plain, "n7") is plain  # nothing to fill in
    assert for_node("/x/{node_id}/y", None) == "/x/local/y"


def test_the_ingestor_lists_the_writers_with_a_spool_on_its_node(tmp_path):
    from api_model_management.events._ingest import SpoolIngestor

    settings = EventSettings(spool_dir=str(tmp_path / "spool"), fsync="never")
    ingestor = SpoolIngestor(tmp_path / "log", settings)
    assert ingestor.writer_ids() == []  # no spool yet
    writers = [SpoolWriter(tmp_path / "log", f"router-{i}", spool_dir=settings.spool_dir) for i in (1, 0)]
    writers[0].write([completed(1)])
    assert ingestor.writer_ids() == ["router-0", "router-1"]
    for writer in writers:
        writer.close()
    ingestor.ingest()  # gone and fully ingested: finalized, their directories removed
    assert ingestor.writer_ids() == []
    assert len(EventLog(tmp_path / "log").read()) == 1
