"""The original system's ModelOptimizerIntegration (issue 12.1): an upstream optimizer's choice
honoured when usable and explained when not, tasks as the caller has them, outcomes reported
back through the feedback rule, performance summaries from the log. No network: fake adapters."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

import pytest

from api_model_management import (
    AgentType,
    APIModelAssignment,
    CostTracker,
    FailoverManager,
    HealthChecker,
    InvalidInput,
    ModelOptimizerIntegration,
    ModelRequest,
    ModelSelector,
    NoEligibleModel,
    PerformanceMonitor,
    SelectionConstraints,
)
from api_model_management._clock import ManualClock
from api_model_management.config import demo_config
from api_model_management.events._spool import pending_events

from _fakes import GOOD_PROMPT, fake_adapters

pytestmark = pytest.mark.unit

KEYS = {"AMM_DEMO_OPENAI_KEY": "sk-test-openai-0000", "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0000",
        "AMM_DEMO_GOOGLE_KEY": "google-test-0000"}


class TaskPriority(enum.Enum):  # the original system's, as a pipeline would pass it
    CRITICAL = 1
    HIGH = 2
    MEDIUM = 3
    LOW = 4
    BACKGROUND = 5


@dataclass
class Requirement:
    description: str


@dataclass
class AgentTask:  # the original AgentTask's shape: no description of its own
    id: str
    requirements: list[Requirement] = field(default_factory=list)
    priority: TaskPriority = TaskPriority.MEDIUM


@dataclass
class ModelAssignment:  # the original ModelOptimizer's result
    role_type: AgentType
    model_tier: str
    recommended_model: str
    fallback_model: str


def system(tmp_path, *, monitor: bool = True):
    """(integration, manager, checker): the facades wired as one system on fake adapters."""
    config = demo_config()
    checker = HealthChecker(config, env=KEYS, clock=ManualClock())
    performance = PerformanceMonitor(tmp_path / "performance.db") if monitor else None
    selector = ModelSelector(registry=config, health_checker=checker, performance_monitor=performance)
    tracker = CostTracker(config, data_dir=tmp_path)
    manager = FailoverManager(model_selector=selector, cost_tracker=tracker, env=KEYS,
                              data_dir=tmp_path)
    manager.router.adapters = fake_adapters(config)
    integration = ModelOptimizerIntegration(model_selector=selector, failover_manager=manager,
                                            performance_monitor=performance, cost_tracker=tracker)
    return integration, manager, checker


def select(integration, task=GOOD_PROMPT, base=None, agent=AgentType.SA, **kw) -> APIModelAssignment:
    return asyncio.run(integration.select_model_for_agent(agent_type=agent, task=task,
                                                          base_assignment=base, **kw))


def test_agent_types_are_the_originals_and_plain_strings():
    assert AgentType.SA == "solution_architect" and AgentType.SA.value == "solution_architect"
    assert {a.name for a in AgentType} == {"PM", "BA", "SA", "RESEARCH", "QUALITY_JUDGE",
                                           "IMPLEMENTATION"}
    assert ModelRequest(prompt="x", agent_type=AgentType.PM).agent_type == "product_manager"


def test_without_a_base_assignment_the_best_model_is_chosen(tmp_path):
    integration, manager, _ = system(tmp_path)
    best = asyncio.run(integration.model_selector.select_model(
        ModelRequest(prompt=GOOD_PROMPT), AgentType.SA))

    assignment = select(integration)

    assert assignment.selected_model_id == best.model_id
    assert (assignment.preferred_model_id, assignment.preference_honoured) == (None, None)
    assert assignment.agent_type == "solution_architect" and type(assignment.agent_type) is str
    assert assignment.selection_reason == best.selection_reason
    assert assignment.suitability_score == pytest.approx(best.suitability_score)
    assert assignment.fallback_models == best.fallback_models
    assert assignment.api_provider == demo_config().model(best.model_id).provider
    assert assignment.api_endpoint == demo_config().providers[assignment.api_provider].base_url
    asyncio.run(manager.aclose())


def test_a_usable_preference_is_honoured_even_when_another_scores_higher(tmp_path):
    integration, manager, _ = system(tmp_path)
    best = select(integration).selected_model_id
    preferred = next(m.id for m in demo_config().models if m.id != best and m.provider != "ollama")
    base = ModelAssignment(AgentType.SA, "strategic", preferred, best)

    assignment = select(integration, base=base)

    assert assignment.selected_model_id == preferred and assignment.preference_honoured is True
    assert assignment.preferred_model_id == preferred
    assert f"{preferred}: the base assignment's choice, usable" in assignment.selection_reason
    assert f"the best score was {best}'s" in assignment.selection_reason
    assert assignment.fallback_models[0] == best  # the best comes next
    assert preferred not in assignment.fallback_models
    scores = {c.model_id: c.score for c in assignment.model_selection.candidates}
    assert assignment.suitability_score == scores[preferred] < scores[best]
    assert assignment.role_type == AgentType.SA and assignment.model_tier == "strategic"
    assert assignment.get_effective_model() == preferred
    assert assignment.get_effective_model(prefer_fallback=True) == best
    asyncio.run(manager.aclose())


def test_an_unusable_preference_is_explained_and_its_fallback_tried(tmp_path):
    integration, manager, checker = system(tmp_path)
    for _ in range(5):  # anthropic down
        checker.cores["anthropic"].record_probe(False, 10.0, http_status=503, error_kind="server_error")
    base = ModelAssignment(AgentType.SA, "strategic", "claude-opus-4-5", "gemini-2.5-pro")

    assignment = select(integration, base=base)

    assert assignment.selected_model_id == "gemini-2.5-pro" and assignment.preference_honoured
    assert "claude-opus-4-5: provider anthropic unhealthy" in assignment.selection_reason
    asyncio.run(manager.aclose())


def test_no_usable_preference_leaves_the_best_model_and_says_why(tmp_path):
    integration, manager, _ = system(tmp_path)
    best = select(integration, task=ModelRequest(prompt=GOOD_PROMPT,
                                                 required_capabilities=("reasoning",)))

    assignment = select(integration, base="gpt-5-turbo-preview",
                        task=ModelRequest(prompt=GOOD_PROMPT, required_capabilities=("reasoning",)))
    assert assignment.selected_model_id == best.selected_model_id
    assert assignment.preference_honoured is False
    assert "gpt-5-turbo-preview: not in the registry" in assignment.selection_reason

    lacking = select(integration, base="llama3.2",
                     task=ModelRequest(prompt=GOOD_PROMPT, required_capabilities=("reasoning",)))
    assert lacking.preference_honoured is False
    assert "llama3.2: missing capabilities: reasoning" in lacking.selection_reason
    asyncio.run(manager.aclose())


def test_base_assignments_in_every_form(tmp_path):
    integration, manager, _ = system(tmp_path)
    for base in ("gpt-4o-mini", SimpleNamespace(model_id="gpt-4o-mini"),
                 SimpleNamespace(selected_model_id="gpt-4o-mini")):
        assert select(integration, base=base).selected_model_id == "gpt-4o-mini"
    earlier = select(integration, base="gpt-4o-mini")
    assert select(integration, base=earlier).selected_model_id == "gpt-4o-mini"
    for bad in (SimpleNamespace(name="x"), 42, ""):
        with pytest.raises(InvalidInput):
            select(integration, base=bad)
    asyncio.run(manager.aclose())


def test_tasks_as_the_caller_has_them(tmp_path):
    integration, manager, _ = system(tmp_path)
    as_string = select(integration, task="Review this design for single points of failure")
    assert as_string.task_id is None
    described = select(integration, task=SimpleNamespace(id="t-7", description="Draft an ADR",
                                                         priority="HIGH"))
    assert described.task_id == "t-7"
    original = select(integration, task=AgentTask("t-8", [Requirement("List the services")],
                                                  TaskPriority.BACKGROUND))
    assert original.task_id == "t-8"
    request = ModelRequest(prompt=GOOD_PROMPT, task_id="t-9", agent_type="someone-else")
    pinned = select(integration, task=request.model_copy(update={"model_id": "gpt-4o-mini"}))
    assert (pinned.task_id, pinned.selected_model_id, pinned.agent_type) == (
        "t-9", "gpt-4o-mini", "solution_architect")
    for bad in (None, "   ", SimpleNamespace(id="t"), AgentTask("t", [])):
        with pytest.raises(InvalidInput):
            select(integration, task=bad)
    asyncio.run(manager.aclose())


def test_priorities_and_constraints_reach_the_selection(tmp_path):
    integration, manager, _ = system(tmp_path)
    cheap = select(integration, constraints=SelectionConstraints(allowed_providers=("ollama",)))
    assert cheap.api_provider == "ollama"
    critical = select(integration, task=SimpleNamespace(description="x", priority=TaskPriority.CRITICAL))
    assert "priority critical" in critical.selection_reason
    with pytest.raises(InvalidInput):
        select(integration, constraints={"allowed_providers": ["ollama"]})
    with pytest.raises(NoEligibleModel):
        select(integration, constraints=SelectionConstraints(allowed_providers=("nobody",)))
    asyncio.run(manager.aclose())


def test_the_estimated_cost_prices_the_input_and_the_full_output(tmp_path):
    integration, manager, _ = system(tmp_path)
    request = ModelRequest(prompt=GOOD_PROMPT, max_tokens=1000, model_id="gpt-4.1")
    assignment = select(integration, task=request)
    tokens_in = request.estimated_input_tokens()
    assert assignment.estimated_cost_usd == (
        Decimal(tokens_in) * Decimal("0.002") + Decimal(1000) * Decimal("0.008")) / 1000
    asyncio.run(manager.aclose())


def test_assignments_are_kept_per_agent_type_and_task(tmp_path):
    integration, manager, _ = system(tmp_path)
    a = select(integration, task=SimpleNamespace(id="t1", description="one"))
    b = select(integration, task=SimpleNamespace(id="t2", description="two"), agent=AgentType.PM)
    assert integration.get_cached_assignment(AgentType.SA, "t1") is a
    assert integration.get_cached_assignment("product_manager", "t2") is b
    assert integration.get_cached_assignment(AgentType.SA, "t2") is None
    assert integration.clear_assignment_cache(AgentType.PM) == 1
    assert integration.get_cached_assignment(AgentType.PM, "t2") is None
    assert integration.clear_assignment_cache() == 1
    asyncio.run(manager.aclose())


def test_the_summary_on_an_empty_log_is_numbers(tmp_path):
    integration, manager, _ = system(tmp_path)
    summary = asyncio.run(integration.get_performance_summary(agent_type=AgentType.SA,
                                                              window_hours=24))
    line = (f"{summary['total_requests']} ${summary['total_cost']:.2f} "
            f"{summary['average_success_rate']:.1%}")
    assert line == "0 $0.00 0.0%"
    assert summary["agent_type"] == "solution_architect" and summary["cost_by_model"] == {}
    assert summary["budgets"] == integration.cost_tracker.get_budget_status()
    assert summary["budgets"] and all(b.spent_usd == 0 for b in summary["budgets"])
    for bad in (-5, 0, "24", float("inf")):
        with pytest.raises(InvalidInput):
            asyncio.run(integration.get_performance_summary(window_hours=bad))
    asyncio.run(manager.aclose())


def test_the_summary_counts_what_the_failover_manager_did(tmp_path):
    integration, manager, _ = system(tmp_path)
    task = SimpleNamespace(id="t-1", description=GOOD_PROMPT)
    assignment = select(integration, task=task)
    response = asyncio.run(manager.execute(ModelRequest(
        prompt=task.description, task_id=task.id, agent_type=AgentType.SA,
        model_id=assignment.selected_model_id)))
    asyncio.run(manager.execute(ModelRequest(prompt=GOOD_PROMPT, agent_type="research")))

    summary = asyncio.run(integration.get_performance_summary(agent_type=AgentType.SA))
    everyone = asyncio.run(integration.get_performance_summary())

    assert summary["total_requests"] == 1 and everyone["total_requests"] == 2
    assert summary["total_cost"] == response.cost_usd
    assert summary["average_success_rate"] == 1.0
    assert summary["cost_by_model"] == {response.model_id: response.cost_usd}
    assert integration.cost_tracker.get_total_cost() == everyone["total_cost"]
    asyncio.run(manager.aclose())


def test_performance_reported_back_is_feedback_on_the_request(tmp_path):
    integration, manager, _ = system(tmp_path)
    task = SimpleNamespace(id="t-1", description=GOOD_PROMPT)
    model_id = select(integration, task=task).selected_model_id
    response = asyncio.run(manager.execute(ModelRequest(
        prompt=GOOD_PROMPT, task_id="t-1", agent_type=AgentType.SA, model_id=model_id)))
    data = {"success": True, "quality_score": 0.25, "latency_ms": 900.0, "cost": 0.01,
            "input_tokens": 10, "output_tokens": 20}

    assert asyncio.run(integration.report_performance_to_optimizer(
        AgentType.SA, "t-1", model_id, data)) is True
    assert asyncio.run(integration.report_performance_to_optimizer(
        AgentType.SA, "t-1", model_id, {"success": False})) is False  # once per request

    (feedback,) = [e for e in pending_events(tmp_path) if e.event_type == "FeedbackRecorded"]
    assert (feedback.request_id, feedback.score, feedback.source, feedback.agent_type) == (
        response.request_id, 0.25, "user", "solution_architect")
    asyncio.run(manager.aclose())


@pytest.mark.parametrize(("data", "score"), [
    ({"success": False, "quality_score": 0.9}, 0.0), ({"success": True}, 1.0),
    ({"quality_score": 0.4}, 0.4),
])
def test_the_reported_score(tmp_path, data, score):
    integration, manager, _ = system(tmp_path, monitor=False)
    response = asyncio.run(manager.execute(ModelRequest(prompt=GOOD_PROMPT, task_id="t")))
    asyncio.run(integration.report_performance_to_optimizer(
        "default", "t", response.model_id, {**data, "request_id": response.request_id}))
    (feedback,) = [e for e in pending_events(tmp_path) if e.event_type == "FeedbackRecorded"]
    assert feedback.score == score
    asyncio.run(manager.aclose())


def test_bad_performance_reports_raise_invalid_input(tmp_path):
    integration, manager, _ = system(tmp_path)
    response = asyncio.run(manager.execute(ModelRequest(prompt=GOOD_PROMPT, task_id="t")))
    model = response.model_id
    for data in ({"success": True, "speed": 3}, {}, {"success": "yes"}, {"quality_score": 2},
                 [("success", True)]):
        with pytest.raises(InvalidInput):
            asyncio.run(integration.report_performance_to_optimizer("default", "t", model, data))
    with pytest.raises(InvalidInput, match="no request of task 'other'"):
        asyncio.run(integration.report_performance_to_optimizer("default", "other", model,
                                                                {"success": True}))
    asyncio.run(manager.aclose())


def test_a_failover_reported_back_reaches_the_log_and_the_health_checker(tmp_path):
    class FailoverReason(enum.Enum):  # the original's
        TIMEOUT = "timeout"

    integration, manager, checker = system(tmp_path)
    asyncio.run(integration.report_failover_event(AgentType.SA, "t-1", "claude-haiku-4-5",
                                                  "gpt-4o-mini", FailoverReason.TIMEOUT))
    (event,) = [e for e in pending_events(tmp_path) if e.event_type == "FailoverTriggered"]
    assert (event.from_model_id, event.to_model_id, event.reason, event.agent_type, event.task_id) == (
        "claude-haiku-4-5", "gpt-4o-mini", "timeout", "solution_architect", "t-1")
    assert checker.provider_state("anthropic") == "degraded"
    asyncio.run(manager.aclose())


def test_components_that_cannot_act_as_one_are_refused(tmp_path):
    config = demo_config()
    selector = ModelSelector(config)
    tracker = CostTracker(config)
    manager = FailoverManager(model_selector=selector, env=KEYS, data_dir=tmp_path / "a")
    refusals = {
        "another selector": dict(model_selector=ModelSelector(config), failover_manager=manager),
        "another tracker": dict(model_selector=selector, failover_manager=manager, cost_tracker=tracker),
        "another data dir": dict(model_selector=selector, failover_manager=manager,
                                 performance_monitor=PerformanceMonitor(tmp_path / "b")),
        "not a selector": dict(model_selector="selector"),
        "not a manager": dict(model_selector=selector, failover_manager="manager"),
        "not a monitor": dict(model_selector=selector, performance_monitor=tmp_path),
        "not a tracker": dict(model_selector=selector, cost_tracker=1),
    }
    for name, kwargs in refusals.items():
        with pytest.raises(InvalidInput) as caught:
            ModelOptimizerIntegration(**kwargs)
        assert "\n" not in str(caught.value), name
    asyncio.run(manager.aclose())


def test_what_needs_a_missing_component_says_so(tmp_path):
    integration = ModelOptimizerIntegration(model_selector=ModelSelector(demo_config()))
    assert select(integration).selected_model_id  # selection needs only the selector
    calls = {
        "failover_manager": integration.report_performance_to_optimizer("a", "t", "gpt-4o-mini",
                                                                        {"success": True}),
        "failover_manager ": integration.report_failover_event("a", "t", "gpt-4o-mini",
                                                               "gpt-4.1", "timeout"),
        "performance_monitor": integration.get_performance_summary(),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidInput, match=f"needs a {name.strip()}"):
            asyncio.run(call)


def test_bad_agent_types_and_task_ids_raise_invalid_input(tmp_path):
    integration, manager, _ = system(tmp_path)
    for call in (lambda: select(integration, agent=None), lambda: select(integration, agent=3),
                 lambda: integration.get_cached_assignment(AgentType.SA, None),
                 lambda: integration.clear_assignment_cache(7)):
        with pytest.raises(InvalidInput):
            call()
    asyncio.run(manager.aclose())
