"""A spool writer with ``sync_in_thread`` (the HTTP gateway's): the interval ``fsync`` and the
closing of an old segment run in the writer's sync thread, never on the caller's; ``sync``,
``rotate`` and ``close`` stay synchronous; a failure there is logged, counted and tried again."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from api_model_management.events import ModelSelected
from api_model_management.events._spool import SpoolWriter, ingestible_segments, pending_events

pytestmark = pytest.mark.unit


class Fsyncs:
    """``os.fsync`` recorded with the thread it ran on; ``gate`` (when set) holds it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        self.gate: threading.Event | None = None
        self.fail = False
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self.fsync)

    def fsync(self, fd: int) -> None:
        self.threads.append(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise OSError(5, "Input/output error")
        self._real(fd)


def event(i: int) -> ModelSelected:
    return ModelSelected(request_id=f"r{i}", model_id="m", provider="p")


def writer(tmp_path: Path, **kwargs) -> SpoolWriter:
    return SpoolWriter(tmp_path, fsync_interval_ms=0, sync_in_thread=True, **kwargs)


def test_the_interval_fsync_runs_in_the_sync_thread(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = Fsyncs(monkeypatch)
    w = writer(tmp_path)
    w.write([event(1)])
    w.tick()
    w._syncer.wait()  # type: ignore[union-attr]
    assert fsyncs.threads and all(name.startswith("spool-sync-") for name in fsyncs.threads)
    assert threading.current_thread().name not in fsyncs.threads
    assert [e.request_id for e in pending_events(tmp_path)] == ["r1"]
    w.close()


def test_a_tick_never_waits_for_a_slow_disk_and_queues_no_second_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = Fsyncs(monkeypatch)
    fsyncs.gate = threading.Event()  # the disk does not answer until set
    w = writer(tmp_path)
    w.write([event(1)])
    w.tick()
    deadline = time.monotonic() + 5
    while not fsyncs.threads and time.monotonic() < deadline:
        time.sleep(0.001)
    started = time.monotonic()
    for i in range(2, 6):  # writes and ticks go on while the fsync hangs
        w.write([event(i)])
        w.tick()
    assert time.monotonic() - started < 1.0
    assert len(fsyncs.threads) == 1  # one at a time: none queued behind the slow one
    fsyncs.gate.set()
    w.sync()  # synchronous: waits for the thread, then syncs what was written since
    assert len(fsyncs.threads) == 2 and fsyncs.threads[-1] == threading.current_thread().name
    w.close()


def test_an_old_segment_is_closed_by_the_thread_and_rotate_close_are_synchronous(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = Fsyncs(monkeypatch)
    w = writer(tmp_path, segment_max_age_s=0.0)
    w.write([event(1)])
    w.tick()  # the segment is old: detached now, synced, renamed and closed by the thread
    w.write([event(2)])  # a new segment
    w.rotate()  # waits for the thread first: every segment written before is closed on return
    closed = sorted(p.name for p in w.dir.iterdir() if p.suffix == ".wal")
    assert len(closed) == 2 and not [p for p in w.dir.iterdir() if p.suffix == ".open"]
    assert [s.path.name for s in ingestible_segments(tmp_path)] == closed
    assert [e.request_id for e in pending_events(tmp_path)] == ["r1", "r2"]
    assert any(name.startswith("spool-sync-") for name in fsyncs.threads)
    w.close()
    assert w._syncer is None  # the thread is stopped


def test_a_failed_fsync_in_the_thread_is_counted_and_tried_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fsyncs = Fsyncs(monkeypatch)
    fsyncs.fail = True
    w = writer(tmp_path)
    w.write([event(1)])
    w.tick()
    w._syncer.wait()  # type: ignore[union-attr]
    assert w.background_errors == 1 and "sync thread" in caplog.text
    fsyncs.fail = False
    w.tick()  # dirty again: synced at the next tick
    w._syncer.wait()  # type: ignore[union-attr]
    assert len(fsyncs.threads) == 2 and w.background_errors == 1
    w.close()


def test_without_the_thread_tick_syncs_on_the_callers_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = Fsyncs(monkeypatch)
    w = SpoolWriter(tmp_path, fsync_interval_ms=0)
    w.write([event(1)])
    w.tick()
    assert fsyncs.threads == [threading.current_thread().name]
    w.close()
