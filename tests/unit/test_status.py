"""``amm status`` from the event log (no running system): providers and their health, models
rate-limited or cooling down, budgets with headroom, requests in flight, recent alerts. The log
is written with the EventLog API; the clock is fixed. (The live mode, and an unreachable
address, are integration tests: tests/integration/test_status_live.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from api_model_management._clock import ManualClock
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.events import (
    AttemptFailed,
    AttemptStarted,
    BudgetAlert,
    Event,
    EventLog,
    HealthChanged,
    HealthChecked,
    PerformanceAlert,
    RateLimitHit,
    RequestCompleted,
    RequestFailed,
)
from api_model_management.projections import Projections
from api_model_management.projections._status import (
    ALERTS_SHOWN,
    SystemStatus,
    headroom_row,
    log_status,
    render_status,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
BUDGETS = BudgetSettings(alert_thresholds=[0.5, 0.8, 1.0], limits=[
    BudgetLimit(scope="global", key="*", window="day", limit_usd=Decimal("1")),
    BudgetLimit(scope="agent_type", key="research", window="day", limit_usd=Decimal("0.10")),
    BudgetLimit(scope="provider", key="openai", window="month", limit_usd=Decimal("20")),
])


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def fixture_events() -> list[Event]:
    gpt = {"model_id": "gpt-4o", "provider": "openai"}
    mini = {"model_id": "gpt-4o-mini", "provider": "openai"}
    sonnet = {"model_id": "claude-sonnet", "provider": "anthropic"}
    return [
        # providers: openai degraded, anthropic recovered after being unhealthy, google unknown
        HealthChanged(occurred_at=ago(hours=3), provider="openai", from_state="healthy",
                      to_state="degraded", reason="error rate 8% over 40 calls"),
        HealthChanged(occurred_at=ago(hours=2), provider="anthropic", from_state="healthy",
                      to_state="unhealthy", reason="3 failed probes"),
        HealthChanged(occurred_at=ago(hours=1), provider="anthropic", from_state="half_open",
                      to_state="healthy", reason="probe ok"),
        HealthChanged(occurred_at=ago(minutes=30), provider="anthropic", model_id="claude-opus",
                      from_state="healthy", to_state="unhealthy", reason="model_not_found"),
        HealthChecked(occurred_at=ago(minutes=2), provider="google", ok=True, latency_ms=12.0,
                      missing_models=("gemini-2.5-pro",)),
        # calls in the last 15 minutes: openai 3 answered + 1 failed; anthropic 1; an old one
        *[RequestCompleted(occurred_at=ago(minutes=m), request_id=f"ok-{m}", latency_ms=300.0,
                           cost_usd=Decimal("0.02"), agent_type="research", **gpt)
          for m in (1, 2, 3)],
        RequestCompleted(occurred_at=ago(minutes=4), request_id="cached", latency_ms=1.0,
                         cache_hit=True, agent_type="coder", **gpt),
        AttemptFailed(occurred_at=ago(minutes=5), request_id="r-f", attempt=1,
                      error_kind="server_error", transient=True, http_status=503, **gpt),
        RequestCompleted(occurred_at=ago(minutes=5), request_id="r-f", latency_ms=900.0,
                         cost_usd=Decimal("0.05"), agent_type="coder", **sonnet),
        RequestCompleted(occurred_at=ago(hours=5), request_id="old", latency_ms=200.0,
                         cost_usd=Decimal("0.5"), agent_type="coder", **gpt),
        # rate limits: gpt-4o cooling down (429, 120 s), mini near its limit after an old 429
        RateLimitHit(occurred_at=ago(seconds=30), kind="provider_429", limit_type="rpm", used=60,
                     limit=60, retry_after_s=120.0, **gpt),
        RateLimitHit(occurred_at=ago(minutes=10), kind="provider_429", limit_type="tpm", used=0,
                     limit=1000, retry_after_s=5.0, **mini),
        RateLimitHit(occurred_at=ago(minutes=1), kind="approaching", limit_type="rpm", used=45,
                     limit=50, **mini),
        RateLimitHit(occurred_at=ago(hours=2), kind="exceeded", limit_type="rpm", used=51,
                     limit=50, **sonnet),  # outside the window: not shown
        # in flight: two attempts without a terminal event, one that ended (completed), one failed
        AttemptStarted(occurred_at=ago(seconds=20), request_id="open-1", attempt=1,
                       router_id="router-0", **gpt),
        AttemptStarted(occurred_at=ago(seconds=10), request_id="open-2", attempt=2,
                       router_id="router-0", **mini),
        AttemptStarted(occurred_at=ago(minutes=1), request_id="ok-1", attempt=1,
                       router_id="router-0", **gpt),
        AttemptStarted(occurred_at=ago(minutes=6), request_id="gone", attempt=1,
                       router_id="router-1", **gpt),
        RequestFailed(occurred_at=ago(minutes=5), request_id="gone", attempts=1,
                      error_kind="lost", **gpt),
        # alerts
        BudgetAlert(occurred_at=ago(minutes=3), scope="agent_type", scope_key="research",
                    window="day", window_start=NOW.replace(hour=0), threshold=0.5,
                    spent_usd=Decimal("0.06"), limit_usd=Decimal("0.10"), agent_type="research"),
        PerformanceAlert(occurred_at=ago(minutes=7), kind="latency_degraded",
                         metric="p95_latency_ms", value=2400.0, threshold=900.0, **gpt),
        PerformanceAlert(occurred_at=ago(days=3), kind="error_rate", metric="error_rate",
                         value=0.3, threshold=0.1, **gpt),  # too old
    ]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("status") / "data"
    EventLog(data_dir, fsync="never").append(fixture_events())
    return data_dir


@pytest.fixture
def status(log_dir: Path) -> SystemStatus:
    with Projections(log_dir, clock=ManualClock(start=NOW)) as p:
        return log_status(p, budgets=BUDGETS, data_dir=str(log_dir))


def test_providers_and_their_health(status: SystemStatus) -> None:
    rows = {r.provider: r for r in status.providers}
    assert sorted(rows) == ["anthropic", "openai"]
    openai, anthropic = rows["openai"], rows["anthropic"]
    assert (openai.state, openai.since, openai.reason) == ("degraded", ago(hours=3),
                                                           "error rate 8% over 40 calls")
    assert (openai.calls, openai.failures) == (4, 1)  # 3 answers + 1 failed attempt; no cache hit
    assert (anthropic.state, anthropic.since, anthropic.calls, anthropic.failures) == (
        "healthy", ago(hours=1), 1, 0)
    assert openai.window == "last 15 min"


def test_models_rate_limited_cooling_down_or_unavailable(status: SystemStatus) -> None:
    rows = {r.model_id: r for r in status.models}
    assert sorted(rows) == ["claude-opus", "gemini-2.5-pro", "gpt-4o", "gpt-4o-mini"]
    assert (rows["gpt-4o"].state, rows["gpt-4o"].until) == ("cooling down", ago(seconds=30) + timedelta(seconds=120))
    assert rows["gpt-4o-mini"].state == "near its limit"  # its 429 cool-down has passed
    assert "2 hits; last rpm 45 of 50" in rows["gpt-4o-mini"].detail
    assert (rows["claude-opus"].state, rows["claude-opus"].provider) == ("unhealthy", "anthropic")
    assert rows["gemini-2.5-pro"].state == "unavailable"


def test_budgets_with_headroom(status: SystemStatus) -> None:
    rows = {(r.scope, r.key): r for r in status.budgets}
    glob = rows[("global", "*")]
    # today: 3 x 0.02 + 0.05 (the 5-hour-old 0.5 was today too: 10:00 UTC)
    assert glob.spent_usd == Decimal("0.61")
    assert (glob.headroom_usd, glob.status, glob.reserved_usd) == (Decimal("0.39"), "warning", None)
    research = rows[("agent_type", "research")]
    assert (research.spent_usd, research.headroom_usd, research.status) == (
        Decimal("0.06"), Decimal("0.04"), "warning")
    assert rows[("provider", "openai")].status == "ok"


def test_headroom_never_negative_and_counts_reservations() -> None:
    over = headroom_row("global", "*", "day", Decimal("1"), Decimal("1.2"), None, [0.5, 1.0])
    assert (over.headroom_usd, over.status, over.used_share) == (Decimal(0), "exceeded", 1.2)
    held = headroom_row("model", "m", "day", Decimal("1"), Decimal("0.3"), Decimal("0.5"), [0.8])
    assert (held.headroom_usd, held.status) == (Decimal("0.2"), "ok")


def test_requests_in_flight(status: SystemStatus) -> None:
    [row] = status.in_flight
    assert (row.where, row.requests) == ("log", 2)
    assert ago(seconds=20).strftime("%H:%M:%S") in row.detail


def test_recent_alerts(status: SystemStatus) -> None:
    assert [(a.category, a.kind, a.subject) for a in status.alerts] == [
        ("health", "unhealthy", "anthropic"), ("health", "unhealthy", "claude-opus"),
        ("performance", "latency_degraded", "gpt-4o"), ("budget", "day_budget", "agent_type:research"),
        ("rate_limit", "approaching_rpm", "gpt-4o-mini")]  # the 3-day-old alert is left out


def test_alerts_shown_are_the_latest(tmp_path: Path) -> None:
    EventLog(tmp_path, fsync="never").append([
        PerformanceAlert(occurred_at=ago(minutes=i), kind="error_rate", metric="error_rate",
                         value=0.2, threshold=0.1, model_id=f"m{i}") for i in range(15)])
    with Projections(tmp_path, clock=ManualClock(start=NOW)) as p:
        alerts = log_status(p).alerts
    assert [a.subject for a in alerts] == [f"m{i}" for i in range(ALERTS_SHOWN - 1, -1, -1)]


def test_an_empty_log(tmp_path: Path) -> None:
    with Projections(tmp_path, clock=ManualClock(start=NOW)) as p:
        status = log_status(p)
    assert (status.providers, status.models, status.budgets, status.alerts) == ([], [], [], [])
    assert status.in_flight[0].requests == 0
    assert any("--config" in note for note in status.notes)
    console = Console(record=True, width=160)
    render_status(status, console)
    assert "Models rate-limited or cooling down: none" in console.export_text()


def test_render_status(status: SystemStatus) -> None:
    console = Console(record=True, width=200)
    render_status(status, console)
    text = console.export_text()
    for expected in ("From the event log", "Providers", "degraded", "cooling down",
                     "Budgets (current windows)", "$0.3900", "In flight: 2", "Recent alerts (5)",
                     "p95_latency_ms = 2400.0"):
        assert expected in text, expected


# -- the command ----------------------------------------------------------------------------------


def _registry(tmp_path: Path) -> Path:
    registry = json.loads(resources.files("api_model_management").joinpath(
        "_data/demo_registry.json").read_text())
    registry["settings"]["budgets"]["limits"] = [limit.model_dump(mode="json") for limit in BUDGETS.limits]
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(registry))
    return path


def test_status_command_json_and_table(log_dir: Path, tmp_path: Path) -> None:
    from api_model_management.cli._status import status_command

    clock = ManualClock(start=NOW)
    console = Console(record=True, width=200)
    assert status_command(log_dir, config_path=_registry(tmp_path), fmt="json", console=console,
                          clock=clock) == 0
    data = json.loads(console.export_text())
    assert data["source"] == "log" and data["data_dir"] == str(log_dir)
    assert {b["key"] for b in data["budgets"]} == {"*", "research", "openai"}
    assert data["in_flight"][0]["requests"] == 2
    table = Console(record=True, width=200)
    assert status_command(log_dir, console=table, clock=clock) == 0
    text = table.export_text()
    assert "cooling down" in text and "pass --config" in text


def test_amm_status_from_the_log(log_dir: Path) -> None:
    from api_model_management.cli._app import app

    result = CliRunner().invoke(app, ["status", "--data-dir", str(log_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["source"] == "log"


@pytest.mark.parametrize(("args", "message"), [
    (["--data-dir", "nowhere"], "error: no event log under nowhere"),
    (["--format", "yaml"], "error: --format 'yaml': use table or json"),
    (["--system", "amm-1234"], "error: --system names a running system: give its --address too"),
    (["--address", "local"], "error: --address 'local' would start a new Ray"),
])
def test_amm_status_bad_input_is_one_line(log_dir: Path, args: list[str], message: str) -> None:
    from api_model_management.cli._app import app

    if "--data-dir" not in args:
        args = [*args, "--data-dir", str(log_dir)]
    result = CliRunner().invoke(app, ["status", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output


def test_choosing_the_system_on_a_cluster() -> None:
    from api_model_management.cli._status import choose_system
    from api_model_management.errors import InvalidInput

    one = {"amm-1a2b3c4d": "ns-1"}
    two = {"amm-1a2b3c4d": "ns-1", "prod": "ns-2"}
    assert choose_system(one, None, "h:1") == "amm-1a2b3c4d"
    assert choose_system(two, "prod", "h:1") == "prod"
    with pytest.raises(InvalidInput, match=r"^2 systems run on the Ray cluster at h:1 "
                                           r"\(amm-1a2b3c4d, prod\): choose one with --system$"):
        choose_system(two, None, "h:1")
    with pytest.raises(InvalidInput, match=r"^no API Model Management system runs on the Ray "
                                           r"cluster at h:1$"):
        choose_system({}, None, "h:1")
    with pytest.raises(InvalidInput, match=r"running: amm-1a2b3c4d, prod\)$"):
        choose_system(two, "staging", "h:1")
