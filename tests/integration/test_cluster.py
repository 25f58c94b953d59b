"""The system on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head and
two worker nodes, each with its own spool directory standing for its local disk), the event log
on an S3-compatible server on loopback (moto, its own process).

Routers on every node (``placement = "per_node"``), one EventSink per node ingesting its node's
spool into the shared log; RPM and a strict budget exact across the nodes; a second driver
joining the named system; a node drained then removed (nothing lost); a node that joins later
(its sink and router); a sink killed (restarted on its node); a node lost hard mid-load (its
leases and slices expire or stay held: nothing double-spent; what its spool held is lost). The
log is read back from the object store with ``amm query``.

Every node binds 127.0.0.1. Ray's driver turns a loopback address into the machine's address
before connecting (``resolve_ip_for_localhost``); ``ENABLE_RAY_CLUSTER`` off keeps it loopback.
Node resources must be whole CPUs here (``num_cpus=1`` each); the actors ask for 0.01.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management import ModelRequest
from api_model_management.cli import app
from api_model_management.config._load import config_from_dict, demo_config
from api_model_management.emulator import Profile
from api_model_management.errors import AMMError
from api_model_management.events._log import EventLog

from _ray_session import start_session_ray

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

KEYS = {"AMM_DEMO_OPENAI_KEY": "sk-test-CLUSTER-0123456789abcdefSECRET"}
S3_KEY, S3_SECRET = "AKIDCLUSTERLOOPBACK", "cluster-loopback-secret-77a1"
RPM_MODEL = "rpm-probe"
BUDGETED = "budgeted"
BUDGET_USD = Decimal("0.05")
LOST = "lost-node-load"
LOST_BUDGET_USD = Decimal("0.08")
PREFIX = f"cl-{uuid.uuid4().hex[:6]}"
#: Ray's GCS checks each node every 0.5 s (default 3 s) and marks it dead after 5 failed checks
#: in a row, as by default: a node killed hard refuses the check at once, so its death is seen
#: in ~3 s instead of ~15 s; a live but busy node still has 10 s to answer each check.
HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 5,
                 "health_check_timeout_ms": 10_000}
TERMINAL = ("RequestCompleted", "RequestFailed")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_uri():
    """moto's S3 server in its own process on loopback; the AWS_* variables set for this
    module (before the cluster starts, so every node's processes have them)."""
    import pyarrow.fs as pafs

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        admin = pafs.S3FileSystem(access_key=S3_KEY, secret_key=S3_SECRET, scheme="http",
                                  endpoint_override=f"127.0.0.1:{port}", region="us-east-1",
                                  allow_bucket_creation=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_dir("cluster-log")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            yield f"s3://cluster-log/{PREFIX}"
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(s3_uri):
    """A head and two worker nodes on 127.0.0.1, the driver connected. Replaces the session's
    Ray for this module (and starts it again after)."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1",
            "_system_config": HEALTH_CHECKS})
        workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        try:
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
            cluster.wait_for_nodes()
            yield cluster, workers
        finally:
            ray.shutdown()
            cluster.shutdown()
    if was_up:
        start_session_ray()


def _config(tmp: Path, data_dir: str, emulator_url: str):
    data = demo_config().model_dump(mode="json")
    models = [m for m in data["models"] if m["id"] in ("gpt-4o-mini", "gpt-4.1-mini")]
    for m in models:
        m["fallbacks"] = []
    probe = dict(models[0], id=RPM_MODEL, name="RPM probe", provider_model=RPM_MODEL,
                 capabilities=["rpm-test"],
                 rate_limits={"requests_per_minute": 30, "tokens_per_minute": 1_000_000})
    data["models"] = [*models, probe]
    data["providers"] = {"openai": dict(data["providers"]["openai"], base_url=emulator_url)}
    limits = [{"scope": "agent_type", "key": BUDGETED, "window": "day", "limit_usd": str(BUDGET_USD)},
              {"scope": "agent_type", "key": LOST, "window": "day", "limit_usd": str(LOST_BUDGET_USD)}]
    data["settings"].update(
        data_dir=data_dir,
        routers={"placement": "per_node", "embedded": False, "replicas": 1},
        events={"spool_dir": str(tmp / "spool-{node_id}"), "state_dir": str(tmp / "state-{node_id}")},
        budgets={**data["settings"]["budgets"], "limits": limits, "slice_ttl_s": 2.0,
                 "reservation_ttl_s": 1.0},
        health_check={"interval_s": 0.5, "open_s": 1.0},
    )
    data["settings"]["quality"]["judge"]["enabled"] = False
    return config_from_dict(data, source="<cluster test>")


@pytest.fixture(scope="module")
def local_root(tmp_path_factory) -> Path:
    """Where each node's spool (``spool-<node id>``) and state are: the nodes' local disks."""
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def system(cluster, s3_uri, emulator, local_root):
    from api_model_management.runtime._system import ModelManagement

    config = _config(local_root, s3_uri, emulator.url_for("openai"))
    emulator.set_profile(_profile())
    mm = ModelManagement.start(config, env=KEYS, name_prefix=PREFIX)
    yield mm
    mm.shutdown()
    emulator.set_profile(Profile())


def _profile(**fields) -> Profile:
    return Profile.model_validate({"catalog": {"openai": ["gpt-4o-mini", "gpt-4.1-mini", RPM_MODEL]},
                                   **fields})


def _request(i: int, agent: str = "research", **kw) -> ModelRequest:
    return ModelRequest(prompt=f"cluster question {i}", agent_type=agent, task_id=f"c-{i}",
                        max_tokens=kw.pop("max_tokens", 64), **kw)


def _node_ids(cluster) -> dict[str, str]:
    head, workers = cluster
    return {"head": head.head_node.node_id, **{f"w{i}": w.node_id for i, w in enumerate(workers)}}


def _log(system) -> EventLog:
    return EventLog(system.config.settings.data_dir)


def _terminal_events(log: EventLog) -> list:
    """The log's RequestCompleted and RequestFailed events, all that the checks here look at:
    reading only their partitions skips the many small files of the other types (on S3)."""
    present = set(log.event_types())
    return [e for event_type in TERMINAL if event_type in present for e in log.read(event_type)]


def _terminal(events) -> Counter:
    return Counter(e.request_id for e in events if e.event_type in TERMINAL)


async def _through(routers, requests, *, workers: int = 8):
    """Send ``requests`` round robin over ``routers`` (actor handles); (returned, refused)."""
    import ray

    queue = list(enumerate(requests))
    returned, refused = [], []

    async def worker():
        while queue:
            i, request = queue.pop(0)
            try:
                returned.append(await routers[i % len(routers)].complete.remote(request))
            except (AMMError, ray.exceptions.RayError) as exc:
                refused.append(exc)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return returned, refused


# ------------------------------------------------------------------------------------------------


def test_one_sink_and_one_router_on_every_node(system, cluster):
    import ray

    nodes = set(_node_ids(cluster).values())
    assert set(system.handles.sinks) == nodes
    assert {ray.get(s.node.remote()) for s in system.handles.sinks.values()} == nodes
    assert {ray.get(r.node.remote()) for r in system.handles.routers} == nodes
    assert set(system.handles.router_nodes.values()) == nodes


def test_callers_get_the_router_on_their_own_node_and_spool_there(system, cluster, local_root):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0.01)
    def agent(handles, i):  # a pipeline's task: it asks for the router on its node
        from api_model_management import ModelRequest  # (this module is not importable there)

        router = handles.router_for_current_node()
        request = ModelRequest(prompt=f"cluster question {i}", agent_type="research", max_tokens=64)
        response = ray.get(router.complete.remote(request))
        return ray.get_runtime_context().get_node_id(), ray.get(router.node.remote()), response.request_id

    results = ray.get([
        agent.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        .remote(system.handles, 100 + n)
        for n, node in enumerate(_node_ids(cluster).values())
    ])
    assert all(task_node == router_node for task_node, router_node, _ in results)
    for node in _node_ids(cluster).values():  # each node's routers spooled on its own disk
        assert (local_root / f"spool-{node}").is_dir()
    system.flush()
    terminal = _terminal(_terminal_events(_log(system)))
    assert all(terminal[rid] == 1 for *_, rid in results)


def test_rpm_and_a_strict_budget_stay_exact_with_routers_on_three_nodes(system, emulator):
    emulator.reset()
    routers = list(system.handles.routers)
    rpm = system.config.model(RPM_MODEL).rate_limits.requests_per_minute
    burst = [_request(1000 + i, agent="reviewer", model_id=RPM_MODEL,
                      required_capabilities=("rpm-test",)) for i in range(rpm * 2)]
    started = time.monotonic()
    ok, _ = asyncio.run(_through(routers, burst))
    assert time.monotonic() - started < 60, "the burst fits in one window"
    assert 0 < len(ok) <= rpm
    sent = emulator.stats()["models"].get(RPM_MODEL, {})
    assert sum(sent.values()) <= rpm, sent  # what the provider received, from three nodes

    spend = [_request(2000 + i, agent=BUDGETED, model_id="gpt-4.1-mini", max_tokens=512)
             for i in range(400)]
    returned, refused = asyncio.run(_through(routers, spend))
    assert returned and refused, "the budget ran out"
    system.flush()
    events = [e for e in _terminal_events(_log(system)) if e.agent_type == BUDGETED]
    spent = sum((e.cost_usd for e in events if e.event_type in TERMINAL),
                Decimal(0))
    assert Decimal(0) < spent <= BUDGET_USD
    assert all(_terminal(events)[r.request_id] == 1 for r in returned)


_SECOND_DRIVER = textwrap.dedent("""
    import asyncio, json, sys
    from api_model_management import ModelRequest
    from api_model_management.runtime._system import ModelManagement
    mm = ModelManagement.start(sys.argv[1], address=sys.argv[2], name_prefix=sys.argv[3],
                               env={"AMM_DEMO_OPENAI_KEY": sys.argv[4]})
    router = mm.router_for_current_node()
    import ray
    response = ray.get(router.complete.remote(ModelRequest(prompt="from the second driver",
                                                           agent_type="research", max_tokens=32)))
    print(json.dumps({"owns": mm.owns_actors, "routers": len(mm.handles.routers),
                      "sinks": len(mm.handles.sinks), "request_id": response.request_id}))
    mm.shutdown()
""")


def test_a_second_driver_joins_the_named_system_and_reuses_its_actors(system, cluster, tmp_path):
    import ray

    path = tmp_path / "registry.json"
    path.write_text(system.config.model_dump_json())
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # join over loopback
    done = subprocess.run([sys.executable, "-c", _SECOND_DRIVER, str(path), cluster[0].address,
                           PREFIX, KEYS["AMM_DEMO_OPENAI_KEY"]],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["owns"] is False
    assert (out["routers"], out["sinks"]) == (len(system.handles.routers), len(system.handles.sinks))
    ray.get([r.ping.remote() for r in system.handles.routers])  # still running, not killed
    system.flush()
    assert _terminal(_terminal_events(_log(system)))[out["request_id"]] == 1


def test_a_node_drained_then_removed_loses_no_event(system, cluster, local_root):
    import ray

    head, workers = cluster
    node = workers[1].node_id
    [router] = [system.handles.routers[i] for i, n in system.handles.router_nodes.items() if n == node]
    returned, _ = asyncio.run(_through([router], [_request(3000 + i) for i in range(20)]))
    assert len(returned) == 20
    system.drain_node(node)
    assert node not in system.handles.sinks
    assert node not in system.handles.router_nodes.values()
    head.remove_node(workers[1])
    assert not [p for p in (local_root / f"spool-{node}").glob("*/*")
                if p.suffix in (".open", ".wal")]  # nothing left behind in its spool
    terminal = _terminal(_terminal_events(_log(system)))
    assert all(terminal[r.request_id] == 1 for r in returned)
    assert ray.get([r.ping.remote() for r in system.handles.routers])


def test_a_node_that_joins_later_gets_its_sink_and_router(system, cluster, local_root):
    import ray

    head, _ = cluster
    node = head.add_node(num_cpus=1, node_ip_address="127.0.0.1").node_id
    deadline = time.monotonic() + 90
    while node not in system.handles.sinks or node not in system.handles.router_nodes.values():
        assert time.monotonic() < deadline, "the node watcher gave the new node no actors"
        time.sleep(0.5)
    [index] = [i for i, n in system.handles.router_nodes.items() if n == node]
    router = system.handles.routers[index]
    assert ray.get(router.node.remote()) == node
    response = ray.get(router.complete.remote(_request(4000)))
    system.flush()
    assert _terminal(_terminal_events(_log(system)))[response.request_id] == 1
    assert (local_root / f"spool-{node}").is_dir()


def test_a_sink_killed_is_restarted_on_its_node_and_ingests(system, cluster):
    import ray

    node = _node_ids(cluster)["w0"]
    sink = system.handles.sinks[node]
    ray.kill(sink, no_restart=False)  # dies; Ray starts it again, on that node only
    deadline = time.monotonic() + 60
    while True:
        try:
            assert ray.get(sink.node.remote(), timeout=10) == node
            break
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    [index] = [i for i, n in system.handles.router_nodes.items() if n == node]
    response = ray.get(system.handles.routers[index].complete.remote(_request(5000)))
    ray.get(system.handles.routers[index].flush_events.remote())
    deadline = time.monotonic() + 30  # its own loop (resumed by the driver's watcher) ingests
    while _terminal(_terminal_events(_log(system)))[response.request_id] != 1:
        assert time.monotonic() < deadline, "the restarted sink does not ingest"
        time.sleep(0.5)


def test_a_node_lost_mid_load_double_spends_nothing(system, cluster, emulator):
    """A worker node killed (not drained) with requests in flight on its router: the other
    routers keep serving; the strict budget holds (the lost router's slices stay held, its
    leases counted to their end); every request returned by a surviving router has exactly one
    terminal event; what the lost router returned and had not yet reached the log is lost with
    its node (the README says what prevents it), counted here."""
    import ray

    head, workers = cluster
    node = workers[0].node_id
    emulator.set_profile(_profile(defaults={"latency": {"kind": "fixed", "latency_s": 0.1}}))
    routers = list(system.handles.routers)
    doomed = {i for i, n in system.handles.router_nodes.items() if n == node}
    requests = [_request(6000 + i, agent=LOST, model_id="gpt-4.1-mini", max_tokens=256)
                for i in range(1500)]
    returned: list[tuple[int, object]] = []

    async def load():
        queue = list(enumerate(requests))

        async def worker():
            while queue:
                i, request = queue.pop(0)
                try:
                    returned.append((i % len(routers), await routers[i % len(routers)].complete.remote(request)))
                except (AMMError, ray.exceptions.RayError):
                    pass

        async def kill_node():
            while len(returned) < 60 and queue:
                await asyncio.sleep(0.01)
            head.remove_node(workers[0], allow_graceful=False)

        await asyncio.wait_for(asyncio.gather(kill_node(), *(worker() for _ in range(12))), 300)

    try:
        asyncio.run(load())
    finally:
        emulator.set_profile(_profile())
    deadline = time.monotonic() + 60  # the watcher forgets the node once Ray says it is dead
    while node in system.handles.sinks:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    system.flush()
    events = [e for e in _terminal_events(_log(system)) if e.agent_type == LOST]
    terminal = _terminal(events)
    survivors = [r for i, r in returned if i not in doomed]
    lost = [r for i, r in returned if i in doomed and terminal[r.request_id] == 0]
    assert survivors and all(terminal[r.request_id] == 1 for r in survivors)
    assert all(n <= 1 for n in terminal.values())
    spent = sum((e.cost_usd for e in events if e.event_type in TERMINAL),
                Decimal(0))
    assert Decimal(0) < spent <= LOST_BUDGET_USD
    print(f"\nnode lost: {len(returned)} returned, {len(lost)} of them only in the lost node's spool")


def test_a_node_lost_hard_under_ack_shipped_loses_no_returned_request(cluster, s3_uri, emulator,
                                                                     local_root):
    """The same loss with ``settings.events.ack="shipped"`` (a system of its own, its own log and
    spools, on a node added for it): a router answers only once the request's events are in the
    shared log, so none of the requests the lost node's router returned is lost with its spool."""
    import ray

    from api_model_management.config._load import override
    from api_model_management.runtime._system import ModelManagement

    head, _ = cluster
    node = head.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    data_dir = f"{s3_uri}-shipped"
    config = override(_config(local_root, data_dir, emulator.url_for("openai")), settings={
        "events": {"ack": "shipped", "spool_dir": str(local_root / "shipped-spool-{node_id}"),
                   "state_dir": str(local_root / "shipped-state-{node_id}")}})
    emulator.set_profile(_profile(defaults={"latency": {"kind": "fixed", "latency_s": 0.1}}))
    mm = ModelManagement.start(config, env=KEYS, name_prefix=f"{PREFIX}-shipped")
    try:
        deadline = time.monotonic() + 90
        while node.node_id not in mm.handles.router_nodes.values():
            assert time.monotonic() < deadline, "no router on the new node"
            time.sleep(0.5)
        routers = list(mm.handles.routers)
        doomed = {i for i, n in mm.handles.router_nodes.items() if n == node.node_id}
        queue = [(i, _request(7000 + i)) for i in range(800)]
        returned: list[tuple[int, object]] = []

        async def load():
            async def worker():
                while queue:
                    i, request = queue.pop(0)
                    try:
                        response = await routers[i % len(routers)].complete.remote(request)
                    except (AMMError, ray.exceptions.RayError):
                        continue
                    returned.append((i % len(routers), response))

            async def kill_node():
                while sum(i in doomed for i, _ in returned) < 30 and queue:
                    await asyncio.sleep(0.01)
                head.remove_node(node, allow_graceful=False)
                queue.clear()  # enough: what matters is what was returned before the loss

            await asyncio.wait_for(asyncio.gather(kill_node(), *(worker() for _ in range(12))), 300)

        asyncio.run(load())
        deadline = time.monotonic() + 60
        while node.node_id in mm.handles.sinks:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        mm.flush()
        terminal = _terminal(_terminal_events(EventLog(data_dir)))
        from_lost_node = [r for i, r in returned if i in doomed]
        lost = [r for r in from_lost_node if terminal[r.request_id] == 0]
        assert from_lost_node and lost == []
        assert all(terminal[r.request_id] == 1 for _, r in returned)
        print(f"\nnode lost under ack=shipped: {len(returned)} returned, {len(from_lost_node)} by "
              f"the lost node's router, {len(lost)} of them lost")
    finally:
        emulator.set_profile(_profile())
        mm.shutdown()


def test_amm_query_reads_the_clusters_log_from_the_object_store(system):
    result = CliRunner().invoke(app, ["query", "SELECT count(*) AS n FROM request_completed",
                                      "--data-dir", system.config.settings.data_dir,
                                      "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["n"] > 0
    storage = _log(system).storage
    keys = [p for p, _, _ in storage.list_tree(storage.root)]
    assert keys and all(k.startswith("events/") for k in keys)  # spools and state stayed local
    blob = b"".join(storage.read_bytes(storage.join(k)) for k in keys)
    assert KEYS["AMM_DEMO_OPENAI_KEY"].encode() not in blob and S3_SECRET.encode() not in blob
    assert b"cluster question" not in blob  # no prompt text either


_DETACHED_DRIVER = textwrap.dedent("""
    import json, sys
    from api_model_management.runtime._system import ModelManagement
    mm = ModelManagement.start(sys.argv[1], address=sys.argv[2], name_prefix=sys.argv[3],
                               env={"AMM_DEMO_OPENAI_KEY": sys.argv[4]}, detached=True)
    print(json.dumps({"watcher": mm.handles.node_watcher is not None, "sinks": len(mm.handles.sinks)}))
    # exits without shutdown: a detached system outlives its driver
""")


def test_a_detached_systems_nodes_get_their_actors_after_its_driver_exited(cluster, s3_uri, emulator,
                                                                          tmp_path):
    import ray

    from api_model_management.runtime import _ray
    from api_model_management.runtime._actors import node_actors_by_name

    head, _ = cluster
    prefix = f"{PREFIX}-det"
    config = _config(tmp_path, f"{s3_uri}-detached", emulator.url_for("openai"))  # its own disks and log
    path = tmp_path / "registry.json"
    path.write_text(config.model_dump_json())
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, "-c", _DETACHED_DRIVER, str(path), head.address, prefix,
                           KEYS["AMM_DEMO_OPENAI_KEY"]], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["watcher"] and out["sinks"] == len(_ray.alive_nodes())
    node = head.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    try:
        deadline = time.monotonic() + 120
        while True:  # the starting driver is gone: only the watcher actor can give it actors
            sinks, routers = node_actors_by_name(prefix)
            on_node = [r for r in routers if ray.get(r.node.remote(), timeout=60) == node.node_id]
            if node.node_id in sinks and on_node:
                break
            assert time.monotonic() < deadline, "the node that joined got no sink or router"
            time.sleep(1.0)
        assert len(on_node) == 1
        assert ray.get(sinks[node.node_id].node.remote(), timeout=60) == node.node_id
    finally:
        named = ray.util.list_named_actors(all_namespaces=True)
        for entry in sorted(named, key=lambda e: not e["name"].endswith(":nodes")):  # watcher first
            if entry["name"].startswith(f"{prefix}:"):
                ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]))
        head.remove_node(node)
