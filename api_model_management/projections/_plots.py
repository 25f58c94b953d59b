"""The operator's charts (``amm report --plot DIR`` / ``--html FILE``, and the notebook).

    data = gather_plot_data(projections, since=..., budgets=config.settings.budgets)
    figures = plot_figures(data)           # name -> matplotlib Figure
    write_plots(data, "charts/")           # one PNG (or SVG) per chart
    write_html(data, "report.html")        # one self-contained file, charts embedded

Charts (``CHARTS``): latency percentiles over time per model, cost per day by agent type and by
model, success and failover rates, budget burn against each limit with its alert thresholds, and
cache savings. A chart (or panel) with nothing to draw says so in its middle ("no data") instead
of showing an empty axis.

Figures are ``matplotlib.figure.Figure`` objects made without ``pyplot``: no global figure
registry, no GUI backend, nothing to close. matplotlib is imported on first use, so importing this
module costs nothing.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ._plotdata import BurnSeries, PlotData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The charts, in the order they are written, with their titles.
CHARTS: dict[str, str] = {
    "latency_percentiles": "Latency percentiles over time, per model",
    "cost_per_day": "Cost per day, by agent type and by model",
    "reliability": "Success and failover rates",
    "budget_burn": "Budget burn against the limits",
    "cache_savings": "Cache hits and savings",
}
FORMATS = ("png", "svg")
NO_DATA = "no data"
#: A budget whose spend peaks under this share of its limit is drawn zoomed in on the spend.
ZOOM_BELOW_SHARE = 0.2
_DPI = 100
_WIDTH_IN = 11.0


def plot_figures(data: PlotData) -> dict[str, Figure]:
    """Every chart of ``CHARTS`` as a matplotlib Figure, by name."""
    return {name: _DRAW[name](data) for name in CHARTS}


def chart_bytes(figure: Figure, fmt: str = "png") -> bytes:
    """The figure encoded as PNG or SVG."""
    _check_format(fmt)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=_DPI)
    return buffer.getvalue()


def write_plots(data: PlotData, out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Write one ``<chart>.<fmt>`` file per chart into ``out_dir`` (created if missing);
    returns the paths, in ``CHARTS`` order."""
    _check_format(fmt)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in plot_figures(data).items():
        path = folder / f"{name}.{fmt}"
        path.write_bytes(chart_bytes(figure, fmt))
        paths.append(path)
    return paths


def write_html(data: PlotData, path: str | Path, fmt: str = "png") -> Path:
    """Write one self-contained HTML page with every chart embedded (base64 ``fmt``); no
    scripts, styles or images are fetched from anywhere."""
    _check_format(fmt)
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    sections = []
    for name, figure in plot_figures(data).items():
        encoded = base64.b64encode(chart_bytes(figure, fmt)).decode("ascii")
        title = html.escape(CHARTS[name])
        sections.append(f'<section id="{name}"><h2>{title}</h2>'
                        f'<img alt="{title}" src="data:{mime};base64,{encoded}"></section>')
    target = Path(path)
    target.write_text(_PAGE.format(scope=html.escape(scope_text(data)),
                                   generated=f"{data.at:%Y-%m-%d %H:%M:%S} UTC",
                                   sections="\n".join(sections)), encoding="utf-8")
    return target


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>API Model Management: charts</title>
<style>body {{ font-family: sans-serif; max-width: 1120px; margin: 1em auto; color: #222; }}
img {{ max-width: 100%; }} section {{ margin-bottom: 2em; }}</style></head>
<body><h1>API Model Management: charts</h1>
<p>{scope}; generated {generated}.</p>
{sections}
</body></html>
"""


def scope_text(data: PlotData) -> str:
    """What the charts cover, in words."""
    period = f"since {data.since:%Y-%m-%d %H:%M} UTC" if data.since else "whole log"
    agent = f", agent type {data.agent_type}" if data.agent_type else ""
    return f"{period}{agent}"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidInput(f"chart format {fmt!r}: use {' or '.join(FORMATS)}", field="format")


# -- shared drawing helpers ------------------------------------------------------------------------


def _figure(name: str, data: PlotData, rows: int, cols: int = 1, *, height_in: float = 3.0,
            share: bool = False) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_IN, 1.0 + height_in * rows), layout="constrained")
    figure.suptitle(f"{CHARTS[name]}  ({scope_text(data)})", fontsize="large")
    axes = figure.subplots(rows, cols, squeeze=False, sharex=share, sharey=share)
    return figure, [ax for row in axes for ax in row]


def no_data(ax: Axes, message: str = NO_DATA) -> None:
    """Say ``message`` in the middle of an empty panel, without ticks."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            fontsize="x-large", color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _time_axis(ax: Axes, *, label: bool = True) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if label:
        ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)


def _colours(keys: Iterable[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    ordered = sorted(set(keys))
    palette = colormaps["tab10" if len(ordered) <= 10 else "tab20"]
    return {key: palette(i % palette.N) for i, key in enumerate(ordered)}


def usd_text(value: float) -> str:
    """A USD amount for a title: ``$1,234``, ``$1.50``, ``$0.0012`` (two significant digits
    under a cent)."""
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 0.01:
        return f"${value:,.2f}"
    return f"${value:.2g}"


def usd_ticks(values: list[float]) -> list[str]:
    """Axis labels for tick ``values``: the decimals their spacing needs (at least cents under a
    dollar), the same for all (``$0.05, $0.10, $0.15``)."""
    steps = [abs(b - a) for a, b in zip(values, values[1:], strict=False) if b != a]
    step = min(steps) if steps else abs(values[0]) if values and values[0] else 1.0
    decimals = next((d for d in range(9) if abs(round(step, d) - step) <= step * 1e-6), 8)
    if step < 1:
        decimals = max(decimals, 2)
    return [f"${v:,.{decimals}f}" if v else "$0" for v in values]


def share_text(share: float) -> str:
    """A share as a percentage with one decimal, or two significant digits under 1%."""
    if share == 0 or share >= 0.01:
        return f"{share:.1%}"
    return f"{share * 100:.2g}%"


def _usd_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import Formatter

    class UsdFormatter(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            labels = usd_ticks(list(self.locs))
            return labels[pos] if pos is not None and pos < len(labels) else usd_text(x)

        def format_ticks(self, values: Any) -> list[str]:
            self.set_locs(values)
            return usd_ticks(list(values))

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(UsdFormatter())


def _share_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PercentFormatter(1.0))


def _legend_right(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _days(times: Iterable[datetime]) -> list[float]:
    """Times as matplotlib's date numbers (days since its epoch), for the date axes."""
    from matplotlib.dates import date2num

    return [float(date2num(t)) for t in times]


def _bucket_width(data: PlotData) -> float:
    """Four fifths of a bucket, in days (a bar's width on a date axis)."""
    return data.bucket_s * 0.8 / 86400


# -- the charts -----------------------------------------------------------------------------------


def latency_chart(data: PlotData) -> Figure:
    """p50, p95 and p99 latency per bucket, one line per model (log scale when they differ
    a lot)."""
    series: dict[str, list[Any]] = defaultdict(list)
    for point in data.latency:
        series[point.model_id].append(point)
    figure, axes = _figure("latency_percentiles", data, 3, height_in=2.4, share=bool(series))
    colours = _colours(series)
    for ax, (field, label) in zip(axes, (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")),
                                  strict=True):
        ax.set_title(f"{label} latency", loc="left", fontsize="medium")
        if not series:
            no_data(ax)
            continue
        for model_id, points in series.items():
            ax.plot(_days(p.bucket for p in points), [getattr(p, field) for p in points], marker="o",
                    markersize=3, linewidth=1.2, color=colours[model_id], label=model_id)
        ax.set_ylabel("ms")
        _time_axis(ax, label=ax is axes[-1])
    if series:
        _latency_scale(axes[0], [v for p in data.latency for v in (p.p50_ms, p.p99_ms)])
        _legend_right(axes[0])
    return figure


def _latency_scale(ax: Axes, values: list[float]) -> None:
    """Log scale (ticks at 1, 2 and 5 of each decade, plain numbers) when the latencies span
    more than a factor of 30; the axes share it."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if not positive or max(positive) / min(positive) <= 30:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def cost_chart(data: PlotData) -> Figure:
    """Stacked bars of spend per UTC day: by agent type above, by model below."""
    figure, axes = _figure("cost_per_day", data, 2, height_in=3.2)
    for ax, rows, what in ((axes[0], data.cost_by_agent_type, "agent type"),
                           (axes[1], data.cost_by_model, "model")):
        ax.set_title(f"by {what}", loc="left", fontsize="medium")
        if not rows or not any(r.cost_usd for r in rows):
            no_data(ax)
            continue
        _stacked_days(ax, rows)
    return figure


def _stacked_days(ax: Axes, rows: list[Any]) -> None:
    days = sorted({r.day for r in rows})
    keys = sorted({r.key for r in rows}, key=lambda k: -sum(r.cost_usd for r in rows if r.key == k))
    colours = _colours(keys)
    cost = {(r.day, r.key): r.cost_usd for r in rows}
    bottom = [0.0] * len(days)
    positions = list(range(len(days)))
    for key in keys:
        heights = [cost.get((day, key), 0.0) for day in days]
        ax.bar(positions, heights, bottom=bottom, color=colours[key], label=key, width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(positions, [f"{day:%Y-%m-%d}" for day in days],
                  rotation=30 if len(days) > 8 else 0, ha="right" if len(days) > 8 else "center")
    ax.set_xlim(-0.75, len(days) - 0.25)
    ax.set_ylim(0, max(bottom) * 1.1)
    _usd_axis(ax)
    ax.set_ylabel("cost (USD)")
    ax.grid(True, axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # top of the legend = top of the stack
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize="small", frameon=False)


def reliability_chart(data: PlotData) -> Figure:
    """Per model: share of provider calls that succeeded and failovers per call; over time:
    the share of requests that completed and failovers per request."""
    rows = max(1, len(data.success_by_model))
    figure, axes = _figure("reliability", data, 2, height_in=max(3.0, 0.28 * rows + 1.0))
    _reliability_by_model(axes[0], data)
    _reliability_over_time(axes[1], data)
    return figure


def _reliability_by_model(ax: Axes, data: PlotData) -> None:
    ax.set_title("per model (provider calls)", loc="left", fontsize="medium")
    models = [r for r in data.success_by_model if r.attempts]
    if not models:
        no_data(ax)
        return
    positions = list(range(len(models)))
    success = [r.success_rate or 0.0 for r in models]
    failover = [r.failover_rate or 0.0 for r in models]
    ax.barh([p - 0.2 for p in positions], success, height=0.4, color="#2a9d8f",
            label="calls that succeeded")
    ax.barh([p + 0.2 for p in positions], failover, height=0.4, color="#e76f51",
            label="failovers per call")
    for bars in ax.containers:
        ax.bar_label(bars, fmt="{:.0%}", padding=2, fontsize="x-small")  # type: ignore[arg-type]
    ax.set_yticks(positions, [r.model_id for r in models])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, *failover) * 1.1)
    _share_axis(ax, "x")
    ax.grid(True, axis="x", alpha=0.3)
    _legend_right(ax)


def _reliability_over_time(ax: Axes, data: PlotData) -> None:
    ax.set_title("over time (requests)", loc="left", fontsize="medium")
    points = [p for p in data.rates if p.requests]
    if not points:
        no_data(ax)
        return
    times = _days(p.bucket for p in points)
    ax.plot(times, [p.success_rate for p in points], marker="o", markersize=3, color="#2a9d8f",
            label="requests completed")
    ax.plot(times, [p.failovers_per_request for p in points], marker="o", markersize=3,
            color="#e76f51", label="failovers per request")
    top = max(1.0, *(p.failovers_per_request for p in points))
    ax.set_ylim(0, top * 1.05)
    _share_axis(ax)
    _time_axis(ax)
    _legend_right(ax)


def burn_chart(data: PlotData) -> Figure:
    """Spend accumulated within each budget window (it drops at each new window) against the
    limit (red) and its alert thresholds (dashed); the closest to their limits first."""
    count = len(data.burn)
    cols = 2 if count > 1 else 1
    rows = max(1, -(-count // cols))
    figure, axes = _figure("budget_burn", data, rows, cols, height_in=2.8)
    if not data.burn:
        message = ("no data: no budget limits given (amm report --config REGISTRY)"
                   if not data.budgets_configured else NO_DATA)
        no_data(axes[0], message)
    for ax, series in zip(axes, data.burn, strict=False):
        _burn_panel(ax, series)
    for ax in axes[max(1, count):]:
        ax.set_visible(False)
    return figure


def _burn_panel(ax: Axes, series: BurnSeries) -> None:
    """One limit: spend against the limit and thresholds, or zoomed in on the spend (a right-hand
    axis in shares of the limit) when it stays under ``ZOOM_BELOW_SHARE`` of the limit."""
    ax.set_title(f"{series.label}: peak {share_text(series.peak_share)} of "
                 f"{usd_text(series.limit_usd)}", loc="left", fontsize="medium")
    _usd_axis(ax)
    if not series.points:
        _limit_lines(ax, series)
        ax.text(0.5, 0.5, "no spend", transform=ax.transAxes, ha="center", va="center",
                fontsize="large", color="#777777")
        ax.set_xticks([])
        return
    # the last total holds to the end of its bucket
    times = _days([*(t for t, _ in series.points),
                   series.points[-1][0] + timedelta(seconds=series.bucket_s)])
    values = [*(v for _, v in series.points), series.points[-1][1]]
    ax.step(times, values, where="post", color="#1d3557", linewidth=1.5)
    ax.fill_between(times, values, step="post", color="#1d3557", alpha=0.15)
    _time_axis(ax)
    if series.peak_share >= ZOOM_BELOW_SHARE:
        _limit_lines(ax, series)
    else:
        _zoomed(ax, series, max(values))


def _limit_lines(ax: Axes, series: BurnSeries) -> None:
    ax.axhline(series.limit_usd, color="#d62828", linewidth=1.5)
    for threshold in series.thresholds:
        if threshold != 1.0:
            ax.axhline(series.limit_usd * threshold, color="#f77f00", linewidth=1, linestyle="--")
        ax.annotate(f"{threshold:.0%}", xy=(1.0, series.limit_usd * threshold),
                    xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize="small", color="#d62828" if threshold >= 1 else "#f77f00")
    peak = max((v for _, v in series.points), default=0.0)
    ax.set_ylim(0, max(series.limit_usd * max((1.0, *series.thresholds)), peak) * 1.1)


def _zoomed(ax: Axes, series: BurnSeries, peak: float) -> None:
    from matplotlib.ticker import PercentFormatter

    limit = series.limit_usd

    def to_share(usd: Any) -> Any:
        return usd / limit

    def to_usd(share: Any) -> Any:
        return share * limit

    ax.set_ylim(0, peak * 1.3 if peak > 0 else limit * ZOOM_BELOW_SHARE)
    shares = ax.secondary_yaxis("right", functions=(to_share, to_usd))
    shares.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    shares.set_ylabel("share of the limit", fontsize="small")
    ax.text(0.02, 0.95, "zoomed in: the limit is far above", transform=ax.transAxes, va="top",
            fontsize="small", color="#d62828")


def cache_chart(data: PlotData) -> Figure:
    """Share of completed requests served by the cache per bucket, and the cost the hits saved
    (per bucket and accumulated)."""
    points = [p for p in data.cache if p.requests]
    figure, axes = _figure("cache_savings", data, 2, height_in=2.8)
    hits, requests = sum(p.hits for p in points), sum(p.requests for p in points)
    share = f" ({hits / requests:.1%})" if requests else ""
    axes[0].set_title(f"hit rate: {hits:,} of {requests:,} completed requests{share}", loc="left",
                      fontsize="medium")
    total = sum(p.saved_usd for p in points)
    axes[1].set_title(f"saved by the cache: {usd_text(total)} in all", loc="left",
                      fontsize="medium")
    if not points:
        no_data(axes[0])
        no_data(axes[1])
        return figure
    times = _days(p.bucket for p in points)
    axes[0].bar(times, [p.hits / p.requests for p in points], width=_bucket_width(data),
                align="edge", color="#457b9d")
    axes[0].set_ylim(0, 1.05)
    _share_axis(axes[0])
    _time_axis(axes[0])
    _savings(axes[1], data, times, [p.saved_usd for p in points])
    axes[1].set_xlim(axes[0].get_xlim())
    return figure


def _savings(ax: Axes, data: PlotData, times: list[float], saved: list[float]) -> None:
    """Bars per bucket; the accumulated line reaches each total at its bucket's end."""
    step = data.bucket_s / 86400
    xs, cumulative = [times[0]], [0.0]
    for when, value in zip(times, saved, strict=True):
        xs.append(when + step)
        cumulative.append(cumulative[-1] + value)
    ax.bar(times, saved, width=_bucket_width(data), align="edge", color="#a8dadc",
           label="saved per bucket")
    ax.plot(xs, cumulative, color="#1d3557", marker="o", markersize=2, label="accumulated")
    ax.set_ylim(0, max(cumulative) * 1.1 or 1.0)
    _usd_axis(ax)
    _time_axis(ax)
    ax.legend(loc="upper left", fontsize="small", frameon=False)


_DRAW: dict[str, Callable[[PlotData], Figure]] = {
    "latency_percentiles": latency_chart,
    "cost_per_day": cost_chart,
    "reliability": reliability_chart,
    "budget_burn": burn_chart,
    "cache_savings": cache_chart,
}
