"""What the standalone gateway engine leaves for after a reply (``_engine._AfterReply``): the
request's events, terminal one included, are in the spool before the reply is sent; the answer's
evaluation, the registry budget's settlement, the folding into the learnt quality and the spool's
housekeeping follow it. Budgets and keys end up charged exactly what the terminal event says."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from api_model_management.config import config_from_dict, demo_config
from api_model_management.events import RequestCompleted, RequestFailed, ResponseEvaluated
from api_model_management.events._spool import pending_events
from api_model_management.gateway import Gateway, KeyLimits, KeyRing, LocalEngine, new_key

from _fakes import GOOD_PROMPT, fake_adapters

pytestmark = pytest.mark.unit

MODEL = "gpt-4.1-mini"
KEY, KEY_HASH = new_key()


def gateway(tmp_path: Path) -> tuple[Gateway, LocalEngine]:
    data = demo_config().model_dump(mode="python")
    data["settings"]["data_dir"] = str(tmp_path / "data")
    data["settings"]["budgets"] = {"enforcement": "strict",
                                   "limits": [{"scope": "global", "limit_usd": "50"}]}
    data["settings"]["gateway"] = {"keys": [{"name": "dev", "key_sha256": KEY_HASH,
                                             "budget_usd": "10"}]}
    config = config_from_dict(data, source="test")
    env = {p.api_key_env: "provider-key" for p in config.providers.values() if p.api_key_env}
    engine = LocalEngine(config, env=env, probe=False, adapters=fake_adapters(config))
    keys = config.settings.gateway.keys
    return Gateway(config, engine, keys=KeyRing(keys, {}), limits=KeyLimits(keys)), engine


async def call(gw: Gateway, sent: list[str]) -> dict[str, Any]:
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": GOOD_PROMPT}],
                         "temperature": 0.7})
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "root_path": "", "query_string": b"",
             "server": ("127.0.0.1", 4000), "client": ("127.0.0.1", 5555),
             "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                         (b"content-type", b"application/json")]}
    reply: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            reply["status"] = message["status"]
            reply["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            reply["body"] = orjson.loads(message["body"])
            sent.append("reply")

    await gw.app(scope, receive, send)
    return reply


async def after_replies() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_the_terminal_event_is_in_the_spool_before_the_reply_and_the_rest_follows(
        tmp_path: Path) -> None:
    gw, engine = gateway(tmp_path)
    data_dir = engine.config.settings.data_dir
    order: list[str] = []
    spool = engine.manager.spool
    write, tick = spool.write, spool.tick

    def recorded_write(events: Any) -> None:
        order.extend(type(e).__name__ for e in events)
        write(events)

    def recorded_tick() -> None:
        order.append("tick")
        tick()

    spool.write = recorded_write  # type: ignore[method-assign]
    spool.tick = recorded_tick  # type: ignore[method-assign]
    ledger = engine.costs.core

    async def main() -> None:
        reply = await call(gw, order)
        assert reply["status"] == 200
        request_id = reply["headers"]["x-amm-request-id"]
        cost = Decimal(reply["headers"]["x-amm-cost-usd"])
        # the reply is out: its terminal event is in the spool (on disk for any reader)
        done = [e for e in pending_events(data_dir) if e.request_id == request_id]
        assert [type(e).__name__ for e in done] == ["AttemptStarted", "ModelSelected",
                                                    "RequestCompleted"]
        assert order.index("RequestCompleted") < order.index("reply")
        # the key is charged before the reply; the registry budget holds the worst case
        assert gw.limits.status()[0].spent_usd == cost and gw.limits.status()[0].reserved_usd == 0
        assert ledger.reserved_usd() > 0 and ledger.spend("global", "*", "day") == 0
        assert not engine._learning.dirty  # its quality not folded yet

        await after_replies()
        after = order[order.index("reply") + 1:]  # the call's outcome may change health too
        assert "ResponseEvaluated" in after and after[-1] == "tick"
        assert "RequestCompleted" not in after
        events = [e for e in pending_events(data_dir) if e.request_id == request_id]
        terminal = [e for e in events if isinstance(e, RequestCompleted | RequestFailed)]
        assert len(terminal) == 1 and terminal[0].cost_usd == cost
        assert len([e for e in events if isinstance(e, ResponseEvaluated)]) == 1
        assert ledger.reserved_usd() == 0 and ledger.spend("global", "*", "day") == cost
        assert engine._learning.dirty  # folded; pushed to selection at the next full sync
        await engine.aclose()

    asyncio.run(main())


def test_work_still_waiting_is_done_when_the_engine_closes(tmp_path: Path) -> None:
    gw, engine = gateway(tmp_path)
    data_dir = engine.config.settings.data_dir

    async def main() -> None:
        replies = [await call(gw, []) for _ in range(3)]
        await engine.aclose()  # before the loop ran what was left for after the replies
        ids = {r["headers"]["x-amm-request-id"] for r in replies}
        events = [e for e in pending_events(data_dir) if e.request_id in ids]
        assert len([e for e in events if isinstance(e, ResponseEvaluated)]) == 3
        assert len([e for e in events if isinstance(e, RequestCompleted)]) == 3
        assert engine.costs.core.reserved_usd() == 0
        assert engine.costs.core.spend("global", "*", "day") == sum(
            Decimal(r["headers"]["x-amm-cost-usd"]) for r in replies)

    asyncio.run(main())


def test_the_engines_spool_syncs_in_its_thread(tmp_path: Path) -> None:
    _, engine = gateway(tmp_path)
    assert engine.manager.spool.writer._syncer is not None

    async def main() -> None:
        await engine.aclose()

    asyncio.run(main())
    assert engine.manager.spool.writer._syncer is None
