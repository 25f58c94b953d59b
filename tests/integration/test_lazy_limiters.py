"""RateLimiter actors started on demand and retired when idle (issue 15): a registry of many
models starts none; a request starts exactly the one of the model it is served by; routers that
ask at the same moment agree on one; an idle limiter exits and is started again by the next
request, its window intact (requests admitted before it retired still count).

Real Ray (the session's), the emulator over loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.errors import AMMError

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}
PROBE = "lazy-probe"  # a model only these tests pin requests to
PROBE_RPM = 6
CATALOG = {"openai": ["gpt-4.1", "gpt-4.1-mini", "gpt-4o-mini", PROBE]}


def _config(emulator, data_dir, copies: int = 4, **settings):
    """The demo registry, each model ``copies`` times (ids ``<id>~k``, same wire name), plus the
    probe model."""
    config = demo_config()
    models = [m.model_dump() for m in config.models]
    out = list(models)
    for k in range(1, copies):
        out += [{**m, "id": f"{m['id']}~{k}", "provider_model": m.get("provider_model") or m["id"],
                 "fallbacks": []} for m in models]
    probe = config.model("gpt-4o-mini").model_dump()
    probe.update(id=PROBE, name="lazy probe", provider_model=PROBE, capabilities=["lazy-test"],
                 fallbacks=[], rate_limits={"requests_per_minute": PROBE_RPM,
                                            "tokens_per_minute": 1_000_000})
    config = override(config, models=[*out, probe])
    config = with_provider_base_urls(
        config, {n: emulator.url_for(p.type) for n, p in config.providers.items()})
    return override(config, settings={"data_dir": str(data_dir), **settings})


def _probe_request(i: int) -> ModelRequest:
    return ModelRequest(prompt=f"lazy limiter question {i}", agent_type="research",
                        model_id=PROBE, required_capabilities=("lazy-test",), max_tokens=32,
                        parameters={"temperature": 0.7})


def _until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def catalog_emulator(fresh_emulator):
    fresh_emulator.set_profile(Profile.model_validate({"catalog": CATALOG}))
    return fresh_emulator


def test_many_models_start_no_limiter_and_a_request_starts_one(ray_session, catalog_emulator,
                                                                tmp_path):
    from api_model_management.runtime._status import live_status, system_actors
    from api_model_management.runtime._system import ModelManagement

    config = _config(catalog_emulator, tmp_path, copies=4)
    assert len(config.models) == 49
    mm = ModelManagement.start(config, env=KEYS)
    try:
        assert mm.handles.limiters.live() == {}
        assert not any(name.startswith("RateLimiter") for name, _ in mm.handles.named())
        response = asyncio.run(mm.complete(ModelRequest(
            prompt="Say hello", agent_type="research", max_tokens=32,
            parameters={"temperature": 0.7})))
        assert set(mm.handles.limiters.live()) == {response.model_id}
        assert [n for n, _ in mm.handles.named() if n.startswith("RateLimiter")] == [
            f"RateLimiter {response.model_id}"]
        # what `amm status` reads: the limiter that exists, found by its name
        found = system_actors(mm.name_prefix, mm.handles.limiters.namespace)
        assert set(found.limiters) == {response.model_id}
        status = ray_session.get(found.limiters[response.model_id].status.remote())
        assert status.requests_used >= 1
        live = live_status(found, "local")
        assert any(n.startswith("1 RateLimiter(s) running") and "600 s idle" in n
                   for n in live.notes), live.notes
    finally:
        mm.shutdown()
    assert mm.handles.limiters.live() == {}  # shutdown stopped it


def test_two_routers_asking_at_once_agree_on_one_limiter(ray_session, catalog_emulator, tmp_path):
    import ray

    from api_model_management.runtime._system import ModelManagement

    config = _config(catalog_emulator, tmp_path, copies=1,
                     routers={"replicas": 2, "embedded": False})
    mm = ModelManagement.start(config, env=KEYS)
    try:
        routers = mm.handles.routers
        assert len(routers) == 2 and mm.handles.limiters.live() == {}

        async def both():
            return await asyncio.gather(*(r.complete.remote(_probe_request(i))
                                          for i, r in enumerate(routers)))

        answers = asyncio.run(both())
        assert [a.model_id for a in answers] == [PROBE, PROBE]
        live = mm.handles.limiters.live()
        assert set(live) == {PROBE}
        mm.flush()  # the routers hand their leases back
        status = ray.get(live[PROBE].status.remote())
        assert (status.requests_used, status.leased_requests) == (2, 0)  # both, at one actor
    finally:
        mm.shutdown()


def test_directories_in_two_processes_start_one_actor(ray_session, catalog_emulator, tmp_path):
    import ray

    from api_model_management.runtime import _ray
    from api_model_management.runtime._limiters import LimiterDirectory

    config = _config(catalog_emulator, tmp_path, copies=1)
    directory = LimiterDirectory(config, "lazy-race", namespace=_ray.current_namespace())

    @ray.remote(num_cpus=0.01)
    def start_one(d: LimiterDirectory, model_id: str):
        return [d.get(model_id)]  # the handle (a named actor lives while a handle does)

    try:
        handles = [h for got in ray.get([start_one.remote(directory, PROBE) for _ in range(4)])
                   for h in got]
        ids = [_ray.actor_id(h) for h in handles]
        assert len(set(ids)) == 1
        assert list(directory.live()) == [PROBE]
        assert _ray.actor_id(directory[PROBE]) == ids[0]  # this process finds the same one
    finally:
        for handle in directory.live().values():
            ray.kill(handle)


def test_an_idle_limiter_retires_and_comes_back_with_its_window(ray_session, catalog_emulator,
                                                                 tmp_path):
    import ray

    from api_model_management.runtime._system import ModelManagement

    # leases live 1.5 s (the router hands back what it did not use before that); a limiter with
    # nothing outstanding retires after 1 s without a decision
    config = _config(catalog_emulator, tmp_path, copies=1,
                     rate_limit={"idle_retire_s": 1.0, "lease_ttl_s": 1.5})
    mm = ModelManagement.start(config, env=KEYS)
    wire = config.model(PROBE).wire_name
    try:
        catalog_emulator.reset()
        first = 3
        for i in range(first):
            assert asyncio.run(mm.complete(_probe_request(i))).model_id == PROBE
        limiter = mm.handles.limiters.live()[PROBE]
        pid = ray.get(limiter.pid.remote())
        _until(lambda: PROBE not in mm.handles.limiters.live(), "the idle limiter to retire")

        async def burst():
            return await asyncio.gather(*(mm.complete(_probe_request(100 + i)) for i in
                                          range(PROBE_RPM)), return_exceptions=True)

        results = asyncio.run(burst())
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, AMMError) for r in refused), refused
        # the window survived: only what the first requests left of it was admitted
        assert len(ok) == PROBE_RPM - first
        sent = catalog_emulator.stats()["models"].get(wire, {})
        assert sum(sent.values()) == PROBE_RPM  # what the provider received in the window
        again = mm.handles.limiters.live()[PROBE]
        assert ray.get(again.pid.remote()) != pid  # a new actor
        assert ray.get(again.status.remote()).requests_used == PROBE_RPM
    finally:
        mm.shutdown()


#: What a limiter's worker must not import to answer its first lease: the rest of the runtime
#: and the cores other actors run, and the heavy libraries they bring (the cost of a cold
#: limiter is mostly its worker process's start, paid while a router waits).
NOT_FOR_A_LIMITER = (
    "api_model_management.runtime._shells", "api_model_management.runtime._router",
    "api_model_management.routing", "api_model_management.selection",
    "api_model_management.budget", "api_model_management.cache", "api_model_management.health",
    "api_model_management.evaluation", "api_model_management.projections", "duckdb", "httpx",
    "pyarrow.compute",
)


def _imported(ray, limiter, names=NOT_FOR_A_LIMITER) -> list[str]:
    """Which of ``names`` the limiter's worker process has imported (asked in that process)."""

    def imported(actor) -> list[str]:  # nested: pickled by value (the worker cannot import tests)
        import sys

        return sorted(n for n in names if n in sys.modules)

    return ray.get(limiter.__ray_call__.remote(imported))


def test_a_limiter_answers_its_first_lease_with_only_the_limiter_imported(ray_session,
                                                                          catalog_emulator,
                                                                          tmp_path):
    """A limiter outside a system (nobody to push to, so nothing looked up): what its worker
    process imports to be constructed and answer a lease is what a limiter needs, not the
    modules of the other actors."""
    from api_model_management.runtime._actors import RateLimiterActor

    config = _config(catalog_emulator, tmp_path, copies=1)
    limiter = RateLimiterActor.remote(config, PROBE)
    try:
        lease = ray_session.get(limiter.lease.remote("test", 2, 100))
        assert lease.requests == 2
        assert _imported(ray_session, limiter) == []
    finally:
        ray_session.kill(limiter)


def test_a_started_limiter_pushes_its_headroom_once_it_answered_its_first_lease(
        ray_session, catalog_emulator, tmp_path):
    """A system's limiter looks its subscribers up after the lease it was started for (their
    handles import the Router's and Selector's modules in its process): the lease is answered,
    and then the Selector (which the embedded router polls) and the routers get its headroom."""
    from api_model_management.runtime._system import ModelManagement

    config = _config(catalog_emulator, tmp_path, copies=1,
                     routers={"replicas": 1, "embedded": True})
    mm = ModelManagement.start(config, env=KEYS)
    try:
        limiter = mm.handles.limiters.get(PROBE)
        lease = ray_session.get(limiter.lease.remote("test", 3, 100))
        assert lease.requests == 3  # half the probe's 6 requests a minute

        def selector_headroom() -> float:
            state = ray_session.get(mm.handles.selector.live_state.remote())
            return dict(state.headroom).get(PROBE, 1.0)

        _until(lambda: selector_headroom() <= 0.5 + 1e-9, "the limiter's headroom push")
        # its process has the subscribers' classes now (imported after the lease, not before)
        assert "api_model_management.runtime._router" in _imported(ray_session, limiter)
        ray_session.get(limiter.return_lease.remote(lease.lease_id, 0, 0))
    finally:
        mm.shutdown()


def test_a_limiter_is_given_its_model_and_provider_only(tmp_path):
    """The registry sent to a limiter at its start holds its model and that model's provider,
    with the same settings and so the same admitted limits (it reads nothing else)."""
    import pickle

    from api_model_management.config._load import demo_config as demo
    from api_model_management.runtime._limiters import config_for_limiter

    config = override(demo(), settings={"data_dir": str(tmp_path)})
    config = override(config, models=[*(m.model_dump() for m in config.models), *(
        {**m.model_dump(), "id": f"{m.id}~{k}", "fallbacks": []}
        for k in range(1, 10) for m in config.models)])
    for model in (config.models[0], config.models[-1]):
        given = config_for_limiter(config, model.id)
        assert [m.id for m in given.models] == [model.id]
        assert list(given.providers) == [model.provider]
        assert given.providers[model.provider] == config.providers[model.provider]
        assert given.settings == config.settings
        assert given.admitted_rate_limits(given.model(model.id)) == config.admitted_rate_limits(model)
        assert len(pickle.dumps(given)) * 5 < len(pickle.dumps(config))  # 120 models: 35 kB
