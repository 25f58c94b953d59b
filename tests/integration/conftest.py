"""Integration fixtures: one emulator (real uvicorn on a free loopback port) for the session.

``emulator`` is session-scoped and fault-free when the session starts; a test that changes its
profile must use ``fresh_emulator``, which restores the fault-free profile (and empties rate
windows and statistics) before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api_model_management.emulator import Profile
from api_model_management.emulator.testing import EmulatorServer


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The session's emulator, fault-free."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def fresh_emulator(emulator: EmulatorServer) -> Iterator[EmulatorServer]:
    """The session emulator, reset to a fault-free profile before and after the test."""
    emulator.set_profile(Profile())
    yield emulator
    emulator.set_profile(Profile())
