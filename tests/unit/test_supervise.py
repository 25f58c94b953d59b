"""Supervised background loops (issue 10, item 5): an exception of one iteration is logged (no
data in the line), counted and backed off from; the loop goes on; cancelling it still ends it.
The shells' loops run their bodies through a ``Supervisor``; that each of them does, and
survives, is checked in ``tests/integration/test_full_disk.py`` (the shells import Ray)."""

from __future__ import annotations

import asyncio
import errno
import logging
import threading

import pytest

from api_model_management._clock import ManualClock
from api_model_management._supervise import Supervisor, describe
from api_model_management.errors import SpoolUnavailable

pytestmark = pytest.mark.unit


def scripted_step(outcomes: list):
    """A loop body that raises or returns (the delay) as scripted, then cancels the loop."""
    calls: list[int] = []

    async def step() -> float:
        calls.append(1)
        if not outcomes:
            raise asyncio.CancelledError
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return step, calls


def test_a_loop_survives_failing_iterations_and_backs_off(caplog):
    clock = ManualClock()
    supervisor = Supervisor("test loop", backoff_s=0.1, max_backoff_s=0.3, clock=clock)
    step, calls = scripted_step([RuntimeError("boom"), OSError(errno.ENOSPC, "full"),
                                 KeyError("x"), 1.0, ValueError("again"), 1.0])
    with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
        asyncio.run(supervisor.run(step))
    assert len(calls) == 7  # every scripted iteration ran, then the cancellation ended it
    assert supervisor.errors == 4 and supervisor.last_error == "ValueError"
    assert clock.slept == [0.1, 0.2, 0.3, 1.0, 0.1, 1.0]  # doubling, capped, reset by a success
    assert "RuntimeError" in caplog.text and "errno 28" in caplog.text


def test_cancelling_a_supervised_loop_ends_it():
    supervisor = Supervisor("test loop", clock=ManualClock())
    step, calls = scripted_step([])
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(supervisor.run(step))
    assert supervisor.errors == 0 and len(calls) == 1


def test_the_initial_delay_comes_before_the_first_iteration():
    clock = ManualClock()
    supervisor = Supervisor("test loop", clock=clock)
    step, _ = scripted_step([0.5])
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(supervisor.run(step, initial_delay_s=0.25))
    assert clock.slept == [0.25, 0.5]


def test_a_thread_loop_survives_failing_iterations_until_stopped():
    supervisor = Supervisor("thread loop", backoff_s=0.0)
    stop = threading.Event()
    outcomes: list = [RuntimeError("boom"), OSError(errno.EIO, "io"), 0.0]

    def step() -> float:
        if not outcomes:
            stop.set()
            return 0.0
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    supervisor.run_thread(step, stop)
    assert supervisor.errors == 2 and outcomes == []


def test_a_log_line_carries_no_data_from_arbitrary_errors():
    secret = "sk-test-0123456789abcdef the tangerine protocol prompt"
    try:
        raise ValueError(secret)
    except ValueError as exc:
        line = describe(exc)
    assert secret not in line and "ValueError at test_supervise.py:" in line
    assert "ENOSPC" not in describe(OSError(errno.ENOSPC, "No space left on device"))
    assert "errno 28 (No space left on device)" in describe(OSError(errno.ENOSPC,
                                                                    "No space left on device"))
    assert "cannot take writes" in describe(SpoolUnavailable("the spool cannot take writes"))
