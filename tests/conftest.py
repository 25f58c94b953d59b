"""Test layers (style.md §5): unit and property tests must not start Ray; integration tests share
one Ray session (started once, sized for 2 cores) and talk to the emulator over loopback."""

from __future__ import annotations

import builtins
import os
import socket
from pathlib import Path

import pytest

from _ray_session import start_session_ray

SHARED_DATA = Path(os.environ.get("AMM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_data_or_skip() -> Path:
    """The real external data beside the checkout, or skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}); this test needs the real traces")
    return SHARED_DATA


class LayerViolation(AssertionError):
    """A unit or property test reached for Ray or the network."""


def _guarded_import(real_import):
    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and (name == "ray" or name.startswith("ray.")):
            raise LayerViolation(
                f"unit and property tests must not import Ray ({name!r}); mark the test "
                "integration, or keep the code under test out of api_model_management.runtime"
            )
        return real_import(name, globals, locals, fromlist, level)

    return guarded


def _refuse_network(method_name: str):
    real = getattr(socket.socket, method_name)

    def refuse(self, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise LayerViolation(
                f"unit and property tests must not open network sockets (socket.{method_name}); "
                "mark the test integration or inject a transport"
            )
        return real(self, *args, **kwargs)

    return refuse


@pytest.fixture(autouse=True)
def _unit_layer_guard(request, monkeypatch):
    """Unit and property tests cannot import Ray or open a network socket (as Ray Serve's
    ``disallow_ray_init``, stricter): every ``import ray`` statement they execute fails, whether
    or not an integration test imported Ray earlier in the session, and so does any TCP/UDP
    ``connect``/``bind``. (Local socketpairs, as event loops use, are allowed.)"""
    if request.node.get_closest_marker("integration") is not None:
        return
    monkeypatch.setattr(builtins, "__import__", _guarded_import(builtins.__import__))
    for method_name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method_name, _refuse_network(method_name))


@pytest.fixture(autouse=True)
def _package_logger_restored():
    """Entry points (``amm`` commands, facades, ``ModelManagement.start``, shells built in
    process) set the package logger's level and add a console handler; each test leaves the level
    as it found it and no console handler it added (the redaction handler stays)."""
    import logging

    logger = logging.getLogger("api_model_management")
    level, before = logger.level, set(logger.handlers)
    yield
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, "_amm_console", False)]:
        if handler not in before:
            logger.removeHandler(handler)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session: 2 CPUs, no dashboard, shut down at the end."""
    import ray

    start_session_ray()
    yield ray
    ray.shutdown()
