"""Labelled answers to fit a calibration on: a JSONL file of (question, answer, score), or the
judge, user and ground-truth feedback in the event log joined to the answers it scored.

A label is a score in [0, 1] (a judge's 1-10 rating / 10, as ``parse_judge_score`` reads it, or a
user's or a ground truth's score as ``FeedbackRecorded`` holds it). The ``group`` of a label is
what must not be split across cross-validation folds: the question (``question_id``, or the
prompt's text or hash), so that a fit is scored on questions it never saw.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._request import ModelRequest
from ..errors import InvalidInput
from ._evaluator import ResponseEvaluator

FEEDBACK_SOURCES = ("judge", "user", "ground_truth")
_QUESTION_FIELDS = ("question", "prompt")
_ANSWER_FIELDS = ("answer", "response", "text")
_SCORE_FIELDS = ("score", "label", "rating")
_JUDGE_SCALE = 10.0
#: The ``max_tokens`` labelled answers are scored under when the label does not say (large, so
#: that only an answer that ends mid-sentence at that length looks cut off).
DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class LabelledAnswer:
    """One answer with the score it should get (in [0, 1]) and the group it belongs to."""

    prompt: str
    answer: str
    label: float
    group: str
    finish_reason: str | None = None
    category: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    request_id: str | None = None


@dataclass(frozen=True)
class LogLabels:
    """Labels read from an event log, with what was left out and why."""

    labels: list[LabelledAnswer]
    feedback: int  # FeedbackRecorded events from the sources asked for
    by_source: dict[str, int]
    without_text: int  # labelled requests whose prompt or answer the log does not hold
    logged_quality: dict[str, float]  # request_id -> quality_score the log recorded


def labels_from_jsonl(path: str | Path) -> list[LabelledAnswer]:
    """Rows of ``{"question": ..., "answer": ..., "score": ...}`` (also ``prompt`` / ``response``
    / ``label``; optional ``question_id``, ``finish_reason``, ``category``). Scores in [0, 1] are
    taken as they are; a file with any score above 1 is read as a judge's 1-10 scale (/ 10).
    :class:`~api_model_management.errors.InvalidInput` names the first bad line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path} line {number} is not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path} line {number} is not a JSON object")
            rows.append((number, row))
    scale = _JUDGE_SCALE if any(_score(row, path, n) > 1 for n, row in rows) else 1.0
    return [_labelled(row, path, number, scale) for number, row in rows]


def _field(row: dict[str, Any], names: Sequence[str], path: str | Path, number: int) -> Any:
    for name in names:
        if name in row:
            return row[name]
    raise InvalidInput(f"{path} line {number} has no {' / '.join(names)} field")


def _score(row: dict[str, Any], path: str | Path, number: int) -> float:
    value = _field(row, _SCORE_FIELDS, path, number)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise InvalidInput(f"{path} line {number}: the score must be a number in [0, 10], not {value!r}")
    return float(value)


def _labelled(row: dict[str, Any], path: str | Path, number: int, scale: float) -> LabelledAnswer:
    question = _field(row, _QUESTION_FIELDS, path, number)
    answer = _field(row, _ANSWER_FIELDS, path, number)
    if not isinstance(question, str) or not isinstance(answer, str):
        raise InvalidInput(f"{path} line {number}: the question and the answer must be strings")
    group = row.get("question_id", question)
    finish = row.get("finish_reason")
    category = row.get("category")
    return LabelledAnswer(prompt=question, answer=answer, label=_score(row, path, number) / scale,
                          group=str(group), finish_reason=finish if isinstance(finish, str) else None,
                          category=category if isinstance(category, str) else None)


def labels_from_log(data_dir: str | Path,
                    sources: Iterable[str] = FEEDBACK_SOURCES) -> LogLabels:
    """``FeedbackRecorded`` scores (from ``sources``) joined by ``request_id`` to the
    ``RequestCompleted`` that holds the prompt and the answer (logged with ``store_prompts`` on)
    and to the ``ResponseEvaluated`` quality the log recorded. Several scores of one request are
    averaged; a request's group is its prompt hash."""
    from ..events._ingest import read_all_events  # pyarrow: only when reading a log
    from ..events._types import FeedbackRecorded, RequestCompleted, ResponseEvaluated

    wanted = set(sources)
    events = read_all_events(data_dir, ["FeedbackRecorded", "RequestCompleted", "ResponseEvaluated"])
    scores: dict[str, list[float]] = defaultdict(list)
    by_source: dict[str, int] = defaultdict(int)
    completed: dict[str, RequestCompleted] = {}
    logged: dict[str, float] = {}
    for event in events:
        if isinstance(event, FeedbackRecorded) and event.source in wanted and event.request_id:
            scores[event.request_id].append(event.score)
            by_source[event.source] += 1
        elif isinstance(event, RequestCompleted) and event.request_id and not event.cache_hit:
            completed[event.request_id] = event
        elif isinstance(event, ResponseEvaluated) and event.request_id:
            logged[event.request_id] = event.quality_score  # the last one scored the final answer
    labels, without_text = [], 0
    for request_id in sorted(scores):
        done = completed.get(request_id)
        if done is None or done.prompt_text is None or done.response_text is None:
            without_text += 1
            continue
        values = scores[request_id]
        labels.append(LabelledAnswer(
            prompt=done.prompt_text, answer=done.response_text, label=sum(values) / len(values),
            group=done.prompt_hash or done.prompt_text, finish_reason=done.finish_reason,
            category=done.agent_type, request_id=request_id))
    return LogLabels(labels, sum(by_source.values()), dict(by_source), without_text,
                     {k: v for k, v in logged.items() if k in scores})


@dataclass(frozen=True)
class Features:
    """The calibration's inputs for the labels that have any (an empty answer scores 0 whatever
    the calibration, so it teaches it nothing)."""

    x: list[list[float]]
    y: list[float]
    groups: list[str]
    kept: list[LabelledAnswer]
    empty: int


def features_of(labels: Sequence[LabelledAnswer], evaluator: ResponseEvaluator | None = None,
                progress: Callable[[int], None] | None = None) -> Features:
    """Compute each answer's features (``evaluator``: one whose settings read the prompts as the
    router's will; its calibration does not matter). ``progress`` is called with 1 per label."""
    evaluator = evaluator or ResponseEvaluator(calibration=None)
    x: list[list[float]] = []
    y: list[float] = []
    groups: list[str] = []
    kept: list[LabelledAnswer] = []
    empty = 0
    for item in labels:
        request = ModelRequest(prompt=item.prompt or " ", max_tokens=item.max_tokens)
        vector = evaluator.features(request, item.answer, item.finish_reason)
        if vector is None:
            empty += 1
        else:
            x.append(vector)
            y.append(item.label)
            groups.append(item.group)
            kept.append(item)
        if progress is not None:
            progress(1)
    return Features(x, y, groups, kept, empty)
