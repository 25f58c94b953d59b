"""A full disk under the running system (issue 10, item 5), and the supervised background loops.

- Each actor shell's background loop survives an exception of one iteration (logged, counted,
  backed off from). The shells are built in this process, without starting Ray (their modules
  import it, hence the integration layer).
- The whole system with its data_dir on a small tmpfs (mounting needs root; skipped otherwise):
  the disk fills while calls are in flight, those calls return and keep their events, new
  requests are refused with ``SpoolUnavailable``, and once space returns admission resumes by
  itself and every returned request has exactly one terminal event in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from api_model_management import ModelRequest
from api_model_management._clock import ManualClock
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.errors import AMMError
from api_model_management.events._ingest import read_all_events
from api_model_management.events._spool import pending_events

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}


# -- supervised loops ----------------------------------------------------------------------------

def _config(tmp_path: Path):
    return override(demo_config(), settings={"data_dir": str(tmp_path),
                                             "events": {"flush_interval_ms": 50}})


def _fails_once_then_signals(done: asyncio.Event | threading.Event, result=None):
    calls: list[int] = []

    def body(*_args, **_kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("an unexpected error in one iteration")
        done.set()
        return result

    return body, calls


async def _run_until(loop_coro, done: asyncio.Event) -> None:
    task = asyncio.get_running_loop().create_task(loop_coro)
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()  # cancellation still ends a supervised loop


def test_the_event_sinks_ingestion_loop_survives_an_error(tmp_path, monkeypatch):
    from api_model_management.runtime._shells import EventSinkShell

    shell = EventSinkShell(_config(tmp_path))
    shell.supervisor.clock = ManualClock()

    async def run() -> None:
        done = asyncio.Event()
        body, calls = _fails_once_then_signals(done, 0)
        monkeypatch.setattr(shell.ingestor, "ingest", body)
        await _run_until(shell._loop(), done)
        assert len(calls) >= 2

    asyncio.run(run())
    assert shell.supervisor.errors == 1 and shell.supervisor.last_error == "RuntimeError"


def test_a_health_checkers_probe_loop_survives_an_error(tmp_path, monkeypatch):
    from api_model_management.runtime._shells import HealthCheckerShell

    shell = HealthCheckerShell(_config(tmp_path), "openai")
    shell.supervisor.clock = ManualClock()
    monkeypatch.setattr(shell.core, "due_for_probe", lambda: True)

    async def run() -> None:
        done = asyncio.Event()
        body, calls = _fails_once_then_signals(done)

        async def probe_now():
            return body()

        monkeypatch.setattr(shell, "probe_now", probe_now)
        await _run_until(shell._loop(), done)
        assert len(calls) >= 2

    asyncio.run(run())
    assert shell.supervisor.errors == 1


@pytest.mark.parametrize("kind", ["actor", "embedded"])
def test_a_routers_housekeeping_survives_an_error(tmp_path, monkeypatch, kind):
    from api_model_management.runtime._embedded import EmbeddedShell
    from api_model_management.runtime._router import RouterShell

    ports = dict(limiters={}, ledger=None, cache=None, health={}, selector=None, api_keys={})
    config = _config(tmp_path)
    shell = RouterShell(config, 0, **ports) if kind == "actor" else EmbeddedShell(config, **ports)
    shell.supervisor.clock = ManualClock()

    async def run() -> None:
        done = asyncio.Event()
        body, calls = _fails_once_then_signals(done)

        async def tick(**_kw):
            body()

        monkeypatch.setattr(shell, "_tick", tick)
        await _run_until(shell._housekeeping(), done)
        assert len(calls) >= 2

    asyncio.run(run())
    assert shell.supervisor.errors == 1
    assert shell.counters()["housekeeping_errors"] == 1


def test_the_cost_ledgers_log_follower_survives_an_error(tmp_path, monkeypatch):
    from api_model_management.runtime._shells import CostLedgerShell

    shell = CostLedgerShell(_config(tmp_path))
    try:
        done = threading.Event()
        body, _ = _fails_once_then_signals(done, 0)
        monkeypatch.setattr(shell, "poll", body)
        assert done.wait(10), "the follower polled again after the error"
        assert shell.supervisor.errors == 1 and shell._thread.is_alive()
    finally:
        shell._stop.set()
        shell._thread.join(5)


def test_a_journal_that_cannot_be_written_refuses_with_a_typed_error(tmp_path, monkeypatch):
    from api_model_management.errors import ComponentUnavailable
    from api_model_management.runtime._shells import RateLimiterShell

    shell = RateLimiterShell(_config(tmp_path), "gpt-4.1-mini")

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shell.journal, "append", full)
    with pytest.raises(ComponentUnavailable, match="ENOSPC"):
        shell.lease("router-0", 10, 10_000)


# -- a real full disk ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path_factory):
    """A 4 MiB tmpfs (``mount -t tmpfs``: needs root; skipped when mounting is not permitted)."""
    where = tmp_path_factory.mktemp("small-disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte with one file; returns it."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def _request(i: int) -> ModelRequest:
    return ModelRequest(prompt=f"Explain how a full disk is survived, case {i}.",
                        agent_type="research", task_id=f"disk-{i}", max_tokens=64,
                        parameters={"temperature": 0.7}, cacheable=False)


async def _outcomes(mm, requests):
    async def one(r):
        try:
            return await mm.complete(r)
        except AMMError as exc:
            return exc
    return await asyncio.gather(*(one(r) for r in requests))


def test_a_full_disk_loses_no_returned_request_and_recovers_by_itself(
        ray_session, fresh_emulator, small_disk):
    from api_model_management.runtime._system import ModelManagement

    config = with_provider_base_urls(
        demo_config(), {n: fresh_emulator.url_for(p.type) for n, p in demo_config().providers.items()})
    config = override(config, settings={
        "data_dir": str(small_disk / "data"), "routers": {"replicas": 1},
        "health_check": {"interval_s": 30.0},
    })
    mm = ModelManagement.start(config, env=KEYS, name_prefix=f"disk-{uuid.uuid4().hex[:6]}")
    try:
        warm = asyncio.run(_outcomes(mm, [_request(i) for i in range(6)]))
        assert all(not isinstance(r, BaseException) for r in warm), warm

        # calls in flight when the disk fills: announced (intent written), then billed
        fresh_emulator.set_profile(Profile.model_validate(
            {"defaults": {"latency": {"kind": "fixed", "latency_s": 3.0}}}))
        filler: list[Path] = []
        in_flight_tasks = {f"disk-{100 + i}" for i in range(6)}

        def announced() -> bool:
            intents = {e.task_id for e in pending_events(config.settings.data_dir)
                       if e.event_type == "AttemptStarted"}
            return in_flight_tasks <= intents

        async def fill_while_in_flight():
            pending = asyncio.ensure_future(_outcomes(mm, [_request(100 + i) for i in range(6)]))
            deadline = time.monotonic() + 10
            while not announced() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            filler.append(await asyncio.to_thread(_fill, small_disk))
            return await pending

        in_flight = asyncio.run(fill_while_in_flight())
        fresh_emulator.set_profile(Profile())
        billed = [r for r in in_flight if not isinstance(r, BaseException)]
        assert len(billed) == 6, Counter(type(r).__name__ for r in in_flight)  # none raised

        # while the disk is full, new work is refused before any call, with a typed error
        refused = asyncio.run(_outcomes(mm, [_request(200 + i) for i in range(6)]))
        kinds = Counter(type(r).__name__ for r in refused)
        assert set(kinds) == {"SpoolUnavailable"}, kinds
        # past the grace period the router hands its waiting events to the sink (whose disk is
        # full too: it keeps them in memory)
        deadline = time.monotonic() + 20
        while True:
            counters = mm.counters()
            if counters["spool_handed_off_events"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counters["spool_queued_events"] >= len(billed), counters
        assert counters["spool_handed_off_events"] >= 1, counters

        filler[0].unlink()  # space returns: admission resumes by itself
        deadline = time.monotonic() + 30
        after: list = []
        while time.monotonic() < deadline:
            after = asyncio.run(_outcomes(mm, [_request(300 + len(after))]))
            if not isinstance(after[0], BaseException):
                break
            time.sleep(0.2)
        assert not isinstance(after[0], BaseException), after

        returned = [r for r in [*warm, *billed, *after] if not isinstance(r, BaseException)]
        deadline = time.monotonic() + 30
        while True:
            mm.flush()
            events = read_all_events(config.settings.data_dir)
            terminal = Counter(e.request_id for e in events
                               if e.event_type in ("RequestCompleted", "RequestFailed"))
            missing = [r.request_id for r in returned if terminal[r.request_id] != 1]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert missing == [], {rid: terminal[rid] for rid in missing}
        completed = {e.request_id for e in events if e.event_type == "RequestCompleted"}
        assert {r.request_id for r in billed} <= completed  # the billed calls, in full
        assert mm.counters()["spool_dropped_events"] == 0
    finally:
        mm.shutdown()
