"""Every provider's HealthChecker in one actor process (issue 15: start-up that does not grow with
the registry): ``HealthCheckersShell`` hosts one checker per provider, and ``_ray.Hosted`` gives
callers one handle per provider, used like an actor handle. The shell is built in this process
without starting Ray (its module imports Ray, hence the integration layer); one test uses the
session's Ray."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest
from pydantic import SecretStr

from api_model_management.config._load import demo_config, override
from api_model_management.errors import ComponentUnavailable

pytestmark = pytest.mark.integration

KEYS = {"openai": SecretStr("sk-test-OPENAI-0123456789abcdefSECRET")}


def _config(tmp_path):
    return override(demo_config(), settings={"data_dir": str(tmp_path)})


class _FakeActor:
    """Records ``call_hosted.remote`` calls as a Ray actor handle would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        outer = self

        class _Method:
            def remote(self, *args, **kwargs):
                outer.calls.append((args, kwargs))
                return "a reply"

        self.call_hosted = _Method()


def test_a_health_host_runs_one_checker_per_provider_each_with_its_own_state(tmp_path):
    from api_model_management.runtime._shells import HealthCheckersShell

    config = _config(tmp_path)
    host = HealthCheckersShell(config, KEYS)
    assert host.providers() == list(config.providers)
    assert host.ping() is True
    checkers = host.checkers
    assert {p: c.provider for p, c in checkers.items()} == {p: p for p in config.providers}
    assert checkers["openai"].adapter is not checkers["anthropic"].adapter
    assert checkers["openai"].spool is not checkers["anthropic"].spool

    async def run() -> None:
        # a synchronous method and a coroutine method, each reaching only its provider's checker
        assert await host.call_hosted("openai", "report_outcomes", [(False, "server_error", None)])
        openai = await host.call_hosted("openai", "status")
        anthropic = await host.call_hosted("anthropic", "status")
        assert (openai.provider, anthropic.provider) == ("openai", "anthropic")
        assert openai.window_failures == 1 and anthropic.window_failures == 0
        assert await host.call_hosted("google", "add_subscribers", []) is True  # awaited
        assert checkers["google"]._task is not None  # its probe loop was started
        checkers["google"]._task.cancel()
        with pytest.raises(AttributeError):
            await host.call_hosted("openai", "_push", True)  # private methods are not reachable
        with pytest.raises(KeyError):
            await host.call_hosted("no-such-provider", "status")

    asyncio.run(run())


def test_a_hosted_handle_forwards_calls_to_its_host_with_its_key():
    from api_model_management.runtime import _ray

    actor = _FakeActor()
    handle = _ray.Hosted(actor, "openai")
    assert handle.status.remote() == "a reply"
    _ray.tell(handle, "add_subscribers", ["router"])
    assert actor.calls == [(("openai", "status"), {}),
                           (("openai", "add_subscribers", ["router"]), {})]
    assert _ray.host_of(handle) is actor and _ray.host_of(actor) is actor
    with pytest.raises(AttributeError):
        handle._private  # noqa: B018
    copy = pickle.loads(pickle.dumps(_ray.Hosted("an actor", "google")))
    assert (copy.actor, copy.key) == ("an actor", "google")


def test_hosted_checkers_answer_through_ray_and_die_with_their_host(ray_session, tmp_path):
    from api_model_management.runtime import _ray
    from api_model_management.runtime._actors import HealthCheckersActor, _hosted_health

    config = _config(tmp_path)
    host = HealthCheckersActor.options(max_concurrency=1000).remote(config, KEYS)
    health = _hosted_health(host, config.providers)
    try:
        snaps = _ray.get([_ray.send(h, "snapshot") for h in health.values()], timeout_s=120)
        assert [s["provider"] for s in snaps] == list(config.providers)
        assert _ray.actor_id(health["openai"]) == _ray.actor_id(host)
    finally:
        _ray.kill(health["openai"])  # the host, with every provider's checker
    # ray.kill goes through the GCS while a call goes straight to the actor, so on a loaded
    # machine a call sent right after the kill can still be answered: wait for the death
    deadline = time.monotonic() + 60
    with pytest.raises(ComponentUnavailable):
        while time.monotonic() < deadline:
            _ray.get(_ray.send(health["google"], "ping"), timeout_s=60)
            time.sleep(0.1)
