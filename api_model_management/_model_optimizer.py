"""The original system's ``ModelOptimizerIntegration``: an upstream optimizer's model choice
checked against the live system, outcomes reported back, performance summaries (part of the
original names, beside :mod:`.compat`)::

    integration = ModelOptimizerIntegration(model_selector=selector,
                                            failover_manager=failover_manager,
                                            performance_monitor=performance_monitor,
                                            cost_tracker=cost_tracker)
    assignment = await integration.select_model_for_agent(
        agent_type=AgentType.SA, task=task, base_assignment=base_assignment)
    summary = await integration.get_performance_summary(agent_type=AgentType.SA, window_hours=24)

Agent types are open strings everywhere; :class:`AgentType` holds the original system's names
(``AgentType.SA`` is ``"solution_architect"``) and is accepted wherever an agent type is. No Ray
here: the components are the in-process facades.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._request import ModelRequest, Priority, SelectionConstraints
from .compat import (
    CostTracker,
    FailoverManager,
    ModelSelection,
    ModelSelector,
    _agent,
    _monitor,
    _text,
)
from .errors import InvalidInput

if TYPE_CHECKING:
    from .projections import PerformanceMonitor


class AgentType(StrEnum):
    """The original system's agent types. Each member is its value (a string), so any agent
    type, listed here or not, is a plain string to the rest of the system."""

    PM = "product_manager"
    BA = "business_analyst"
    SA = "solution_architect"
    RESEARCH = "research"
    QUALITY_JUDGE = "quality_judge"
    IMPLEMENTATION = "implementation"


@dataclass(frozen=True)
class APIModelAssignment:
    """The model chosen for an agent's task, with why and what next.

    ``model_selection`` is the full selection (score, reason, ranked fallbacks, candidates with
    their sub-scores, the models left out and why). ``preferred_model_id`` is the upstream
    optimizer's choice (``base_assignment``), ``preference_honoured`` whether it was chosen (None
    when there was none). ``estimated_cost_usd`` prices the task's estimated input and its full
    ``max_tokens`` of output on the chosen model. ``api_endpoint`` is its provider's base URL."""

    base_assignment: Any
    selected_model_id: str
    model_selection: ModelSelection
    api_provider: str
    agent_type: str
    task_id: str | None
    estimated_cost_usd: Decimal
    preferred_model_id: str | None = None
    preference_honoured: bool | None = None
    api_endpoint: str | None = None
    selection_timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def selection_reason(self) -> str:
        return self.model_selection.selection_reason

    @property
    def suitability_score(self) -> float:
        return self.model_selection.suitability_score

    @property
    def fallback_models(self) -> list[str]:
        return list(self.model_selection.fallback_models)

    @property
    def role_type(self) -> Any:
        """The base assignment's ``role_type`` (the original ModelAssignment's), else the agent
        type."""
        return getattr(self.base_assignment, "role_type", self.agent_type)

    @property
    def model_tier(self) -> Any:
        """The base assignment's ``model_tier``, or None."""
        return getattr(self.base_assignment, "model_tier", None)

    def get_effective_model(self, prefer_fallback: bool = False) -> str:
        """The selected model, or (``prefer_fallback``) the first fallback when there is one."""
        fallbacks = self.model_selection.fallback_models
        return fallbacks[0] if prefer_fallback and fallbacks else self.selected_model_id


#: What ``report_performance_to_optimizer`` reads from ``performance_data``. ``latency_ms``,
#: ``cost``, ``input_tokens`` and ``output_tokens`` are accepted as the original took them, and
#: not recorded again: the log holds what the system measured for that request.
PERFORMANCE_KEYS = frozenset({"success", "quality_score", "request_id", "latency_ms", "cost",
                              "input_tokens", "output_tokens"})
#: The original system's task priorities (``TaskPriority`` names) as request priorities.
_PRIORITIES: dict[str, Priority] = {
    "critical": "critical", "high": "high", "medium": "medium", "normal": "normal", "low": "low",
    "background": "low",
}


class ModelOptimizerIntegration:
    """An upstream optimizer's assignment checked against the live system; outcomes reported
    back; performance summaries.

    The components must act as one system: the ``failover_manager`` must route with this
    ``model_selector`` and record spend in this ``cost_tracker`` (build it with
    ``FailoverManager(model_selector=..., cost_tracker=...)``), and write where the
    ``performance_monitor`` reads; otherwise ``InvalidInput`` says which. A component may be
    None; what needs it then raises ``InvalidInput`` naming it."""

    def __init__(self, model_selector: ModelSelector,
                 failover_manager: FailoverManager | None = None,
                 performance_monitor: PerformanceMonitor | None = None,
                 cost_tracker: CostTracker | None = None) -> None:
        if not isinstance(model_selector, ModelSelector):
            raise InvalidInput(f"model_selector must be a ModelSelector, got "
                               f"{type(model_selector).__name__}", field="model_selector")
        self.model_selector = model_selector
        self.failover_manager = _typed(failover_manager, FailoverManager, "failover_manager")
        self.performance_monitor = _monitor(performance_monitor)
        self.cost_tracker = _typed(cost_tracker, CostTracker, "cost_tracker")
        self._check_one_system()
        self._assignments: dict[tuple[str, str], APIModelAssignment] = {}

    def _check_one_system(self) -> None:
        manager = self.failover_manager
        if manager is None:
            return
        if manager.model_selector is not self.model_selector:
            raise InvalidInput("the failover_manager routes with another ModelSelector: build it "
                               "with FailoverManager(model_selector=...)", field="failover_manager")
        if self.cost_tracker is not None and manager.cost_tracker is not self.cost_tracker:
            raise InvalidInput("the failover_manager records spend in another CostTracker: build "
                               "it with FailoverManager(..., cost_tracker=...)", field="cost_tracker")
        monitor = self.performance_monitor
        if monitor is not None and _same_place(monitor.data_dir) != _same_place(manager.data_dir):
            raise InvalidInput(f"the performance_monitor reads {monitor.data_dir} but the "
                               f"failover_manager writes {manager.data_dir}: give both the same "
                               "data directory", field="performance_monitor")

    # -- selection -------------------------------------------------------------------------------
    async def select_model_for_agent(self, agent_type: str, task: object,
                                     base_assignment: object = None,
                                     constraints: SelectionConstraints | None = None,
                                     ) -> APIModelAssignment:
        """The model for ``agent_type``'s ``task`` over the live state of the components.

        ``task`` is a ``ModelRequest``, a string (the prompt), or an object with a
        ``description`` (or ``prompt``; the original ``AgentTask``'s requirement descriptions or
        text input do too) and optionally ``id`` and ``priority``. ``base_assignment`` is the
        upstream optimizer's choice: a model id, or an object with ``recommended_model`` (then
        ``fallback_model``), ``model_id`` or ``selected_model_id``. The first of its models that
        is usable now is chosen, even when another scores higher; when none is, the best model
        is chosen and the reason says why each preferred one was not. ``NoEligibleModel`` when no
        model is usable."""
        agent = _agent(agent_type)
        request = _task_request(task, agent, constraints)
        preferred = _preferences(base_assignment)
        selection = await self.model_selector.select_model(request)
        chosen, honoured = _honour(selection, preferred, self.model_selector)
        config = self.model_selector.config
        model = config.model(chosen.model_id)
        from .budget._pricing import cost_usd

        assignment = APIModelAssignment(
            base_assignment=base_assignment, selected_model_id=chosen.model_id,
            model_selection=chosen, api_provider=model.provider, agent_type=agent,
            task_id=request.task_id,
            estimated_cost_usd=cost_usd(model, request.estimated_input_tokens(), request.max_tokens),
            preferred_model_id=preferred[0] if preferred else None,
            preference_honoured=honoured,
            api_endpoint=config.providers[model.provider].base_url,
        )
        if request.task_id is not None:
            self._assignments[(agent, request.task_id)] = assignment
        return assignment

    def get_cached_assignment(self, agent_type: str, task_id: str) -> APIModelAssignment | None:
        """The last assignment made for this agent type and task id, or None."""
        return self._assignments.get((_agent(agent_type), _text(task_id, "task_id")))

    def clear_assignment_cache(self, agent_type: str | None = None) -> int:
        """Forget the assignments (of one agent type, when given) and the selector's cached
        rankings; returns the assignments forgotten."""
        agent = _agent(agent_type) if agent_type is not None else None
        keys = [key for key in self._assignments if agent is None or key[0] == agent]
        for key in keys:
            del self._assignments[key]
        self.model_selector.clear_assignment_cache()
        return len(keys)

    # -- outcomes --------------------------------------------------------------------------------
    async def report_performance_to_optimizer(self, agent_type: str, task_id: str, model_id: str,
                                              performance_data: Mapping[str, Any]) -> bool:
        """Report how the task went: ``performance_data`` holds ``success`` and/or
        ``quality_score`` (in [0, 1]), optionally the ``request_id`` (else the latest request of
        ``task_id`` by ``model_id`` for ``agent_type`` that the failover manager answered).
        Recorded as ``FailoverManager.feedback`` (score 0 for a failure, else the quality score,
        else 1), learnt at once by selection. Returns False when that request already had a
        user's feedback. The measured latency, tokens and cost are in the log already (see
        ``PERFORMANCE_KEYS``)."""
        manager = _need(self.failover_manager, "failover_manager", "report performance")
        agent = _agent(agent_type)
        _text(task_id, "task_id")
        if not isinstance(performance_data, Mapping):
            raise InvalidInput("performance_data must be a mapping", field="performance_data")
        unknown = sorted(str(k) for k in performance_data if k not in PERFORMANCE_KEYS)
        if unknown:
            raise InvalidInput(f"performance_data has unknown keys {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(PERFORMANCE_KEYS))}", field="performance_data")
        score = _score(performance_data)
        request_id = performance_data.get("request_id")
        if request_id is None:
            request_id = manager.find_request(task_id, model_id, agent)
        if request_id is None:
            raise InvalidInput(f"no request of task {task_id!r} by {model_id!r} for {agent!r} was "
                               "answered (recently) by the failover_manager: run the task through "
                               "FailoverManager.execute, or give performance_data['request_id']",
                               field="task_id")
        return await manager.feedback(_text(request_id, "request_id"), score, source="user")

    async def report_failover_event(self, agent_type: str, task_id: str, original_model: str,
                                    alternative_model: str, reason: object,
                                    retry_after_s: float | None = None) -> None:
        """Report a failover the pipeline made itself (``reason`` a string or an enum member
        whose value is one): see ``FailoverManager.record_failover``."""
        manager = _need(self.failover_manager, "failover_manager", "report a failover")
        manager.record_failover(original_model, alternative_model, reason,
                                task_id=_text(task_id, "task_id"), agent_type=_agent(agent_type),
                                retry_after_s=retry_after_s)

    # -- metrics ---------------------------------------------------------------------------------
    async def get_performance_summary(self, agent_type: str | None = None,
                                      window_hours: float = 24) -> dict[str, Any]:
        """Totals over the last ``window_hours`` (of ``agent_type``, else every one), from the
        log, after the failover manager's events are moved into it (``FailoverManager.flush``):
        the performance monitor's summary (``total_requests``, ``total_cost`` in USD as a
        ``Decimal``, latency, quality, failovers, per model) with ``average_success_rate`` the
        share of requests that succeeded (0.0 when there was none, as in the original),
        ``cost_by_model`` and, with a cost tracker, ``budgets`` (each limit now).
        ``InvalidInput`` for a window that is not a positive number of hours."""
        monitor = _need(self.performance_monitor, "performance_monitor", "summarise performance")
        agent = _agent(agent_type) if agent_type is not None else None
        if self.failover_manager is not None:
            self.failover_manager.flush()
        summary = dict(monitor.get_performance_summary(agent_type=agent, window_hours=window_hours))
        if summary["average_success_rate"] is None:
            summary["average_success_rate"] = 0.0
        summary["cost_by_model"] = {m: row["total_cost"] for m, row in summary["models"].items()}
        if self.cost_tracker is not None:
            summary["budgets"] = self.cost_tracker.get_budget_status()
        return summary


# -----------------------------------------------------------------------------------------------
# helpers


def _typed(value: Any, cls: type, name: str) -> Any:
    if value is not None and not isinstance(value, cls):
        raise InvalidInput(f"{name} must be a {cls.__name__}, got {type(value).__name__}", field=name)
    return value


def _need(value: Any, name: str, what: str) -> Any:
    if value is None:
        raise InvalidInput(f"to {what} the integration needs a {name}", field=name)
    return value


def _task_request(task: object, agent: str, constraints: object) -> ModelRequest:
    if constraints is not None and not isinstance(constraints, SelectionConstraints):
        raise InvalidInput(f"constraints must be SelectionConstraints, got "
                           f"{type(constraints).__name__}", field="constraints")
    extra: dict[str, Any] = {"constraints": constraints} if constraints is not None else {}
    if isinstance(task, ModelRequest):
        return task.model_copy(update={"agent_type": agent, **extra})
    text = _task_text(task)
    task_id = getattr(task, "id", None) or getattr(task, "task_id", None)
    return ModelRequest(prompt=text, agent_type=agent, task_id=None if task_id is None else str(task_id),
                        priority=_priority(getattr(task, "priority", None)), **extra)


def _task_text(task: object) -> str:
    """The text a task is about: itself (a string), its description or prompt, its requirements'
    descriptions, or its text input."""
    if isinstance(task, str):
        candidates: list[object] = [task]
    else:
        candidates = [getattr(task, "description", None), getattr(task, "prompt", None)]
        requirements = getattr(task, "requirements", None) or ()
        if isinstance(requirements, list | tuple):
            candidates.append("\n".join(d for r in requirements
                                        if isinstance(d := getattr(r, "description", None), str)))
        candidates.append(getattr(getattr(task, "input", None), "data", None))
    for text in candidates:
        if isinstance(text, str) and text.strip():
            return text
    raise InvalidInput(f"task must be a ModelRequest, a non-blank string or an object with a "
                       f"description, got {type(task).__name__}", field="task")


def _priority(value: object) -> Priority:
    name = value.name if isinstance(value, Enum) else value
    return _PRIORITIES.get(name.lower(), "normal") if isinstance(name, str) else "normal"


def _preferences(base: object) -> list[str]:
    """The models the upstream optimizer chose, best first."""
    if base is None:
        return []
    if isinstance(base, str):
        return [_text(base, "base_assignment")]
    if isinstance(base, APIModelAssignment):
        return [base.selected_model_id]
    names = [getattr(base, a, None)
             for a in ("recommended_model", "model_id", "selected_model_id", "fallback_model")]
    found = [n for n in dict.fromkeys(names) if isinstance(n, str) and n]
    if not found:
        raise InvalidInput("base_assignment must be a model id, or an object with "
                           "recommended_model, model_id or selected_model_id", field="base_assignment")
    return found


def _honour(selection: ModelSelection, preferred: list[str],
            selector: ModelSelector) -> tuple[ModelSelection, bool | None]:
    """The selection with the first usable preferred model first, and whether one was."""
    if not preferred:
        return selection, None
    scores = {c.model_id: c.score for c in selection.candidates}
    refused: list[str] = []
    for name in preferred:
        if name == selection.model_id:
            reason = f"{selection.selection_reason}; also the base assignment's choice"
            return _with_reason(selection, _refusals(refused, reason)), True
        if name in scores:
            reason = (f"{name}: the base assignment's choice, usable (score {scores[name]:.3f}; "
                      f"the best score was {selection.model_id}'s, {selection.suitability_score:.3f})")
            return _moved_first(selection, name, _refusals(refused, reason), selector), True
        known = any(m.id == name for m in selector.config.models)
        why = selection.filtered.get(name) or ("not eligible" if known else "not in the registry")
        refused.append(f"{name}: {why}")
    reason = f"{selection.selection_reason}; the base assignment's choice was not usable ({'; '.join(refused)})"
    return _with_reason(selection, reason), False


def _refusals(refused: list[str], reason: str) -> str:
    return f"{reason}; preferred before it but not usable: {'; '.join(refused)}" if refused else reason


def _with_reason(selection: ModelSelection, reason: str) -> ModelSelection:
    return ModelSelection(selection.model_id, selection.suitability_score, reason,
                          list(selection.fallback_models), selection.provider,
                          selection.candidates, dict(selection.filtered))


def _moved_first(selection: ModelSelection, model_id: str, reason: str,
                 selector: ModelSelector) -> ModelSelection:
    first = next(c for c in selection.candidates if c.model_id == model_id)
    rest = [c for c in selection.candidates if c.model_id != model_id]
    return ModelSelection(model_id, first.score, reason, [c.model_id for c in rest],
                          selector.config.model(model_id).provider, (first, *rest),
                          dict(selection.filtered))


def _score(data: Mapping[str, Any]) -> float:
    """0 for a failure, else the quality score, else 1 for a success."""
    success, quality = data.get("success"), data.get("quality_score")
    if success is not None and not isinstance(success, bool):
        raise InvalidInput("performance_data['success'] must be True or False", field="success")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int | float)
                                or not 0.0 <= quality <= 1.0):
        raise InvalidInput("performance_data['quality_score'] must be a number in [0, 1]",
                           field="quality_score")
    if success is None and quality is None:
        raise InvalidInput("performance_data needs success or quality_score", field="performance_data")
    if success is False:
        return 0.0
    return float(quality) if quality is not None else 1.0


def _same_place(data_dir: str | Path) -> str:
    """A data directory as a comparable string: a local path resolved, a URI as written."""
    text = str(data_dir)
    return text.rstrip("/") if "://" in text else str(Path(text).resolve())
