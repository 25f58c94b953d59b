"""The per-node pieces of the runtime, without a cluster: the CostLedger's rule for a slice holder
on another node (kept while that node's EventSink lists it), the handles' bookkeeping when
routers leave, and a sink that says where it runs. (Integration: the runtime imports Ray; no Ray
session is started here.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from api_model_management.config._load import demo_config, override

pytestmark = pytest.mark.integration


def _config(tmp_path: Path):
    return override(demo_config(), settings={"data_dir": str(tmp_path),
                                             "events": {"fsync": "never"}})


def test_the_ledger_keeps_a_remote_holders_slices_while_its_nodes_sink_lists_it(tmp_path):
    from api_model_management.runtime._shells import CostLedgerShell

    shell = CostLedgerShell(_config(tmp_path))
    try:
        gone = shell.core._holder_gone
        assert gone is not None and gone("router-0-1") is True  # no spool here, no node says so
        assert shell.spool_writers("node-b", ["router-0-1", "router-1-2"]) is True
        assert gone("router-0-1") is False and gone("router-1-2") is False
        shell.spool_writers("node-b", ["router-1-2"])  # router-0-1 finalized: gone, ingested
        assert gone("router-0-1") is True and gone("router-1-2") is False
        shell.spool_writers("node-c", ["router-0-1"])
        assert gone("router-0-1") is False
        (tmp_path / "spool" / "router-9-9").mkdir(parents=True)  # a writer on the ledger's node
        assert gone("router-9-9") is False
    finally:
        shell._stop.set()


def test_the_sink_of_a_process_outside_ray_has_no_node_and_reports_nothing(tmp_path, monkeypatch):
    import asyncio

    from api_model_management.runtime import _ray
    from api_model_management.runtime._shells import EventSinkShell

    # outside Ray, whatever an earlier test of the session left initialized in this process
    monkeypatch.setattr(_ray, "is_initialized", lambda: False)
    shell = EventSinkShell(_config(tmp_path), ledger=object())
    assert asyncio.run(shell.node()) is None
    shell._report_writers(force=True)  # no node: nothing to tell (and no Ray call)
    assert shell._reported is None


def test_forgetting_routers_keeps_the_others_in_order_with_their_nodes():
    from api_model_management.runtime._actors import ActorHandles

    handles = ActorHandles(sink="s", ledger="l", cache="c", selector="x",
                           routers=["r0", "r1", "r2", "r3"],
                           router_nodes={0: "a", 1: "b", 2: "c", 3: "b"})
    handles.forget_routers([1, 3])
    assert handles.routers == ["r0", "r2"] and handles.router_nodes == {0: "a", 1: "c"}
    handles.forget_routers([])
    assert handles.routers == ["r0", "r2"]


def test_the_ledger_polls_a_remote_log_once_a_second_and_a_local_one_ten_times(tmp_path):
    from api_model_management.runtime._shells import (
        LEDGER_POLL_S,
        REMOTE_LEDGER_POLL_S,
        CostLedgerShell,
    )

    local = CostLedgerShell(_config(tmp_path / "local"))
    remote = CostLedgerShell(override(demo_config(), settings={
        "data_dir": f"mock:///ledger-{tmp_path.name}",
        "events": {"fsync": "never", "spool_dir": str(tmp_path / "spool"),
                   "state_dir": str(tmp_path / "state")}}))
    try:
        assert (local._poll_once(), remote._poll_once()) == (LEDGER_POLL_S, REMOTE_LEDGER_POLL_S)
        assert REMOTE_LEDGER_POLL_S >= 10 * LEDGER_POLL_S
    finally:
        local._stop.set()
        remote._stop.set()
