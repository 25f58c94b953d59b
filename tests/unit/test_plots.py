"""The operator's charts (``amm report --plot`` / ``--html``) over a log written with the EventLog
API: two days of requests from four agent types on five models, with failures, failovers, cache
hits and spend near the budget limits. Each file must exist and be a real picture (many distinct
colours, not one); an empty log gives charts that say "no data"."""

from __future__ import annotations

import base64
import io
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from api_model_management._clock import ManualClock
from api_model_management.config import BudgetLimit, BudgetSettings
from api_model_management.errors import InvalidInput
from api_model_management.events import (
    AttemptFailed,
    Event,
    EventLog,
    FailoverTriggered,
    RequestCompleted,
    RequestFailed,
)
from api_model_management.projections import Projections
from api_model_management.projections._plotdata import (
    BUCKET_WIDTHS_S,
    MAX_BUCKETS,
    bucket_seconds,
    gather_plot_data,
)
from api_model_management.projections._plots import (
    CHARTS,
    NO_DATA,
    chart_bytes,
    plot_figures,
    share_text,
    usd_text,
    usd_ticks,
    write_html,
    write_plots,
)

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 9, 6, tzinfo=UTC)
NOW = START + timedelta(days=1, hours=18)
MODELS = {"gpt-4o": ("openai", 900.0, Decimal("0.004")),
          "gpt-4o-mini": ("openai", 300.0, Decimal("0.0004")),
          "claude-sonnet": ("anthropic", 1200.0, Decimal("0.005")),
          "gemini-flash": ("google", 250.0, Decimal("0.0003")),
          "llama3.2": ("ollama", 2000.0, Decimal("0"))}
AGENTS = ("research", "coder", "reviewer", "planner")
BUDGETS = BudgetSettings(alert_thresholds=[0.5, 0.8, 1.0], limits=[
    BudgetLimit(scope="global", key="*", window="day", limit_usd=Decimal("1.2")),
    BudgetLimit(scope="agent_type", key="research", window="day", limit_usd=Decimal("0.3")),
    BudgetLimit(scope="model", key="*", window="day", limit_usd=Decimal("0.5")),
    BudgetLimit(scope="provider", key="mistral", window="month", limit_usd=Decimal("10")),
])


def make_events(seed: int = 7, requests: int = 600) -> list[Event]:
    """Requests spread over 36 hours: most complete, some fail over first, a few fail, a tenth
    are cache hits; latency grows on one model in the afternoon of the second day."""
    rng = random.Random(seed)
    events: list[Event] = []
    span_s = (NOW - START).total_seconds() - 3600
    for i in range(requests):
        when = START + timedelta(seconds=span_s * i / requests + rng.uniform(0, 60))
        agent = AGENTS[i % len(AGENTS)]
        model_id = rng.choice(list(MODELS))
        events += _request(rng, f"r{i}", when, agent, model_id)
    return events


def _request(rng: random.Random, request_id: str, when: datetime, agent: str,
             model_id: str) -> list[Event]:
    provider, latency_ms, price = MODELS[model_id]
    common = {"request_id": request_id, "agent_type": agent}
    out: list[Event] = []
    roll = rng.random()
    if roll < 0.1:
        return [RequestCompleted(occurred_at=when, model_id=model_id, provider=provider,
                                 latency_ms=2.0, cache_hit=True, saved_cost_usd=price, **common)]
    if roll < 0.25:  # the first model failed: fail over to gpt-4o-mini
        out += [AttemptFailed(occurred_at=when, model_id=model_id, provider=provider, attempt=1,
                              error_kind="server_error", transient=True, http_status=503, **common),
                FailoverTriggered(occurred_at=when, model_id=model_id, provider=provider,
                                  from_model_id=model_id, to_model_id="gpt-4o-mini",
                                  reason="server_error", **common)]
        model_id = "gpt-4o-mini"
        provider, latency_ms, price = MODELS[model_id]
    if roll > 0.97:
        return [*out, RequestFailed(occurred_at=when, model_id=model_id, provider=provider,
                                    attempts=len(out) // 2 + 1, error_kind="timeout",
                                    models_tried=(model_id,), **common)]
    slow = 3.0 if model_id == "gpt-4o" and when.day == 10 and 12 <= when.hour < 16 else 1.0
    latency = latency_ms * slow * rng.lognormvariate(0, 0.4)
    return [*out, RequestCompleted(occurred_at=when + timedelta(milliseconds=latency),
                                   model_id=model_id, provider=provider, latency_ms=latency,
                                   input_tokens=400, output_tokens=200,
                                   cost_usd=price * Decimal(rng.randint(1, 4)), **common)]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("plots") / "data"
    EventLog(data_dir, fsync="never").append(make_events())
    return data_dir


@pytest.fixture
def projections(log_dir: Path) -> Projections:
    with Projections(log_dir, clock=ManualClock(start=NOW)) as p:
        yield p


def distinct_colours(image_bytes: bytes) -> int:
    with Image.open(io.BytesIO(image_bytes)) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24) or [])


def figure_texts(figure) -> list[str]:
    return [t.get_text() for ax in figure.axes for t in ax.texts]


# -- the data --------------------------------------------------------------------------------------


def test_bucket_width_keeps_the_series_short() -> None:
    assert bucket_seconds(0) == 1
    assert bucket_seconds(40) == 1
    assert bucket_seconds(3600) == 300
    assert bucket_seconds(36 * 3600) == 3600
    assert bucket_seconds(10 ** 9) == BUCKET_WIDTHS_S[-1]
    for span_s in (1, 59, 600, 86400, 30 * 86400):
        assert span_s / bucket_seconds(span_s) <= MAX_BUCKETS


def test_gathered_data_matches_the_log(projections: Projections) -> None:
    data = gather_plot_data(projections, budgets=BUDGETS)
    events = make_events()
    assert data.bucket_s == 3600
    provider_answered = [e for e in events if isinstance(e, RequestCompleted) and not e.cache_hit]
    assert sum(p.requests for p in data.latency) == len(provider_answered)
    assert all(p.p50_ms <= p.p95_ms <= p.p99_ms for p in data.latency)
    ended = [e for e in events if isinstance(e, RequestCompleted | RequestFailed)]
    assert sum(p.requests for p in data.rates) == len(ended)
    assert sum(p.failovers for p in data.rates) == sum(isinstance(e, FailoverTriggered) for e in events)
    paid = sum(float(e.cost_usd) for e in ended)
    assert sum(c.cost_usd for c in data.cost_by_agent_type) == pytest.approx(paid)
    assert sum(c.cost_usd for c in data.cost_by_model) == pytest.approx(paid)
    hits = [e for e in events if isinstance(e, RequestCompleted) and e.cache_hit]
    assert sum(p.hits for p in data.cache) == len(hits)
    assert sum(p.saved_usd for p in data.cache) == pytest.approx(sum(float(e.saved_cost_usd) for e in hits))


def test_budget_burn_accumulates_within_each_window(projections: Projections) -> None:
    data = gather_plot_data(projections, budgets=BUDGETS)
    assert data.budgets_configured
    by_label = {s.label: s for s in data.burn}
    day_spend: dict[str, float] = {}
    for e in make_events():
        if isinstance(e, RequestCompleted | RequestFailed) and e.cost_usd > 0:
            day = f"{e.occurred_at:%Y-%m-%d}"
            day_spend[day] = day_spend.get(day, 0.0) + float(e.cost_usd)
    glob = by_label["global * (day)"]
    values = [v for _, v in glob.points]
    assert values == sorted(values) or 0.0 in values  # rises, then drops to 0 at midnight
    ends = [v for (t, v), (t2, _) in zip(glob.points, [*glob.points[1:], (None, None)], strict=True)
            if t2 is None or t2.date() != t.date()]
    assert ends == pytest.approx([day_spend[d] for d in sorted(day_spend)])
    assert glob.peak_share == pytest.approx(max(day_spend.values()) / 1.2)
    assert glob.thresholds == (0.5, 0.8, 1.0)
    # a per-key limit gives one series per key seen; at most MAX_BURN_SERIES, the fullest first
    assert any(s.scope == "model" for s in data.burn)
    shares = [s.peak_share for s in data.burn]
    assert shares == sorted(shares, reverse=True)
    # with `since` inside a day, the day's burn still counts from midnight
    since = datetime(2026, 3, 10, 12, tzinfo=UTC)
    later = {s.label: s for s in gather_plot_data(projections, budgets=BUDGETS, since=since).burn}
    first_t, first_v = later["global * (day)"].points[0]
    assert first_t >= since
    assert first_v > sum(float(e.cost_usd) for e in make_events()
                         if isinstance(e, RequestCompleted | RequestFailed)
                         and since <= e.occurred_at <= first_t)


def test_a_fixed_key_limit_without_spend_is_drawn_empty(projections: Projections) -> None:
    budgets = BudgetSettings(limits=[BudgetLimit(scope="provider", key="mistral", window="month",
                                                 limit_usd=Decimal("10"))])
    [series] = gather_plot_data(projections, budgets=budgets).burn
    assert (series.label, series.points, series.peak_share) == ("provider mistral (month)", (), 0.0)


# -- the pictures ----------------------------------------------------------------------------------


def test_every_chart_is_written_and_is_a_real_picture(projections: Projections, tmp_path: Path) -> None:
    data = gather_plot_data(projections, budgets=BUDGETS)
    paths = write_plots(data, tmp_path / "new" / "charts")
    assert [p.name for p in paths] == [f"{name}.png" for name in CHARTS]
    for path in paths:
        png = path.read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), path.name
        assert distinct_colours(png) > 200, path.name
        with Image.open(path) as image:
            assert image.size[0] >= 1000 and image.size[1] >= 400, path.name
    assert not any(NO_DATA in text for fig in plot_figures(data).values() for text in figure_texts(fig))


def test_svg_charts(projections: Projections, tmp_path: Path) -> None:
    data = gather_plot_data(projections, budgets=BUDGETS, agent_type="research")
    paths = write_plots(data, tmp_path, fmt="svg")
    for path in paths:
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert text.count("<path") > 20, path.name
    with pytest.raises(InvalidInput, match="chart format 'gif'"):
        write_plots(data, tmp_path, fmt="gif")


def test_html_is_one_self_contained_file(projections: Projections, tmp_path: Path) -> None:
    data = gather_plot_data(projections, budgets=BUDGETS, since=START + timedelta(hours=20))
    page = write_html(data, tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(CHARTS)
    for encoded in images:
        assert distinct_colours(base64.b64decode(encoded)) > 200
    assert "since 2026-03-10 02:00 UTC" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from elsewhere
    svg_page = write_html(data, tmp_path / "report-svg.html", fmt="svg").read_text()
    assert svg_page.count("data:image/svg+xml;base64,") == len(CHARTS)


def test_an_empty_log_gives_charts_that_say_no_data(tmp_path: Path) -> None:
    with Projections(tmp_path / "nothing", clock=ManualClock(start=NOW)) as p:
        data = gather_plot_data(p)
    figures = plot_figures(data)
    for name, figure in figures.items():
        texts = figure_texts(figure)
        assert any(NO_DATA in t for t in texts), name
        assert distinct_colours(chart_bytes(figure)) > 10, name  # a title and a message, not blank
    assert any("--config" in t for t in figure_texts(figures["budget_burn"]))
    with Projections(tmp_path / "nothing", clock=ManualClock(start=NOW)) as p:
        unspent = gather_plot_data(p, budgets=BUDGETS)
    assert {s.label for s in unspent.burn} == {"global * (day)", "agent_type research (day)",
                                               "provider mistral (month)"}
    assert all(not s.points for s in unspent.burn)
    assert "no spend" in figure_texts(plot_figures(unspent)["budget_burn"])


def test_usd_text() -> None:
    assert [usd_text(v) for v in (0, 1234.5, 1.5, 0.00125, 0.5)] == [
        "$0", "$1,234", "$1.50", "$0.0013", "$0.50"]
    assert usd_ticks([0, 0.02, 0.04, 0.12]) == ["$0", "$0.02", "$0.04", "$0.12"]
    assert usd_ticks([0, 0.25, 0.5]) == ["$0", "$0.25", "$0.50"]
    assert usd_ticks([0, 50, 100]) == ["$0", "$50", "$100"]
    assert usd_ticks([0, 0.0005, 0.001]) == ["$0", "$0.0005", "$0.0010"]
    assert [share_text(v) for v in (0, 0.5, 0.0123, 0.00097)] == ["0.0%", "50.0%", "1.2%", "0.097%"]


# -- amm report --plot / --html -------------------------------------------------------------------


def test_report_command_writes_charts_and_html(log_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from api_model_management.cli._report import report_command

    clock = ManualClock(start=NOW)
    console = Console(record=True, width=160)
    code = report_command(log_dir, fmt="json", console=console, clock=clock,
                          plot_dir=tmp_path / "charts", html_path=tmp_path / "out.html")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == sorted(f"{n}.png" for n in CHARTS)
    assert (tmp_path / "out.html").stat().st_size > 50_000
    err = capsys.readouterr().err
    assert f"wrote {len(CHARTS)} charts to {tmp_path / 'charts'}" in err
    assert f"created {tmp_path / 'charts'}" in err


def test_report_command_refuses_bad_chart_targets(log_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from api_model_management.cli._report import report_command

    clock = ManualClock(start=NOW)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert report_command(log_dir, clock=clock, plot_dir=a_file) == 2
    assert report_command(log_dir, clock=clock, plot_dir=tmp_path, plot_format="gif") == 2
    assert report_command(log_dir, clock=clock, html_path=a_file / "x.html") == 2
    assert report_command(log_dir, clock=clock, html_path=tmp_path) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 4 and all(line.startswith("error:") for line in lines)
    assert "--plot " in lines[0] and "is not a directory" in lines[0]
    assert "'gif'" in lines[1]
    assert "--html " in lines[2] and "a-file is not a directory" in lines[2]
    assert "is a directory: name a file" in lines[3]
    assert not (tmp_path / "charts").exists()


def test_amm_report_plot_and_html_options(log_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api_model_management.cli._app import app

    charts, page = tmp_path / "charts", tmp_path / "page.html"
    result = CliRunner().invoke(app, ["report", "--data-dir", str(log_dir), "--format", "json",
                                      "--plot", str(charts), "--plot-format", "svg",
                                      "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in charts.iterdir()) == sorted(f"{n}.svg" for n in CHARTS)
    assert page.read_text().count("data:image/svg+xml;base64,") == len(CHARTS)
    refused = CliRunner().invoke(app, ["report", "--data-dir", str(log_dir), "--plot", str(charts),
                                       "--plot-format", "jpeg"])
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == ["error: --plot-format 'jpeg': use png or svg"]
