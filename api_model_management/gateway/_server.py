"""Running the gateway: uvicorn on one socket, in this process (one worker) or in N worker
processes (uvicorn's supervisor), each with its own router; the event log kept current.

This process (the parent, or the only worker) moves the spool's closed segments into the
Parquet log every ``INGEST_INTERVAL_S`` and once more after the last worker stopped, so the log
holds every request served (``amm report``, ``amm query`` see them). SIGINT or SIGTERM stops
accepting connections, lets requests in flight finish for ``settings.gateway.shutdown_timeout_s``
(then cancels them: each ends in ``RequestFailed(cancelled)``), closes the engines (their spool
segments), ingests, and returns 0.

With N workers (no Ray) each holds 1/N of every limit (see ``_engine.share_of`` and
``_keys.KeyLimits``). A worker learns what to serve from a spec file named by the
``AMM_GATEWAY_SPEC`` variable (the resolved registry, as JSON: variable names, never keys).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # no httptools: uvicorn's pure-Python parser
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpProtocol  # type: ignore[assignment]

from ..config import RegistryConfig, config_from_dict
from ._app import Gateway
from ._engine import GatewayEngine, LocalEngine
from ._keys import KeyLimits, KeyRing
from ._peers import Peers

log = logging.getLogger(__name__)

SPEC_ENV = "AMM_GATEWAY_SPEC"
INGEST_INTERVAL_S = 2.0
KEY_SPEND_FILE = "gateway-key-spend.jsonl"


@dataclass
class ServeOptions:
    """What ``amm serve`` was asked for."""

    config: RegistryConfig
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    #: where provider keys and ``key_env`` virtual keys are read (None: the process environment)
    env: Mapping[str, str] | None = None
    #: probe the providers' health on the configured interval
    probe: bool = True
    #: called with the bound (host, port) once the server accepts connections
    on_ready: Callable[[str, int], None] | None = None
    #: builds the engine instead of the standalone one (``runtime``'s, on a Ray system)
    engine_factory: Callable[[RegistryConfig], GatewayEngine] | None = None


def key_spend_path(config: RegistryConfig) -> Path:
    return Path(config.settings.data_dir) / "state" / KEY_SPEND_FILE


def build_gateway(config: RegistryConfig, engine: GatewayEngine, *, share: float = 1.0,
                  env: Mapping[str, str] | None = None, peers: Peers | None = None) -> Gateway:
    """A Gateway on ``engine`` with the configured keys (read from ``env``, default the process
    environment) and their limits (``share`` of each); ``peers``: the server's other workers."""
    env = os.environ if env is None else env
    keys = config.settings.gateway.keys
    limits = KeyLimits(keys, timezone=config.settings.budgets.timezone,
                       journal=key_spend_path(config), share=share)
    return Gateway(config, engine, keys=KeyRing(keys, env), limits=limits, peers=peers)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class OneSendTransport:
    """A connection's transport whose writes made in one turn of the event loop leave in one
    send, in order, at the end of that turn (or at :meth:`close`). uvicorn writes a response's
    status line and headers, then its body, each in a send of its own: two packets and two
    wake-ups of the client for a reply that fits in one. Everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what was written (dropped once the connection is closing)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneSendProtocol(_HttpProtocol):
    """uvicorn's HTTP protocol (httptools' parser when installed, as ``http="auto"``) on a
    :class:`OneSendTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, OneSendTransport(
            transport, asyncio.get_running_loop())))


def _uvicorn_config(app: Any, config: RegistryConfig, workers: int, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        # uvloop when installed (auto), httptools' parser on a transport that sends a reply's
        # head and body together; no proxy-headers middleware (nothing here reads the client's
        # address), no access log
        app, loop="auto", http=OneSendProtocol, lifespan="on", access_log=False,
        log_level="warning",
        proxy_headers=False,
        workers=workers, timeout_keep_alive=30, backlog=2048,
        timeout_graceful_shutdown=max(1, round(config.settings.gateway.shutdown_timeout_s)),
        **extra,
    )


def serve(options: ServeOptions) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code (0 after a graceful stop)."""
    config = options.config
    Path(config.settings.data_dir).mkdir(parents=True, exist_ok=True)
    KeyRing(config.settings.gateway.keys, os.environ if options.env is None else options.env)
    KeyLimits(config.settings.gateway.keys, timezone=config.settings.budgets.timezone,
              journal=key_spend_path(config)).close()  # compacts the journal, before workers
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    ingest = _Ingestion(config) if options.engine_factory is None else None
    try:
        if options.workers <= 1:
            _serve_here(options, sock, host, port)
        else:
            _serve_workers(options, sock, host, port)
    finally:
        sock.close()
        if ingest is not None:
            ingest.stop()
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGINT or SIGTERM it shut down gracefully for is not
    raised again afterwards (uvicorn re-raises it, which would end this process before the
    events are ingested and with the signal's exit status instead of 0)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _serve_here(options: ServeOptions, sock: socket.socket, host: str, port: int) -> None:
    config = options.config
    engine = (options.engine_factory(config) if options.engine_factory is not None
              else LocalEngine(config, env=options.env, probe=options.probe))
    gateway = build_gateway(config, engine, env=options.env)
    _freeze_heap()
    server = _Server(_uvicorn_config(gateway.app, config, 1))
    _announce_when_started(server, options, host, port)
    server.run(sockets=[sock])


def _serve_workers(options: ServeOptions, sock: socket.socket, host: str, port: int) -> None:
    from uvicorn.supervisors import Multiprocess

    if options.engine_factory is not None:
        raise ValueError("several workers are for the standalone gateway only")
    config = options.config
    spec = Path(config.settings.data_dir) / "state" / f"gateway-spec-{os.getpid()}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    # the workers' sockets for /metrics (a short path: a socket's is at most 107 bytes)
    run_dir = tempfile.mkdtemp(prefix="amm-serve-")
    spec.write_text(json.dumps({"config": config.model_dump(mode="json"), "run_dir": run_dir,
                                "workers": options.workers, "probe": options.probe}), "utf-8")
    os.environ[SPEC_ENV] = str(spec)
    try:
        uv = _uvicorn_config(f"{__name__}:worker_app", config, options.workers, factory=True)
        supervisor = Multiprocess(uv, sockets=[sock])
        if options.on_ready is not None:
            threading.Thread(target=_wait_ready, args=(host, port, options.on_ready),
                             daemon=True).start()
        supervisor.run()
    finally:
        os.environ.pop(SPEC_ENV, None)
        spec.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_app() -> Any:
    """The ASGI app of one of N workers (uvicorn calls this in each worker process)."""
    spec = json.loads(Path(os.environ[SPEC_ENV]).read_text("utf-8"))
    config = config_from_dict(spec["config"], source="gateway spec")
    share = 1.0 / int(spec["workers"])
    engine = LocalEngine(config, share=share, probe=bool(spec["probe"]))
    app = build_gateway(config, engine, share=share, peers=Peers(spec["run_dir"])).app
    _freeze_heap()
    return app


def _freeze_heap() -> None:
    """What start-up left alive (modules, the registry, the engine: most of the heap) is moved
    out of the cyclic collector's reach, so its full collections, which otherwise walk all of
    it, stop stalling a request now and then (about 0.1 s each here)."""
    gc.collect()
    gc.freeze()


def _announce_when_started(server: uvicorn.Server, options: ServeOptions, host: str,
                           port: int) -> None:
    if options.on_ready is None:
        return
    on_ready = options.on_ready

    def wait() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.01)
        if server.started:
            on_ready(host, port)

    threading.Thread(target=wait, daemon=True).start()


def _wait_ready(host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    """Call ``on_ready`` once a worker answers ``/health`` (any status)."""
    import httpx

    for _ in range(6000):
        try:
            httpx.get(f"http://{host}:{port}/health", timeout=1.0)
        except httpx.TransportError:
            threading.Event().wait(0.05)
            continue
        on_ready(host, port)
        return


class _Ingestion:
    """Spool segments into the Parquet log, every ``INGEST_INTERVAL_S`` in a process of its own
    (writing Parquet takes CPU and the GIL: not in the process serving requests) and once more,
    here, at :meth:`stop`."""

    def __init__(self, config: RegistryConfig) -> None:
        import multiprocessing

        self._config = config
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(
            target=_ingest_every, name="amm-gateway-ingest", daemon=True,
            args=(config.settings.data_dir, config.settings.events.model_dump(), self._stop))
        self._process.start()

    def stop(self) -> None:
        self._stop.set()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        _ingest_once(self._config.settings.data_dir, self._config.settings.events.model_dump())


def _ingest_every(data_dir: str, events: dict[str, Any], stop: Any) -> None:
    """The ingestion process: every ``INGEST_INTERVAL_S`` until ``stop`` is set or the server
    is gone (SIGINT, which a terminal sends the whole group, is left to the server)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    while not stop.wait(INGEST_INTERVAL_S) and os.getppid() == parent:  # not orphaned
        _ingest_once(data_dir, events)


def _ingest_once(data_dir: str, events: dict[str, Any]) -> None:
    from ..config import EventSettings
    from ..events._ingest import SpoolIngestor

    try:
        SpoolIngestor(data_dir, EventSettings(**events)).ingest()
    except OSError as exc:  # the disk: the segments stay in the spool, tried again later
        log.warning("gateway: ingestion failed (%s); the events stay in the spool",
                    type(exc).__name__)
