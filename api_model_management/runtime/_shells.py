"""Thin Ray actor shells around the pure cores (design §3). ``ray.remote`` is applied in
``_actors.py`` only, and every Ray call goes through ``_ray.py``; the shells decide nothing:
they forward to their core, spool the events it produces and push state changes to their
subscribers (routers, the selector) with fire-and-forget calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .._clock import SYSTEM_CLOCK, Every
from .._request import ModelRequest, ModelResponse
from .._supervise import Supervisor
from ..budget import BudgetStatus, Slice, SpendKey
from ..cache import CacheHit, CacheStats
from ..config import RegistryConfig, SelectionWeights, Settings
from ..config._logging import configure_actor_logging
from ..events import Event
from ..health import HealthSnapshot
from ..selection import LiveState, ModelStatsSnapshot, Selection
from . import _ray
from ._limiters import RateLimiterShell  # noqa: F401  (where it was; its worker imports only _limiters)
from ._ray import Handle
from ._shell_base import (
    _journaling,
    _node_settings,
    _spool,
    _state_dir,
    _Subscribers,
    _this_node,
)

log = logging.getLogger(__name__)

CACHE_PURGE_S = 60.0
#: How often the ledger looks for new files in the log (recent partitions), how often in all
#: partitions (a late file in an old one), and how often it saves its file cache.
LEDGER_POLL_S = 0.1
#: The same on a remote log (``s3://``), where every poll is about nine LIST requests (three
#: spend types, each listed with its two recent partitions): 10 polls/s would be ~7.8 million
#: requests a day (about $39 at S3's LIST price); once a second is ~$3.9. Settled spend then
#: arrives up to a second later: routers' pending charges are held meanwhile (exact, a little
#: less headroom for that second).
REMOTE_LEDGER_POLL_S = 1.0
LEDGER_FULL_POLL_S = 60.0
LEDGER_CACHE_SAVE_S = 30.0
#: How often the Selector folds new quality signals from the log (and pushes them).
QUALITY_POLL_S = 1.0
#: (request, source) pairs of feedback remembered for idempotence.
_FEEDBACK_MEMORY = 500_000
#: How soon a HealthChecker's probe loop notices that outcomes opened the breaker (so that the
#: half-open trials start when ``open_s`` has passed, not at the next probe interval).
HEALTH_WAKE_S = 1.0
#: How often a sink tells the CostLedger its node's spool writers when nothing changed.
WRITERS_REPORT_S = 2.0


# ---------------------------------------------------------------------------------------------


class EventSinkShell:
    """The only writer of the Parquet log: ingests spool segments in group commits, compacts.

    One per node (``start_actors`` and the driver's node watcher place one on every node, by node
    affinity): it ingests the spool on its node's local disk (``settings.events.spool_dir``, its
    ``{node_id}`` filled in) into the shared log, and tells the CostLedger which writers have a
    spool on its node (``ledger``), so that a slice held by a router on another node is released
    only once that router is gone and its spool ingested."""

    def __init__(self, config: RegistryConfig, ledger: Handle | None = None) -> None:
        from ..events._ingest import SpoolIngestor

        configure_actor_logging(config)
        self.config = config
        self.node_id = _this_node()
        settings = _node_settings(config)
        self.ingestor = SpoolIngestor(settings.data_dir, settings.events)
        self.ledger = ledger
        self._reported: tuple[tuple[str, ...], float] | None = None
        self.supervisor = Supervisor("event sink: ingestion")
        self._interval_s = max(0.05, config.settings.events.flush_interval_ms / 1000)
        try:
            self.ingestor.ingest()  # recover what crashed writers left
        except OSError as exc:  # a full disk: the loop tries again
            self.supervisor.failed(exc)
        self._task: asyncio.Task | None = None

    async def start(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return True

    async def ping(self) -> bool:
        return await self.start()  # a restarted sink resumes its loop on first contact

    async def _loop(self) -> None:
        await self.supervisor.run(self._ingest_once, initial_delay_s=self._interval_s)

    async def _ingest_once(self) -> float:
        await asyncio.to_thread(self.ingestor.ingest)
        self._report_writers()
        return self._interval_s

    def _report_writers(self, *, force: bool = False) -> None:
        """Tell the ledger the writers with a spool here, when that changed (or every
        ``WRITERS_REPORT_S``): a writer it no longer hears of is gone and fully ingested."""
        if self.ledger is None or self.node_id is None:
            return
        writers = tuple(self.ingestor.writer_ids())
        now = time.monotonic()
        if (not force and self._reported is not None and self._reported[0] == writers
                and now - self._reported[1] < WRITERS_REPORT_S):
            return
        _ray.tell(self.ledger, "spool_writers", self.node_id, list(writers))
        self._reported = (writers, now)

    async def node(self) -> str | None:
        """The Ray node this sink ingests for."""
        return self.node_id

    async def append(self, events: list[Event]) -> bool:
        """Events a router could not spool for a while (its disk full, ``events._resilient``):
        True when taken (written to the log now, or kept in this process's memory and written
        by the loop once the disk has room); False when too many wait here already (the router
        keeps them)."""
        await self.start()
        if not self.ingestor.accept(events):
            return False
        try:
            await asyncio.to_thread(self.ingestor.write_handed)
        except OSError as exc:
            log.warning("event sink: %d handed event(s) wait in memory (%s)",
                        self.ingestor.handed_events, type(exc).__name__)
        return True

    async def flush(self) -> int:
        """Ingest every closed or orphaned segment now; returns events written."""
        await self.start()
        written = await asyncio.to_thread(self.ingestor.ingest)
        self._report_writers(force=True)
        return written

    async def compact(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.ingestor.compact)

    async def settings(self) -> Settings:
        """The system's settings (where the log is, budget limits and thresholds, ...), for
        readers such as ``amm status``; the configuration holds no API key."""
        return self.config.settings


class HealthCheckerShell:
    """One per provider: active probes on an interval, passive outcomes from routers."""

    def __init__(self, config: RegistryConfig, provider: str, api_key: Any = None) -> None:
        from ..health._core import HealthCore
        from ..providers import make_adapter

        configure_actor_logging(config)
        self.config = config
        self.provider = provider
        settings = config.settings.health_check
        interval_s = config.providers[provider].health_check.interval_s
        if interval_s is not None:
            settings = settings.model_copy(update={"interval_s": interval_s})
        models = [m.wire_name for m in config.models if m.provider == provider]
        self.model_ids = {m.wire_name: m.id for m in config.models if m.provider == provider}
        self.core = HealthCore(provider, settings, clock=SYSTEM_CLOCK, models=models)
        self.adapter = make_adapter(provider, config.providers[provider], api_key)
        self.spool = _spool(config, f"health-{provider}")
        self.subscribers = _Subscribers()
        self.supervisor = Supervisor(f"health checker {provider}: probes", max_backoff_s=HEALTH_WAKE_S)
        self._task: asyncio.Task | None = None
        self._last_state: tuple[str, tuple[str, ...]] | None = None

    def subscribe(self, handles: list[Handle]) -> bool:
        self.subscribers.set(handles)
        self._push(force=True)
        return True

    async def add_subscribers(self, handles: list[Handle]) -> bool:
        """Idempotent re-subscription (routers call it periodically, so a restarted checker
        finds its subscribers again and resumes probing)."""
        new = self.subscribers.add(handles)
        if new:
            snap = self.snapshot()
            for h in new:
                _ray.tell(h, "update_health", self.provider, snap["state"], snap["unavailable_models"])
        await self.start()
        return True

    async def start(self) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return True

    async def _loop(self) -> None:
        await self.supervisor.run(self._probe_if_due)

    async def _probe_if_due(self) -> float:
        """Probe when the core says so (on the interval; back to back while half-open);
        returns the seconds until the next look."""
        if self.core.due_for_probe():
            await self.probe_now()
        return min(self.core.probe_delay_s(), HEALTH_WAKE_S)

    async def probe_now(self) -> dict[str, Any]:
        probe = await self.adapter.probe()
        self.core.record_probe(
            probe.ok, probe.latency_ms, http_status=probe.http_status,
            error_kind=probe.error_kind, available_models=probe.models,
        )
        self._after()
        return self.snapshot()

    def report_outcomes(self, batch: list[tuple[bool, str | None, str]]) -> bool:
        for ok, error_kind, model_id in batch:
            model = self.config.model(model_id) if model_id else None
            self.core.record_outcome(ok, error_kind=error_kind, model_id=model.wire_name if model else None)
        self._after()
        return True

    def _after(self) -> None:
        events = self.core.drain_events()
        if events:
            self.spool.write(events)
            self.spool.tick()
        self._push()

    def _push(self, force: bool = False) -> None:
        snap = self.snapshot()
        key = (snap["state"], tuple(sorted(snap["unavailable_models"])))
        if force or key != self._last_state:
            self._last_state = key
            self.subscribers.call("update_health", self.provider, snap["state"], snap["unavailable_models"])

    def ping(self) -> bool:
        """Answers once the constructor has run (start-up waits for every actor)."""
        return True

    def snapshot(self) -> dict[str, Any]:
        snap = self.core.snapshot()
        unavailable = [self.model_ids.get(m, m) for m in snap.unavailable_models]
        return {"provider": self.provider, "state": snap.state, "unavailable_models": unavailable}

    def status(self) -> HealthSnapshot:
        """The core's whole snapshot (state, since when, why, window counts, last probe), with
        model ids for the unavailable models."""
        snap = self.core.snapshot()
        return dataclasses.replace(snap, unavailable_models=tuple(
            self.model_ids.get(m, m) for m in snap.unavailable_models))

    def flush_events(self) -> bool:
        self.spool.rotate()
        return True


class HealthCheckersShell:
    """The HealthChecker of every provider, in one process: one actor hosting one
    :class:`HealthCheckerShell` per provider, each with its own core, probe loop, spool segment
    and subscribers, reached through a ``_ray.Hosted`` handle per provider (callers see one
    handle per provider, as before).

    Why one process: each actor process costs this machine 1-1.5 CPU-seconds to start and
    about 70 MB, and a registry's providers grow with it (an OpenRouter-sized catalogue has
    dozens). The concern stays one (provider health); what is lost is isolation between
    providers' checkers: a crash of this process restarts every provider's checker (each
    rebuilds from its probes, as one did before), and a blocked loop would delay every
    provider's probes (the probes are async and time out)."""

    def __init__(self, config: RegistryConfig, api_keys: Mapping[str, Any]) -> None:
        self.checkers = {name: HealthCheckerShell(config, name, api_keys.get(name))
                         for name in config.providers}

    def providers(self) -> list[str]:
        """The providers whose checkers run here."""
        return list(self.checkers)

    def ping(self) -> bool:
        """Answers once every provider's checker is built (start-up waits for it)."""
        return True

    async def call_hosted(self, provider: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method(*args)`` of ``provider``'s checker (awaited when it is a coroutine)."""
        if method.startswith("_"):
            raise AttributeError(f"{method} is not a HealthChecker method")
        result = getattr(self.checkers[provider], method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result


class CostLedgerShell:
    """The one ledger. Settled spend comes from the event log, followed file by file
    (``budget.LogSpend``, from a cache of per-file summaries so a restart does not re-read the
    log); holds (reservations, slices, pending charges) are journaled so a restarted ledger still
    holds what routers hold. A thread polls the log; every call holds the core's lock."""

    def __init__(self, config: RegistryConfig) -> None:
        from collections import deque

        from ..budget import CostLedgerCore, HoldJournal, LogSpend
        from ..events import EventLog
        from ..events._local import spool_dir
        from ..events._storage import is_remote

        configure_actor_logging(config)
        self.config = config
        data_dir = config.settings.data_dir
        spool_root = spool_dir(_node_settings(config))
        self._poll_s = REMOTE_LEDGER_POLL_S if is_remote(data_dir) else LEDGER_POLL_S
        #: writers with a spool on each node, as that node's EventSink last said
        self._remote_writers: dict[str, frozenset[str]] = {}
        # alerts of log files found unreadable (quarantined): spooled by _after, as ours are
        self._log_alerts: deque[Any] = deque()
        log = EventLog(data_dir, alerts=self._log_alerts.extend)
        providers = {m.id: m.provider for m in config.models}
        self.tail = LogSpend(log, SYSTEM_CLOCK, providers=providers,
                             cache_path=_state_dir(config) / "ledger-files.json")
        self.holds = HoldJournal(_state_dir(config) / "ledger-holds.jsonl", SYSTEM_CLOCK)
        self.core = CostLedgerCore(
            config.settings.budgets, clock=SYSTEM_CLOCK, registry=config, follows_log=True,
            holder_gone=lambda holder: not ((spool_root / holder).exists()
                                            or self._writer_on_a_node(holder)),
        )
        for alert in log.read("BudgetAlert"):  # alerts already emitted are not emitted again
            self.core.apply(alert)
        self.core.apply_log(self.tail.start())
        self.core.restore_holds(self.holds.load())
        self.holds.rewrite(self.core.reservations())
        self.core.drain_hold_changes()
        self.core.catch_up_alerts()
        self.spool = _spool(config, "ledger")
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._saved = Every(LEDGER_CACHE_SAVE_S, SYSTEM_CLOCK, start_due=False)
        self._full_poll = Every(LEDGER_FULL_POLL_S, SYSTEM_CLOCK, start_due=False)
        self.supervisor = Supervisor("cost ledger: following the log")
        self._after()
        self._thread = threading.Thread(target=self._follow, name="ledger-log", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        """Poll the log, apply what is new, expire holds; supervised: an error (a file read
        racing compaction, a full disk) is logged and counted, and a later poll tries again."""
        self.supervisor.run_thread(self._poll_once, self._stop, initial_delay_s=self._poll_s)

    def _poll_once(self) -> float:
        self.poll()
        return self._poll_s

    def poll(self) -> int:
        """Apply what the log delivered since the last poll; returns files read. One poll at a
        time (the follower thread and ``flush_events``); the core's lock is held only to apply."""
        with self._poll_lock:
            delta = self.tail.poll(all_partitions=self._full_poll.due())
            with self._lock:
                self.core.apply_log(delta)
                self.core.expire()
                self._after()
            if self._saved.due():
                self.tail.save()
            return delta.files_read

    def _after(self) -> None:
        with _journaling("CostLedger"):
            self.holds.append(self.core.drain_hold_changes())  # before the answer leaves
            if self.holds.needs_compaction():
                self.holds.rewrite(self.core.reservations())
        events = self.core.drain_events()
        while self._log_alerts:  # filled by the log's readers (the polling thread too)
            events.append(self._log_alerts.popleft())
        if events:
            self.spool.write(events)
        self.spool.tick()

    def spool_writers(self, node_id: str, writers: list[str]) -> bool:
        """A node's EventSink says which writers have a spool there (alive, or with events not
        yet in the log). A slice past its time whose holder is listed on some node is kept (its
        spend may still be on its way); a node lost with its disk is never heard of again, so
        its writers' slices are kept until ``ORPHAN_MAX_S``: never granted twice."""
        self._remote_writers = {**self._remote_writers, node_id: frozenset(writers)}
        return True

    def _writer_on_a_node(self, holder: str) -> bool:
        return any(holder in writers for writers in self._remote_writers.values())

    def reserve(self, key: SpendKey, amount_usd: Decimal, request_id: str | None = None) -> str:
        with self._lock:
            try:
                return self.core.reserve(key, amount_usd, request_id=request_id)
            finally:
                self._after()

    def settle(self, reservation_id: str, actual_usd: Decimal) -> bool:
        with self._lock:
            try:
                self.core.settle(reservation_id, actual_usd)
            finally:
                self._after()
        return True

    def release(self, reservation_id: str) -> bool:
        with self._lock:
            try:
                self.core.release(reservation_id)
            finally:
                self._after()
        return True

    def grant_slice(self, key: SpendKey, amount_usd: Decimal, holder: str,
                    minimum_usd: Decimal | None = None) -> Slice:
        with self._lock:
            try:
                return self.core.grant_slice(key, amount_usd, holder, minimum_usd=minimum_usd)
            finally:
                self._after()

    def return_slice(self, slice_id: str, spent_usd: Decimal, key: SpendKey | None = None,
                     charges: tuple[tuple[str, Decimal], ...] | None = None) -> bool:
        with self._lock:
            try:
                self.core.return_slice(slice_id, spent_usd, key, charges=charges)
            finally:
                self._after()
        return True

    def record(self, key: SpendKey, amount_usd: Decimal) -> bool:
        with self._lock:
            try:
                self.core.record(key, amount_usd)
            finally:
                self._after()
        return True

    def status(self) -> list[BudgetStatus]:
        with self._lock:
            self.core.expire()
            self._after()
            return self.core.status()

    def ping(self) -> bool:
        """Answers once the constructor has run (start-up waits for every actor)."""
        return True

    def pid(self) -> int:
        """This incarnation's process id (operations, and tests that kill it)."""
        return os.getpid()

    def flush_events(self) -> bool:
        """Apply what the log holds now, save the file cache, close the spool segment."""
        self.poll()
        with self._poll_lock:
            self.tail.save()
        with self._lock:
            self.spool.rotate()
        return True


class CacheShell:
    """The shared cache tier; expired entries are purged at most once a minute, on writes."""

    def __init__(self, config: RegistryConfig) -> None:
        from ..cache._core import CacheCore

        configure_actor_logging(config)
        self.core = CacheCore(config.settings.cache, clock=SYSTEM_CLOCK)
        self._purge = Every(CACHE_PURGE_S, SYSTEM_CLOCK, start_due=False)

    def get(self, request: ModelRequest) -> CacheHit | None:
        entry = self.core.get(request)
        return None if entry is None else entry.hit()

    def put(self, request: ModelRequest, response: ModelResponse, cost_usd: Decimal) -> bool:
        if self._purge.due():
            self.core.purge_expired()
        return self.core.put(request, response, cost_usd)

    def ping(self) -> bool:
        """Answers once the constructor has run (start-up waits for every actor)."""
        return True

    def stats(self) -> CacheStats:
        return self.core.stats()


class SelectorShell:
    """Owns the selection policy (weights, per agent type too) and what has been learnt about
    quality: a ``QualityFold`` over the log (``ResponseEvaluated``, ``FeedbackRecorded``), rebuilt
    at start and followed by a thread, pushed to the routers when it changes. Records feedback
    (``FeedbackRecorded``), once per request and source. Starts from the live statistics the
    routers start from (``selection.seed_stats``: the newest outcomes in the log), then takes
    the ones they push."""

    def __init__(self, config: RegistryConfig, session: str | None = None) -> None:
        from ..events import EventLog
        from ..events._follow import LogFollower
        from ..selection import QualityFold, seed_stats
        from ..selection._core import SelectorCore

        configure_actor_logging(config)
        self.config = config
        self.core = SelectorCore(config, clock=SYSTEM_CLOCK)
        self.subscribers = _Subscribers()
        # weights set while the system runs survive a restart of this actor (same session)
        self._weights_path = (
            _state_dir(config) / f"selector-weights-{session}.json" if session else None
        )
        if self._weights_path is not None and self._weights_path.exists():
            from ..replay import read_weights_file

            saved = read_weights_file(self._weights_path)
            self.core.set_weights(saved.weights, saved.weights_version, saved.agent_weights)
        self.spool = _spool(config, "selector")
        # the statistics every router starts from (the same read of the log), until they push
        self.core.update_stats(seed_stats(config.settings.data_dir,
                                          [m.id for m in config.models],
                                          alerts=self.spool.write).snapshot())
        self.fold = QualityFold({m.id: m.quality_prior for m in config.models})
        self.follower = LogFollower(EventLog(config.settings.data_dir),
                                    ("ResponseEvaluated", "FeedbackRecorded"))
        self._feedback: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._pushed_version = -1
        self.poll_quality()  # no cold start: what the log holds, before the first request
        self._stop = threading.Event()
        self.supervisor = Supervisor("selector: following the log for quality")
        self._thread = threading.Thread(
            target=self.supervisor.run_thread, name="selector-quality", daemon=True,
            args=(self._poll_once, self._stop), kwargs={"initial_delay_s": QUALITY_POLL_S},
        )
        self._thread.start()

    def _poll_once(self) -> float:
        self.poll_quality()
        return QUALITY_POLL_S

    def poll_quality(self) -> int:
        """Fold what the log delivered since the last poll; push the estimates if they moved.
        Returns the events folded."""
        events = self.follower.poll()
        with self._lock:
            for event in events:
                self.fold.apply(event)
                if event.event_type == "FeedbackRecorded" and event.request_id:
                    self._remember_feedback(event.request_id, getattr(event, "source", ""))
            self._push_quality()
        return len(events)

    def _push_quality(self) -> None:
        if self.fold.version == self._pushed_version:
            return
        snapshot = self.fold.snapshot()
        self._pushed_version = snapshot.version
        self.core.update_quality(snapshot)
        self.subscribers.call("update_quality", snapshot)

    def _remember_feedback(self, request_id: str, source: str) -> None:
        self._feedback[(request_id, source)] = None
        self._feedback.move_to_end((request_id, source))
        if len(self._feedback) > _FEEDBACK_MEMORY:
            self._feedback.popitem(last=False)

    def answer_of(self, request_id: str) -> tuple[str, str] | None:
        """(model id, agent type) of a request the log has shown (recent ones)."""
        with self._lock:
            return self.fold.answer_of(request_id)

    def record_feedback(self, request_id: str, score: float, source: str, model_id: str,
                        agent_type: str, task_id: str | None = None,
                        comment: str | None = None) -> bool:
        """Record one outcome for a request (validated by the caller); False when this request
        already has feedback from ``source`` (idempotent: nothing written)."""
        from .._feedback import feedback_event

        with self._lock:
            if (request_id, source) in self._feedback:
                return False
            event = feedback_event(self.config, request_id, score, source, model_id, agent_type,
                                   task_id, comment)
            self.spool.write([event])
            self.spool.tick()
            self._remember_feedback(request_id, source)
            self.fold.apply(event)
            self._push_quality()
            return True

    def flush_events(self) -> bool:
        self.poll_quality()
        with self._lock:
            self.spool.rotate()
        return True

    def subscribe(self, handles: list[Handle]) -> bool:
        self.subscribers.set(handles)
        return True

    def add_subscribers(self, handles: list[Handle]) -> bool:
        """Idempotent re-subscription: routers call it periodically, so a restarted Selector
        finds them again (and they get its weights)."""
        weights, version = self.core.live_state().weights, self.core.weights_version
        agent_weights = self.core.agent_weights
        for handle in self.subscribers.add(handles):
            _ray.tell(handle, "set_weights", weights, version, agent_weights)
            _ray.tell(handle, "update_quality", self.fold.snapshot())
        return True

    def select(self, request: ModelRequest) -> Selection:
        return self.core.select(request)

    def update_health(self, provider: str, state: str, unavailable_models: list[str]) -> bool:
        self.core.update_health(provider, state, unavailable_models)
        return True

    def update_rate_limited(self, model_id: str, until_monotonic: float | None) -> bool:
        self.core.update_rate_limited(model_id, until_monotonic)
        return True

    def update_headroom(self, model_id: str, headroom: float) -> bool:
        self.core.update_headroom(model_id, headroom)
        return True

    def update_stats(self, snapshot: dict[str, ModelStatsSnapshot]) -> bool:
        self.core.update_stats(snapshot)
        return True

    def ping(self) -> bool:
        """Answers once the constructor has run (start-up waits for every actor)."""
        return True

    def live_state(self) -> LiveState:
        """Health, cool-downs and weights as pushed here (polled by the embedded router)."""
        return self.core.live_state()

    def set_weights(self, weights: SelectionWeights, version: str,
                    agent_weights: dict[str, SelectionWeights] | None = None) -> bool:
        """The whole policy (default and per-agent-type weights), pushed to every router."""
        self.core.set_weights(weights, version, agent_weights)
        if self._weights_path is not None:
            from ..replay import write_weights_file

            write_weights_file(self._weights_path, weights, version, agent_weights,
                               provenance={"source": "set_weights"})
        self.subscribers.call("set_weights", weights, version, agent_weights)
        return True
