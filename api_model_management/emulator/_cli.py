"""``amm emulator``: serve the emulator in the foreground until Ctrl-C."""

from __future__ import annotations

import socket
from pathlib import Path

import typer
import uvicorn

from ._app import EmulatorApp
from ._engine import Engine
from ._profile import ProfileError, load_profile
from .testing import server_config

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def emulator_command(host: str, port: int, profile: Path | None) -> int:
    """Run the emulator; returns the exit code (2 for bad input)."""
    if host not in _LOOPBACK:
        typer.secho(f"error: the emulator listens on loopback only, not {host!r}", fg="red", err=True)
        return 2
    try:
        engine = Engine(load_profile(profile) if profile else None)
    except ProfileError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        typer.secho(f"error: cannot listen on {host}:{port} ({exc.strerror})", fg="red", err=True)
        sock.close()
        return 2
    bound = sock.getsockname()[1]
    app = EmulatorApp(engine)
    server = uvicorn.Server(server_config(app, host, bound))
    source = str(profile) if profile else "no faults"
    typer.echo(f"amm emulator on http://{host}:{bound} (openai /v1, anthropic, gemini /v1beta, ollama /api; "
               f"profile: {source}); Ctrl-C to stop", err=False)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
