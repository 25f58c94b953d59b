"""The standalone engine's cheap sync of the selector (``LocalEngine.sync``: what requests
changed at once, everything on an interval) and the gateway's ASGI dispatch (``_App``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api_model_management import ModelRequest
from api_model_management.config import config_from_dict, demo_config
from api_model_management.errors import NoEligibleModel
from api_model_management.gateway import Gateway, KeyLimits, KeyRing, LocalEngine, _engine, new_key

from _fakes import GOOD_PROMPT, fake_adapters

pytestmark = pytest.mark.unit

MODEL = "gpt-4.1-mini"
KEY, KEY_HASH = new_key()


def engine(tmp_path: Path, rpm: int = 1000) -> LocalEngine:
    data = demo_config().model_dump(mode="python")
    data["settings"]["data_dir"] = str(tmp_path / "data")
    for model in data["models"]:
        if model["id"] == MODEL:
            model["rate_limits"] = {"requests_per_minute": rpm, "tokens_per_minute": 10**9}
    data["settings"]["gateway"] = {"keys": [{"name": "dev", "key_sha256": KEY_HASH}]}
    config = config_from_dict(data, source="test")
    env = {p.api_key_env: "provider-key" for p in config.providers.values() if p.api_key_env}
    return LocalEngine(config, env=env, probe=False, adapters=fake_adapters(config))


def pinned() -> ModelRequest:
    return ModelRequest(prompt=GOOD_PROMPT, model_id=MODEL)


async def after_replies() -> None:
    """Let the event loop run what the engine left for after the replies (two turns)."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_limit_a_request_used_up_is_seen_by_the_next_selection(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "FULL_SYNC_S", 1e9)  # only the first sync is a full one
    e = engine(tmp_path, rpm=1)

    async def main() -> None:
        e.sync()
        e.selector.core.select(pinned())  # eligible before
        response = await e.complete(pinned())  # the one request of the minute
        assert response.model_id == MODEL
        assert MODEL in e._admission.changed  # noted, for the next sync
        e.sync()
        assert e._admission.changed == set()
        with pytest.raises(NoEligibleModel) as caught:
            e.selector.core.select(pinned())
        assert "rate" in caught.value.filtered[MODEL]
        await e.aclose()

    asyncio.run(main())


def test_a_failing_provider_reaches_selection_with_the_outcome(tmp_path: Path) -> None:
    e = engine(tmp_path)
    outcomes = e.manager.router.outcomes
    provider = e.config.model(MODEL).provider

    async def main() -> None:
        e.sync()
        outcomes.outcome(provider, MODEL, True, None, 5.0)
        assert provider in outcomes.steady  # healthy, nothing unavailable
        for _ in range(50):
            outcomes.outcome(provider, MODEL, False, "server_error", 5.0)
            if e.health.provider_state(provider) == "unhealthy":
                break
        assert e.health.provider_state(provider) == "unhealthy"
        assert provider not in outcomes.steady
        with pytest.raises(NoEligibleModel):
            e.selector.core.select(pinned())
        await e.aclose()

    asyncio.run(main())


def test_the_fast_path_answers_500_for_an_unexpected_error_and_the_rest_goes_to_starlette(
        tmp_path: Path) -> None:
    e = engine(tmp_path)
    gateway = Gateway(e.config, e, keys=KeyRing(e.config.settings.gateway.keys, {}),
                      limits=KeyLimits(e.config.settings.gateway.keys))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    gateway.router.request = broken  # type: ignore[method-assign]

    async def call(method: str, path: str) -> tuple[list[int], BaseException | None]:
        body = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
        scope = {"type": "http", "method": method, "path": path, "root_path": "",
                 "query_string": b"", "headers": [(b"authorization", f"Bearer {KEY}".encode())]}
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        try:
            await gateway.app(scope, receive, send)
        except RuntimeError as exc:
            return statuses, exc
        return statuses, None

    async def main() -> None:
        statuses, raised = await call("POST", "/v1/chat/completions")
        assert statuses == [500] and isinstance(raised, RuntimeError)  # and raised for the log
        assert await call("POST", "/v1/nowhere") == ([404], None)
        assert await call("GET", "/v1/chat/completions") == ([405], None)
        await e.aclose()

    asyncio.run(main())


def test_quality_learnt_from_answers_reaches_selection_at_the_next_full_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = engine(tmp_path)
    agent = "default"

    async def main() -> None:
        monkeypatch.setattr(_engine, "FULL_SYNC_S", 1e9)
        e.sync()
        before = e.selector.core.quality_for(MODEL, agent)
        for _ in range(5):
            await e.complete(pinned())  # each answer is evaluated and folded after the reply
        await after_replies()
        learnt = e.manager.quality.quality(MODEL, agent)
        assert learnt != before and e._learning.dirty
        assert e.selector.core.quality_for(MODEL, agent) == before  # not pushed yet
        monkeypatch.setattr(_engine, "FULL_SYNC_S", 0.0)
        e.sync()
        assert not e._learning.dirty
        assert e.selector.core.quality_for(MODEL, agent) == pytest.approx(learnt)
        await e.aclose()

    asyncio.run(main())
