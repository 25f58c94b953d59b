"""Run the emulator inside a test: a real uvicorn server on a free loopback port, in a thread.

    with EmulatorServer() as emu:
        httpx.post(emu.url_for("openai") + "/chat/completions", ...)

    async with EmulatorServer(profile=Profile(...)) as emu:
        emu.set_profile(...); emu.advance(30); emu.stats()

Control calls (``set_profile``, ``reset``, ``advance``, ``stats``) run on the server's event loop,
so they never race with requests being served.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import uvicorn

from .._clock import Clock
from ._app import EmulatorApp
from ._engine import Engine
from ._profile import Profile, load_profile

T = TypeVar("T")
_START_TIMEOUT_S = 10.0
_PROVIDER_PATHS = {"openai": "/v1", "anthropic": "", "gemini": "", "google": "", "ollama": ""}


def server_config(app: EmulatorApp, host: str, port: int | None = None,
                  sock: socket.socket | None = None) -> uvicorn.Config:
    """The uvicorn settings the emulator runs with (fast loop and parser when installed)."""
    return uvicorn.Config(
        app, host=host, port=port or 0, loop="auto", http="auto", lifespan="off",
        access_log=False, log_level="warning", timeout_graceful_shutdown=1,
        timeout_keep_alive=30, backlog=2048,
    )


def _free_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class EmulatorServer:
    """The emulator on ``host:port`` (0 picks a free port) in a background thread."""

    def __init__(self, profile: Profile | Path | str | None = None, host: str = "127.0.0.1",
                 port: int = 0, clock: Clock | None = None) -> None:
        if isinstance(profile, str | Path):
            profile = load_profile(Path(profile))
        self.engine = Engine(profile, clock)
        self.app = EmulatorApp(self.engine)
        self.host = host
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    # ---- lifecycle

    def start(self) -> EmulatorServer:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._sock = _free_socket(self.host, self._requested_port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(server_config(self.app, self.host, self.port))
        self._thread = threading.Thread(target=self._serve, name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        self._wait_started()
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._sock is not None
        self._server.run(sockets=[self._sock])

    def _wait_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator failed to start (see the log above)")
            if waited > _START_TIMEOUT_S:
                raise RuntimeError(f"the emulator did not start within {_START_TIMEOUT_S} s")
            deadline.wait(0.01)
            waited += 0.01

    def stop(self) -> None:
        """Release hung requests, stop the server and join its thread."""
        if self._server is None or self._thread is None:
            return
        if self._thread.is_alive() and self._loop() is not None:
            self._call(self.app.release_hangs)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the emulator thread did not stop within 10 s")
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmulatorServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    # ---- addresses

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, provider: str) -> str:
        """The base URL a provider's client or ProviderConfig should use (OpenAI's ends in /v1)."""
        try:
            return self.base_url + _PROVIDER_PATHS[provider]
        except KeyError:
            raise ValueError(f"unknown provider {provider!r}; expected one of {sorted(_PROVIDER_PATHS)}") from None

    # ---- control (run on the server loop)

    def set_profile(self, profile: Profile | Path | str) -> None:
        """Swap the fault profile; rate windows and statistics reset, outages count from now."""
        if isinstance(profile, str | Path):
            profile = load_profile(Path(profile))
        self._call(lambda: self.engine.set_profile(profile))

    def reset(self) -> None:
        """Clear rate windows and statistics."""
        self._call(self.engine.reset)

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (outage windows, rate windows)."""
        self._call(lambda: self.engine.advance(seconds))

    def stats(self) -> dict[str, object]:
        """Requests per model and per provider by outcome; see :meth:`Engine.stats`."""
        return self._call(self.engine.stats)

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        servers = getattr(self._server, "servers", None)
        if not servers:
            return None
        return servers[0].get_loop()

    def _call(self, func: Callable[[], T]) -> T:
        loop = self._loop()
        if loop is None or loop.is_closed():
            return func()
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(func())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=10)
