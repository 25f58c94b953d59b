"""``amm calibrate``: fit the evaluator's quality calibration to judge / user / ground-truth labels
(from the event log, or a JSONL file) and write it as a small JSON model.

Prints how well the fit agrees with the labels on questions it was not fitted on (grouped
cross-validation), beside what the uncalibrated score and the log's recorded score achieve;
exit code 2 with one line on stderr on bad input or too few labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from .._clock import SYSTEM_CLOCK, Clock
from .._request import ModelRequest
from ..config import QualitySettings
from ..errors import ConfigError, InvalidInput
from ..evaluation import ResponseEvaluator
from ..evaluation._calibration import (
    DEFAULT_RIDGE,
    FEATURE_NAMES,
    MIN_GROUPS,
    MIN_LABELS,
    Fit,
    fit,
    spearman,
)
from ..evaluation._labels import (
    FEEDBACK_SOURCES,
    Features,
    LabelledAnswer,
    features_of,
    labels_from_jsonl,
    labels_from_log,
)
from ._errors import print_error

_FORMATS = ("table", "json")


def calibrate_command(data_dir: Path | None, labels: Path | None, out: Path, *,
                      name: str | None = None, ridge: float = DEFAULT_RIDGE, folds: int = 10,
                      sources: str = ",".join(FEEDBACK_SOURCES), fmt: str = "table",
                      console: Console | None = None, clock: Clock = SYSTEM_CLOCK) -> int:
    """Fit on ``labels`` (a JSONL file) or on the log in ``data_dir`` and write the model to
    ``out``; 0 on success, 2 (one line on stderr) on bad input or too few labels."""
    console = console or Console()
    try:
        if fmt not in _FORMATS:
            raise InvalidInput(f"--format must be one of {', '.join(_FORMATS)}, not {fmt!r}")
        if labels is not None and data_dir is not None:
            raise InvalidInput("give --labels FILE or --data-dir DIR, not both")
        rows, context = _read(labels, data_dir or Path("data"), sources)
        features = _features(rows, console if fmt == "table" else None)
        _check_enough(features, context)
        version = name or f"calibrated-{clock.now():%Y%m%dT%H%M%SZ}"
        result = fit(features.x, features.y, features.groups, name=version, ridge=ridge,
                     folds=folds, info={"source": context["source"],
                                        "label": context["label"]})
        result.calibration.save(out)
    except (InvalidInput, ConfigError, ValueError, OSError, pa.ArrowException) as exc:
        return _fail(exc)
    summary = _summary(result, features, context, out)
    if fmt == "json":
        console.print_json(json.dumps(summary))
    else:
        _render(summary, result, console)
    return 0


def _read(labels: Path | None, data_dir: Path,
          sources: str) -> tuple[list[LabelledAnswer], dict[str, Any]]:
    if labels is not None:
        if not labels.is_file():
            raise InvalidInput(f"--labels {labels} is not a file")
        rows = labels_from_jsonl(labels)
        return rows, {"source": str(labels), "label": "score in the file", "rows": len(rows),
                      "logged_quality": {}, "hint": "add rows"}
    wanted = [s.strip() for s in sources.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(FEEDBACK_SOURCES))
    if unknown or not wanted:
        raise InvalidInput(f"--sources takes {', '.join(FEEDBACK_SOURCES)}, not {sources!r}")
    if "://" not in str(data_dir) and not (data_dir / "events").is_dir():
        raise InvalidInput(f"no event log under {data_dir} (expected {data_dir}/events/)")
    read = labels_from_log(data_dir, wanted)
    hint = (f"{read.without_text} labelled requests have no text in the log: set "
            "settings.store_prompts" if read.without_text else "record more feedback")
    return read.labels, {"source": f"event log {data_dir} ({', '.join(wanted)} feedback)",
                         "label": "FeedbackRecorded.score", "rows": read.feedback,
                         "by_source": read.by_source, "without_text": read.without_text,
                         "logged_quality": read.logged_quality, "hint": hint}


def _features(rows: Sequence[LabelledAnswer], console: Console | None) -> Features:
    evaluator = ResponseEvaluator(QualitySettings(calibration_path=None))
    if console is None or len(rows) < 200:
        return features_of(rows, evaluator)
    columns = (TextColumn("scoring answers"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("score", total=len(rows))
        return features_of(rows, evaluator, lambda n: progress.advance(task, n))


def _check_enough(features: Features, context: dict[str, Any]) -> None:
    groups = len(set(features.groups))
    if len(features.y) < MIN_LABELS or groups < MIN_GROUPS:
        raise InvalidInput(
            f"{len(features.y)} usable labelled answers over {groups} questions in "
            f"{context['source']}; at least {MIN_LABELS} over {MIN_GROUPS} questions are needed "
            f"({context['hint']})")


def _summary(result: Fit, features: Features, context: dict[str, Any], out: Path) -> dict[str, Any]:
    weighted = ResponseEvaluator(QualitySettings(calibration_path=None))
    uncalibrated = [weighted.evaluate(_request(item), item.answer, item.finish_reason).quality_score
                    for item in features.kept]
    in_sample = [result.calibration.predict(x) for x in features.x]
    summary: dict[str, Any] = {
        "out": str(out), "name": result.calibration.name, "source": context["source"],
        "labels": len(features.y), "questions": len(set(features.groups)),
        "empty_answers_skipped": features.empty, "folds": result.folds,
        "spearman": {"held_out": round(result.cv_rho, 4),
                     "in_sample": round(spearman(in_sample, features.y), 4),
                     "uncalibrated": round(spearman(uncalibrated, features.y), 4)},
        "per_category": _per_category(features, result.cv_predictions),
        "weights": dict(zip(FEATURE_NAMES, result.calibration.weights, strict=True)),
    }
    logged = context["logged_quality"]
    if logged:
        summary["spearman"]["logged_quality"] = round(_logged_rho(features, logged), 4)
    for key in ("by_source", "without_text"):
        if key in context:
            summary[key] = context[key]
    return summary


def _request(item: LabelledAnswer) -> ModelRequest:
    return ModelRequest(prompt=item.prompt or " ", max_tokens=item.max_tokens)


def _logged_rho(features: Features, logged: dict[str, float]) -> float:
    pairs = [(logged[item.request_id], label) for item, label in zip(features.kept, features.y, strict=True)
             if item.request_id in logged]
    return spearman([p for p, _ in pairs], [label for _, label in pairs]) if len(pairs) > 1 else 0.0


def _per_category(features: Features, predictions: Sequence[float]) -> dict[str, dict[str, float]]:
    by: dict[str, list[int]] = {}
    for i, item in enumerate(features.kept):
        if item.category is not None:
            by.setdefault(item.category, []).append(i)
    return {category: {"n": len(rows), "held_out": round(spearman(
        [predictions[i] for i in rows], [features.y[i] for i in rows]), 4)}
        for category, rows in sorted(by.items()) if len(rows) >= 2}


def _render(summary: dict[str, Any], result: Fit, console: Console) -> None:
    rho = summary["spearman"]
    table = Table(title=f"Quality calibration {summary['name']} → {summary['out']}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("labelled answers", f"{summary['labels']:,} ({summary['questions']:,} questions)")
    if summary["empty_answers_skipped"]:
        table.add_row("empty answers skipped", str(summary["empty_answers_skipped"]))
    if summary.get("without_text"):
        table.add_row("labels without text (store_prompts off)", str(summary["without_text"]))
    table.add_row(f"Spearman ρ, held-out questions ({result.folds} folds)", f"{rho['held_out']:+.3f}")
    table.add_row("Spearman ρ, in sample", f"{rho['in_sample']:+.3f}")
    table.add_row("Spearman ρ, uncalibrated score", f"{rho['uncalibrated']:+.3f}")
    if "logged_quality" in rho:
        table.add_row("Spearman ρ, quality the log recorded", f"{rho['logged_quality']:+.3f}")
    for category, row in summary["per_category"].items():
        table.add_row(f"  held-out ρ, {category} ({row['n']})", f"{row['held_out']:+.3f}")
    console.print(table)
    weights = Table(title="weights (per standard deviation of each feature)")
    weights.add_column("feature")
    weights.add_column("weight", justify="right")
    for feature, weight in summary["weights"].items():
        weights.add_row(feature, f"{weight:+.4f}")
    console.print(weights)


def _fail(exc: Exception) -> int:
    return print_error(exc)
