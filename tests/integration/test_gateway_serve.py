"""The gateway on Ray Serve (``amm serve --ray-serve``): the same ASGI app in two Serve replicas,
each holding a router on the system's actors, behind Serve's proxy on 127.0.0.1, the emulator
behind them; the official OpenAI and Anthropic SDKs in front. Then SIGTERM: exit 0, every request
served has exactly one terminal event in the log, no key or prompt in the log or the output.

The server runs as its own process with its own local Ray, not in the session's Ray: a replica
reads the provider keys from its environment (keys are never part of a deployment), and the
session Ray's workers were started before, and without, this module's keys (the emulator
refuses a request without one). The checks that need no server use the session Ray.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serve_process import ServeProcess

from api_model_management.config import demo_config, override, with_emulator_port
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.errors import ComponentUnavailable, ConfigError, InvalidInput
from api_model_management.events._ingest import read_all_events
from api_model_management.gateway import key_hash, new_key

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("ray.serve") is None
                                 or importlib.util.find_spec("openai") is None
                                 or importlib.util.find_spec("anthropic") is None,
                                 reason="Ray Serve (the serve extra) and the SDKs are needed")]

PROMPT = "Describe the water cycle: evaporation, condensation and precipitation"
KEY, _ = new_key()
TERMINAL = {"RequestCompleted", "RequestFailed"}


@pytest.fixture(scope="module")
def served(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One ``amm serve --ray-serve --replicas 2`` for the module; stopped by the last test (or
    here, if a test before it failed)."""
    tmp = tmp_path_factory.mktemp("gateway-serve")
    registry = with_emulator_port(demo_config(), emulator.port).model_dump(mode="json")
    registry["settings"]["data_dir"] = str(tmp / "data")
    registry["settings"]["routers"] = {"replicas": 1}
    registry["settings"]["gateway"] = {
        "keys": [{"name": "dev", "key_sha256": key_hash(KEY), "agent_type": "coder"}],
        "serve": {"num_cpus": 0.1, "min_replicas": 1, "max_replicas": 4}}
    path = tmp / "registry.json"
    path.write_text(json.dumps(registry))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMM_DEMO", "RAY_ADDRESS"))}
    for provider in demo_config().providers.values():
        if provider.api_key_env:
            env[provider.api_key_env] = "emulator-key"
    env.update(API_MODEL_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
    server = ServeProcess(["--config", str(path), "--ray-serve", "--replicas", "2", "--port", "0"],
                          env, start_timeout_s=240)
    state: dict[str, Any] = {"server": server, "data_dir": tmp / "data", "served": set()}
    try:
        yield state
    finally:
        server.stop()


def _client(state: dict[str, Any], key: str = KEY) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{state['server'].base_url}/v1", api_key=key, max_retries=0)


def test_openai_sdk_plain_and_streamed_through_serve(served: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    with _client(served) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4.1-mini",
                                                               messages=messages)
        reply = raw.parse()
        served["served"].add(raw.headers["x-amm-request-id"])
        assert reply.model == raw.headers["x-amm-model"] == "gpt-4.1-mini"
        assert "water" in reply.choices[0].message.content.lower()
        assert raw.headers["x-amm-replica"]
        chunks = list(client.chat.completions.create(
            model="gpt-4.1-mini", messages=messages, stream=True,
            stream_options={"include_usage": True}))
        served["served"].add(chunks[0].id.removeprefix("chatcmpl-"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content  # the emulator answers deterministically
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_anthropic_sdk_through_serve(served: dict[str, Any]) -> None:
    import anthropic

    with anthropic.Anthropic(base_url=served["server"].base_url, api_key=KEY,
                             max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=200,
            messages=[{"role": "user", "content": PROMPT}])
        message = raw.parse()
    served["served"].add(raw.headers["x-amm-request-id"])
    assert message.model == "claude-haiku-4-5" and message.stop_reason == "end_turn"
    assert message.content[0].text and message.usage.output_tokens > 0


def test_a_wrong_key_is_refused_with_401(served: dict[str, Any]) -> None:
    import openai

    with _client(served, "amm-not-a-key") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])


def test_two_replicas_answer_each_with_its_router(served: dict[str, Any]) -> None:
    """Serve spreads requests over both replicas (the header names the one that answered);
    each one's /health is its own router's view of the system."""
    base = served["server"].base_url
    seen: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(40):
            health = client.get("/health")
            assert health.status_code == 200
            seen[health.headers["x-amm-replica"]] = health.json()
            if len(seen) == 2:
                break
        for _ in range(6):
            reply = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                                json={"model": "auto", "messages": [{"role": "user", "content": PROMPT}]})
            assert reply.status_code == 200
            served["served"].add(reply.headers["x-amm-request-id"])
        metrics = client.get("/metrics")
    assert len(seen) == 2
    assert all(h["mode"] == "ray-serve" and h["ready"] for h in seen.values())
    assert all(set(h["providers"]) == set(demo_config().providers) for h in seen.values())
    assert metrics.status_code == 200 and 'scope="global"' in metrics.text  # the CostLedger's


def test_sigterm_stops_serve_and_the_system_with_one_terminal_event_per_request(
        served: dict[str, Any]) -> None:
    server = served["server"]
    assert server.stop() == 0, server.output
    logged = read_all_events(served["data_dir"])
    terminal: dict[str, int] = {}
    for event in logged:
        if type(event).__name__ in TERMINAL:
            terminal[event.request_id] = terminal.get(event.request_id, 0) + 1
    assert len(served["served"]) == 9  # every request served above, each under its own id
    assert {rid: terminal.get(rid, 0) for rid in served["served"]} == dict.fromkeys(served["served"], 1)
    dumped = json.dumps([e.model_dump(mode="json") for e in logged])
    for secret in (KEY, PROMPT, "emulator-key"):
        assert secret not in dumped and secret not in server.output


# -- what needs no server --------------------------------------------------------------------------
def test_deployment_options_fixed_or_autoscaling() -> None:
    from api_model_management.runtime._serve import deployment_options, most_replicas

    config = override(demo_config(), settings={"gateway": {
        "shutdown_timeout_s": 7, "serve": {"min_replicas": 2, "max_replicas": 5,
                                           "target_ongoing_requests": 8, "num_cpus": 0.5}}})
    scaling = deployment_options(config)
    assert scaling["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 5,
                                             "initial_replicas": 2, "target_ongoing_requests": 8}
    assert "num_replicas" not in scaling and most_replicas(scaling) == 5
    assert scaling["ray_actor_options"] == {"num_cpus": 0.5}
    assert scaling["graceful_shutdown_timeout_s"] == 7
    assert scaling["logging_config"] == {"enable_access_log": False}
    fixed = deployment_options(config, replicas=3)
    assert fixed["num_replicas"] == most_replicas(fixed) == 3 and "autoscaling_config" not in fixed
    equal = override(config, settings={"gateway": {"serve": {"min_replicas": 4, "max_replicas": 4}}})
    assert deployment_options(equal)["num_replicas"] == 4
    with pytest.raises(InvalidInput):
        deployment_options(config, replicas=0)
    with pytest.raises(ConfigError, match="min_replicas"):
        override(config, settings={"gateway": {"serve": {"min_replicas": 3, "max_replicas": 2}}})


def test_concurrency_limits_are_cut_for_the_replicas_routers() -> None:
    from api_model_management.routing._concurrency import ConcurrencyLimits
    from api_model_management.runtime._serve import serve_config

    config = override(demo_config(), settings={
        "routers": {"replicas": 2, "embedded": True},
        "concurrency": {"max_in_flight": 100, "per_model": {"gpt-4.1": 10},
                        "default_per_provider": 3}})
    cut = serve_config(config, 4)
    routers = config.settings.routers.count() + 4  # the system's and one per replica
    for before, after in [(100, cut.settings.concurrency.max_in_flight),
                          (10, cut.settings.concurrency.per_model["gpt-4.1"]),
                          (3, cut.settings.concurrency.default_per_provider)]:
        part = ConcurrencyLimits(cut.settings.concurrency, replicas=cut.settings.routers.count())
        share = part._share(after)  # what each router holds
        assert 1 <= after < before and routers * share <= before + routers - 1
    assert cut.settings.routers == config.settings.routers


def test_the_serve_run_builder_checks_its_arguments(tmp_path: Path) -> None:
    from api_model_management.runtime._serve import app

    path = tmp_path / "registry.json"
    path.write_text(json.dumps(demo_config().model_dump(mode="json")))
    with pytest.raises(InvalidInput, match="system="):
        app({"config": str(path)})
    with pytest.raises(InvalidInput, match="unknown argument 'replica'"):
        app({"config": str(path), "system": "amm-prod", "replica": "2"})
    application = app({"config": str(path), "system": "amm-prod", "replicas": "3"})
    assert type(application).__name__ == "Application"


def test_the_replica_header_names_the_replica() -> None:
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from api_model_management.runtime._serve import REPLICA_HEADER, ReplicaHeader

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"x-other": "1"})

    wrapped = ReplicaHeader(Starlette(routes=[Route("/", hello)]), "abc123")

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(wrapped),
                                     base_url="http://replica") as client:
            return await client.get("/")

    response = asyncio.run(call())
    assert response.text == "hi" and response.headers["x-other"] == "1"
    assert response.headers[REPLICA_HEADER.decode()] == "abc123"


def test_a_port_in_use_is_refused_before_serve_starts() -> None:
    import socket

    from api_model_management.runtime._serve import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            free_port("127.0.0.1", taken.getsockname()[1])
    assert free_port("127.0.0.1") > 0


def test_a_replica_joins_only_a_running_system(ray_session: Any) -> None:
    from api_model_management.runtime._serve import ServeEngine

    with pytest.raises(ComponentUnavailable, match="no system named 'amm-nowhere'"):
        ServeEngine.join(demo_config(), "amm-nowhere")


@pytest.mark.parametrize(("options", "said"), [
    ({"ray_serve": True, "ray": True}, "leave out --ray and --workers"),
    ({"ray_serve": True, "workers": 2}, "leave out --ray and --workers"),
    ({"replicas": 2}, "--replicas is for --ray-serve"),
])
def test_amm_serve_refuses_options_that_do_not_go_with_ray_serve(
        options: dict[str, Any], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    from api_model_management.cli._serve import serve_command

    arguments: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "workers": 1, "data_dir": None,
                                 "demo": True, **options}
    assert serve_command(None, **arguments) == 2
    assert said in capsys.readouterr().err


def test_a_virtual_key_variable_that_is_unset_is_refused_before_ray_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from api_model_management.cli._serve import serve_command

    monkeypatch.delenv("AMM_SERVE_TEST_UNSET_KEY", raising=False)
    registry = demo_config().model_dump(mode="json")
    registry["settings"]["data_dir"] = str(tmp_path / "data")
    registry["settings"]["gateway"] = {"keys": [{"name": "ci", "key_env": "AMM_SERVE_TEST_UNSET_KEY"}]}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(registry))
    assert serve_command(path, host="127.0.0.1", port=0, workers=1, data_dir=None, demo=False,
                         ray_serve=True) == 2
    assert "AMM_SERVE_TEST_UNSET_KEY" in capsys.readouterr().err
