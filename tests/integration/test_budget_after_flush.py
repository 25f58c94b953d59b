"""Right after ``ModelManagement.flush()`` the CostLedger holds nothing for a finished workload
and its settled spend is the log's, to the cent fraction.

Routers hand back their budget slices at a flush with the (request id, cost) of each call made
under them; the ledger holds those as pending charges until it reads the calls' terminal events
from the log. The flush must therefore let the ledger read the log *after* the EventSinks have
ingested the spools, or ``budget_status()`` shows finished, paid calls as still reserved (and
their cost missing from the spend) until the ledger's next poll.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from _spread import run_spread

from api_model_management import ModelRequest
from api_model_management.config._load import demo_config, override, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.events import RequestCompleted, RequestFailed
from api_model_management.events._ingest import read_all_events

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-openai-flush",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-flush",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST-flush",
}


@pytest.fixture(scope="module")
def system(ray_session, emulator, tmp_path_factory):
    from api_model_management.runtime._system import ModelManagement

    config = demo_config()  # strict budgets: a global limit and one per agent type
    config = with_provider_base_urls(config, {n: emulator.url_for(p.type)
                                              for n, p in config.providers.items()})
    config = override(config, settings={"data_dir": str(tmp_path_factory.mktemp("events")),
                                        "routers": {"replicas": 1}})
    emulator.set_profile(Profile())
    mm = ModelManagement.start(config, env=KEYS)
    yield mm
    mm.shutdown()


def test_nothing_is_held_and_all_spend_is_settled_right_after_flush(system):
    agents = ("research", "coder", "reviewer", "planner")
    requests = [ModelRequest(prompt=f"explain consistent hashing, variant {i}",
                             agent_type=agents[i % len(agents)], task_id=f"flush-{i}",
                             parameters={"temperature": 0.7}, max_tokens=128,
                             constraints={"excluded_providers": ("ollama",)})  # paid models
                for i in range(40)]
    results = asyncio.run(run_spread(system, requests))
    assert sum(not isinstance(r, BaseException) for r in results) >= 30, results
    system.flush()  # at once: the last calls' events are still in the spools
    status = system.budget_status()
    held = {(s.scope, s.key): s.reserved_usd for s in status if s.reserved_usd}
    assert held == {}, f"held right after flush: {held}"
    logged = sum((e.cost_usd for e in read_all_events(system.config.settings.data_dir)
                  if isinstance(e, RequestCompleted | RequestFailed)), Decimal(0))
    assert logged > 0
    spent = {s.scope: s.spent_usd for s in status if s.scope == "global"}
    assert spent == {"global": logged}  # exact: every call's cost is spend, none is a hold
