"""``settings.events.ack="shipped"`` behind the gateway: an answer whose events did not reach the
shared log in time (the router's ``EventsNotShipped`` carrying it) is still given (200,
``x-amm-events-durable: false``, the key charged), never lost to a 503 that an SDK would retry
(a second paid call); without an answer the error stays a 503. The router's side (when it raises,
its events in the spool) is ``test_ack_shipped``'s."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from api_model_management import ModelRequest
from api_model_management.config import config_from_dict, demo_config
from api_model_management.errors import EventsNotShipped
from api_model_management.events import RequestCompleted
from api_model_management.events._ingest import read_all_events
from api_model_management.gateway import Gateway, KeyLimits, KeyRing, LocalEngine, new_key

from _fakes import GOOD_PROMPT, fake_adapters

pytestmark = pytest.mark.unit

KEY, KEY_HASH = new_key()


def gateway_at(tmp_path: Path) -> Gateway:
    data = demo_config().model_dump(mode="python")
    data["settings"]["data_dir"] = str(tmp_path / "data")
    data["settings"]["events"] = {**data["settings"]["events"], "ack": "shipped", "fsync": "never"}
    data["settings"]["gateway"] = {"keys": [{"name": "dev", "key_sha256": KEY_HASH,
                                             "budget_usd": "5"}]}
    config = config_from_dict(data, source="test")
    env = {p.api_key_env: "provider-key" for p in config.providers.values() if p.api_key_env}
    engine = LocalEngine(config, env=env, probe=False, adapters=fake_adapters(config))
    keys = config.settings.gateway.keys
    return Gateway(config, engine, keys=KeyRing(keys, {}), limits=KeyLimits(keys))


async def post(gateway: Gateway) -> tuple[int, dict[str, str], Any]:
    body = orjson.dumps({"model": "gpt-4.1-mini",
                         "messages": [{"role": "user", "content": GOOD_PROMPT}]})
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": "",
             "query_string": b"", "headers": [(b"authorization", f"Bearer {KEY}".encode())]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gateway.app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, orjson.loads(sent[1]["body"])


def not_shipped(engine: Any, with_answer: bool) -> None:
    """``engine.complete`` answers, then raises as the router does when the log is unreachable."""
    complete = engine.complete

    async def answered_not_shipped(request: ModelRequest) -> Any:
        response = await complete(request)
        raise EventsNotShipped("events not in the log within 10 s", request_id=response.request_id,
                               response=response if with_answer else None,
                               component="EventShipper", cause="timeout", retry_after_s=1.0)

    engine.complete = answered_not_shipped


def test_an_answer_not_shipped_in_time_is_given_and_marked_not_durable(tmp_path: Path) -> None:
    gateway = gateway_at(tmp_path)

    async def main() -> None:
        status, headers, _ = await post(gateway)
        assert status == 200 and "x-amm-events-durable" not in headers
        not_shipped(gateway.engine, with_answer=True)
        status, headers, body = await post(gateway)
        assert status == 200 and headers["x-amm-events-durable"] == "false"
        assert body["choices"][0]["message"]["content"] and Decimal(headers["x-amm-cost-usd"]) > 0
        (key,) = gateway.limits.status()
        assert key.reserved_usd == 0 and key.spent_usd > Decimal(headers["x-amm-cost-usd"])
        assert sum(v for k, v in gateway.metrics.snapshot([], []).requests.items()
                   if ("status", "200") in k) == 2
        await gateway.engine.aclose()
        [not_durable] = [e for e in read_all_events(tmp_path / "data", ["RequestCompleted"])
                         if e.request_id == headers["x-amm-request-id"]]
        assert isinstance(not_durable, RequestCompleted)  # in the spool: the log gets it later

    asyncio.run(main())


def test_without_an_answer_it_stays_a_503_and_the_hold_is_released(tmp_path: Path) -> None:
    gateway = gateway_at(tmp_path)
    not_shipped(gateway.engine, with_answer=False)

    async def main() -> None:
        status, headers, body = await post(gateway)
        assert status == 503 and headers["retry-after"] == "1"
        assert body["error"]["code"] == "events_not_shipped"
        (key,) = gateway.limits.status()
        assert key.reserved_usd == 0
        await gateway.engine.aclose()

    asyncio.run(main())


def test_a_stream_whose_events_are_late_ends_as_any_other_and_the_key_pays(tmp_path: Path) -> None:
    gateway = gateway_at(tmp_path)
    stream = gateway.engine.stream

    async def late(request: ModelRequest) -> Any:
        final = None
        async for chunk in stream(request):  # to its end: the request is over, as in the router
            if chunk.done:
                final = chunk
            else:
                yield chunk
        # as the router does when the log is late: the last chunk rides on the error
        raise EventsNotShipped("events not in the log within 10 s", final=final,
                               request_id=request.request_id, component="EventShipper",
                               cause="timeout", retry_after_s=1.0)

    gateway.engine.stream = late
    body = orjson.dumps({"model": "gpt-4.1-mini", "stream": True,
                         "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": GOOD_PROMPT}]})
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": "",
             "query_string": b"", "headers": [(b"authorization", f"Bearer {KEY}".encode())]}
    sent: list[dict[str, Any]] = []
    received: list[bool] = []

    async def main() -> None:
        ended = asyncio.Event()

        async def receive() -> dict[str, Any]:  # the body, then a client there until the end
            if not received:
                received.append(True)
                return {"type": "http.request", "body": body, "more_body": False}
            await ended.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                ended.set()

        await gateway.app(scope, receive, send)
        assert sent[0]["status"] == 200
        text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
        assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text
        usage = [orjson.loads(line[6:]) for line in text.splitlines()
                 if line.startswith("data: {") and '"usage":{' in line]
        cost = Decimal(str(usage[-1]["usage"]["cost_usd"]))
        (key,) = gateway.limits.status()
        assert cost > 0 and key.reserved_usd == 0 and key.spent_usd == cost
        await gateway.engine.aclose()

    asyncio.run(main())
