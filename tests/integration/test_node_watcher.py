"""Where the node watcher runs (issue 15): in the starting driver's thread for a system that dies
with that driver, in a detached actor (``<prefix>:nodes``) for a detached system, so that nodes
that join after the starting driver exited still get their actors; every other driver follows it
by name. One node here (the session's Ray); a node joining later is in ``test_cluster.py``."""

from __future__ import annotations

import time
import uuid

import pytest

from api_model_management.config._load import demo_config, override

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}


def _config(data_dir):
    return override(demo_config(), settings={"data_dir": str(data_dir),
                                             "routers": {"replicas": 1, "embedded": False}})


def _left(ray, prefix: str, timeout_s: float = 20.0) -> list[str]:
    """The named actors of ``prefix`` still alive once none are left (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
                if e["name"].startswith(f"{prefix}:")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_a_detached_system_watches_its_nodes_from_an_actor_and_other_drivers_follow(ray_session,
                                                                                   tmp_path):
    from api_model_management.runtime import _ray
    from api_model_management.runtime._system import ModelManagement

    prefix = f"nw-{uuid.uuid4().hex[:6]}"
    head = _ray.current_node_id()
    mm = ModelManagement.start(_config(tmp_path), env=KEYS, name_prefix=prefix, detached=True)
    try:
        watcher = mm.handles.node_watcher
        assert watcher is not None and mm._watcher is not None and not mm._watcher.create
        nodes = ray_session.get(watcher.nodes.remote())
        assert set(nodes) == {head}
        assert _ray.actor_id(nodes[head]) == _ray.actor_id(mm.handles.sink)
        assert ray_session.get(watcher.check_once.remote()) == []  # every node has its sink

        joined = ModelManagement.start(_config(tmp_path), env=KEYS, name_prefix=prefix)
        assert not joined.owns_actors and not joined._watcher.create
        assert _ray.actor_id(joined.handles.node_watcher) == _ray.actor_id(watcher)
        joined.handles.sinks.clear()  # as if the sink had been started after it joined
        assert joined._watcher.check_once() == [head]
        assert _ray.actor_id(joined.handles.sinks[head]) == _ray.actor_id(mm.handles.sink)
        joined.shutdown()  # leaves the system running
        assert ray_session.get(watcher.ping.remote())

        assert ray_session.get(watcher.drain.remote(head))  # a drained node gets nothing again
        assert ray_session.get(watcher.nodes.remote()) == {}
        assert ray_session.get(watcher.check_once.remote()) == []
    finally:
        mm.shutdown()
    assert _left(ray_session, prefix) == []  # the watcher went with the system


def test_a_system_that_dies_with_its_driver_is_watched_by_that_driver(ray_session, tmp_path):
    from api_model_management.runtime._system import ModelManagement

    with ModelManagement.start(_config(tmp_path), env=KEYS) as mm:
        assert mm.handles.node_watcher is None
        assert mm._watcher is not None and mm._watcher.create
        assert mm._watcher.check_once() == []  # the one node has its sink already
