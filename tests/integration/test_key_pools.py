"""Key pools over real loopback HTTP (issue 12, item 5), without Ray.

A registry whose provider lists two key variables, keys read from the environment as the
system reads them (``build_local_router`` -> ``load_secrets`` -> the adapter's pool), the
emulator limiting one key to two requests a minute: a burst of concurrent requests all succeed
on the one model allowed, the limited key's share moves to the other key, and nothing reaches
the failover path or the provider's health.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management._clock import SYSTEM_CLOCK
from api_model_management.config import (
    RegistryConfig,
    config_from_dict,
    demo_config,
    with_emulator_port,
)
from api_model_management.emulator import Profile
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.events import AttemptFailed, FailoverTriggered, RequestCompleted
from api_model_management.health._core import HealthCore
from api_model_management.routing import ListEvents, build_local_router

pytestmark = pytest.mark.integration

KEY_A = "sk-loopback-pool-aaaa-0001"
KEY_B = "sk-loopback-pool-bbbb-0002"
MODELS = {"openai": "gpt-4.1-mini", "google": "gemini-2.5-flash"}
VARIABLES = {"openai": ("POOL_OPENAI_1", "POOL_OPENAI_2"), "google": ("POOL_GOOGLE_1", "POOL_GOOGLE_2")}
BURST = 12


@pytest.fixture
def limited(fresh_emulator: EmulatorServer) -> Iterator[EmulatorServer]:
    """The emulator letting key A make two requests a minute per model (B: plenty)."""
    fresh_emulator.set_profile(Profile.model_validate({"key_rate_limits": {
        KEY_A: {"requests_per_minute": 2}, KEY_B: {"requests_per_minute": 10_000}}}))
    yield fresh_emulator


def pooled_config(port: int) -> RegistryConfig:
    """The demo registry on the emulator, openai and google each with a pool of two keys."""
    data = with_emulator_port(demo_config(), port).model_dump(mode="python")
    for provider, (first, second) in VARIABLES.items():
        data["providers"][provider].update(api_key_env=first, api_key_envs=[second])
    return config_from_dict(data)


class HealthOutcomes:
    """Call outcomes into one HealthCore per provider, as the HealthChecker actors get them."""

    def __init__(self, config: RegistryConfig) -> None:
        self.cores = {name: HealthCore(name, config.settings.health_check, clock=SYSTEM_CLOCK)
                      for name in config.providers}

    def outcome(self, provider: str, model_id: str, ok: bool, error_kind: str | None,
                latency_ms: float, quality: float | None = None) -> None:
        self.cores[provider].record_outcome(ok, error_kind, model_id)


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_a_burst_rides_one_keys_limit_on_the_other_key(provider: str, limited: EmulatorServer,
                                                      tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)  # no .env but the test's
    config = pooled_config(limited.port)
    first, second = VARIABLES[provider]
    env = {first: KEY_A, second: KEY_B}  # the other providers have no key: not callable
    caplog.set_level(logging.DEBUG, logger="api_model_management")
    health = HealthOutcomes(config)
    events = ListEvents()
    only = SelectionConstraints(allowed_models=(MODELS[provider],))

    async def burst() -> list[Any]:
        router = build_local_router(config, env=env, events=events)
        router.outcomes = health
        try:
            plain = [router.complete(ModelRequest(prompt=f"Name a colour ({i}).", constraints=only))
                     for i in range(BURST - 1)]
            answers = await asyncio.gather(*plain)
            chunks = [c async for c in router.stream(
                ModelRequest(prompt="Name a shape.", constraints=only))]
            assert router.adapters[provider].keys.names == (first, second)  # type: ignore[attr-defined]
            return [*answers, chunks[-1]]
        finally:
            for adapter in router.adapters.values():
                await adapter.aclose()

    answers = asyncio.run(burst())
    assert [a.model_id for a in answers] == [MODELS[provider]] * BURST
    assert len([e for e in events.events if isinstance(e, RequestCompleted)]) == BURST
    assert [e for e in events.events if isinstance(e, AttemptFailed | FailoverTriggered)] == []
    snapshot = health.cores[provider].snapshot()
    assert snapshot.state == "healthy" and snapshot.window_failures == 0
    keys = limited.stats()["keys"]
    assert isinstance(keys, dict)
    assert keys[KEY_A]["200"] <= 2 and keys[KEY_A]["200"] + keys[KEY_B]["200"] == BURST
    assert keys[KEY_B]["200"] >= BURST - 2
    said = caplog.text + " ".join(e.model_dump_json() for e in events.events)
    assert KEY_A not in said and KEY_B not in said
    if keys[KEY_A].get("429"):
        assert f"key {first} rate-limited; retrying on key {second}" in caplog.text
