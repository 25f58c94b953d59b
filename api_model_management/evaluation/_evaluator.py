"""The heuristic response evaluator: completeness, relevance and coherence in [0, 1], and a
quality score calibrated to agree with a judge.

Deterministic, explainable and fast (about a hundred microseconds for a 2 KB answer). The three
scores are products of named factors (:mod:`._scores`); every factor below 1 adds a short reason to
``explanation``. Reasons name kinds and counts only, never prompt or answer text, so that the
explanation may be logged. ``quality_score`` is, by default, what the packaged
:class:`~._calibration.Calibration` predicts a GPT-4 judge would rate the answer (its 1-10 rating
/ 10), from the three scores and a few measurements (length for the kind of request, repetition,
arithmetic slips); ``QualitySettings.calibration_path`` names another model (``amm calibrate``
fits one to the judge and user feedback in the log), or None for the weighted sum of the three
scores under ``QualitySettings.weights``. The explanation names the calibration that decided.

The invariants hold for the scores and for the calibrated quality (the calibration's weights on
the three scores are never negative; all property-tested): a ``length`` finish never scores above
a clean stop; appending text unrelated to the prompt never raises relevance; repeating the answer
never raises coherence.

Answers that are not prose are judged by their schemas instead (:mod:`._structured`): an answer
with tool calls by whether each names a tool that may be called and its arguments validate against
that tool's parameters, a JSON answer (``response_format`` ``json_object`` / ``json_schema``) by
whether it parses and validates against the requested schema. Such an evaluation says
``evaluator="schema"``; its ``quality_score`` is the share of valid calls (0 when a call was
required and none was made), or 1 / 0 for a valid / invalid structured answer; completeness is the
share that validate, relevance the share that are JSON of the right shape naming a tool that may
be called, coherence 1 (JSON that parses is coherent; text that does not is not JSON at all, and
fails relevance and completeness). ``structured_valid`` / ``tool_calls_valid`` say which check ran
and whether it passed.

Large answers (scoring takes about 0.35 s a MB, holding the GIL) are kept off the caller's event
loop: :meth:`ResponseEvaluator.evaluate_async` scores answers longer than
:data:`INLINE_MAX_CHARS` in a worker thread, and an answer longer than :data:`SCORED_MAX_CHARS` is
scored on its first :data:`SCORED_MAX_CHARS` characters, cut back to a sentence end (the
explanation says so). Both rules depend on the text alone, so scores stay deterministic.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from functools import cache

from pydantic import BaseModel, ConfigDict

from .._request import ModelRequest, ToolCall
from ..config import QualitySettings
from ..errors import InvalidInput
from ..events import ResponseEvaluated
from ._calibration import DEFAULT, Calibration, feature_vector, load_calibration
from ._requirements import Requirements, extract
from ._scores import FINISH_FACTORS, Scores, score
from ._structured import OutputCheck, check_output
from ._text import Answer

__all__ = ["FINISH_FACTORS", "INLINE_MAX_CHARS", "SCORED_MAX_CHARS", "Evaluation",
           "ResponseEvaluator", "request_text", "scored_part"]

#: Answers up to this many characters are scored on the caller's loop (about 10 ms at most).
INLINE_MAX_CHARS = 32 * 1024
#: Longer answers are scored on a prefix this long (about 80 ms; the GIL is held for at most
#: about 15 ms at a time, so a loop beside the worker thread keeps running).
SCORED_MAX_CHARS = 256 * 1024
_SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n\n")
_UNSET: object = object()


class Evaluation(BaseModel):
    """Scores of one answer, each in [0, 1], with a short reason for anything below full marks.

    ``calibration`` names the model that turned the scores into ``quality_score`` (None: the
    weighted sum of the three, or a schema check); the explanation names it too, which is how it
    reaches the log. ``evaluator``: ``heuristic`` (prose) or ``schema`` (tool calls, structured
    output). ``structured_valid``: whether a JSON answer asked for is valid (None: none asked,
    or the answer called tools); ``tool_calls_valid``: whether the answer's tool calls are (None:
    no call made or required)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    completeness: float
    relevance: float
    coherence: float
    quality_score: float
    low_quality: bool
    explanation: str
    calibration: str | None = None
    evaluator: str = "heuristic"
    structured_valid: bool | None = None
    tool_calls_valid: bool | None = None

    @property
    def invalid_output(self) -> bool:
        """The answer's tool calls or structured output failed their schema check."""
        return self.structured_valid is False or self.tool_calls_valid is False

    def to_event(self, **common: object) -> ResponseEvaluated:
        """The ``ResponseEvaluated`` event for these scores; ``common`` holds ``request_id`` etc."""
        return ResponseEvaluated(
            completeness=self.completeness,
            relevance=self.relevance,
            coherence=self.coherence,
            quality_score=self.quality_score,
            low_quality=self.low_quality,
            evaluator=self.evaluator,
            explanation=self.explanation,
            **common,
        )


class ResponseEvaluator:
    """Scores answers against their requests; the calibration, weights and low-quality threshold
    from settings (``calibration`` given here replaces ``settings.calibration_path``; None: the
    weighted sum). A calibration file that cannot be used is a ``ConfigError`` here, not later."""

    def __init__(self, settings: QualitySettings | None = None, *,
                 calibration: Calibration | None | object = _UNSET) -> None:
        self._settings = settings or QualitySettings()
        if calibration is _UNSET:
            calibration = _load(self._settings.calibration_path)
        self._calibration = calibration if isinstance(calibration, Calibration) else None

    @property
    def calibration(self) -> Calibration | None:
        """The model behind ``quality_score`` (None: the weighted sum of the three scores)."""
        return self._calibration

    def evaluate(self, request: ModelRequest, text: str, finish_reason: str | None,
                 tool_calls: Sequence[ToolCall] = ()) -> Evaluation:
        """Score ``text`` (and ``tool_calls``) as the answer to ``request`` (``finish_reason``
        normalized, or None): by the schemas when the answer calls tools or JSON was asked for,
        else as prose, an answer longer than :data:`SCORED_MAX_CHARS` on its :func:`scored_part`.
        Anything but a request, a string, a string or None and a sequence of ``ToolCall`` is
        :class:`~api_model_management.errors.InvalidInput`."""
        _check_input(request, text, finish_reason)
        _check_calls(tool_calls)
        check = check_output(request, text, tool_calls)
        if check is not None:
            return self._judged_by_schema(check)
        scored = scored_part(text)
        note = [] if scored is text else [f"scored the first {len(scored)} of {len(text)} characters"]
        measured = _measure(request, scored, finish_reason)
        if measured is None:
            empty = ["empty answer"]
            return self._result(Scores(0.0, 0.0, 0.0, empty, empty, empty), note, None)
        quality = None
        if self._calibration is not None:
            quality = self._calibration.predict(feature_vector(*measured))
        return self._result(measured[2], note, quality)

    def features(self, request: ModelRequest, text: str, finish_reason: str | None,
                 tool_calls: Sequence[ToolCall] = ()) -> list[float] | None:
        """The calibration's inputs for this answer (:data:`~._calibration.FEATURE_NAMES`), or
        None for an empty answer (which scores 0 whatever the calibration) and for one judged by
        its schemas (no calibration applies): what ``amm calibrate`` fits on."""
        _check_input(request, text, finish_reason)
        _check_calls(tool_calls)
        if check_output(request, text, tool_calls) is not None:
            return None
        measured = _measure(request, scored_part(text), finish_reason)
        return None if measured is None else feature_vector(*measured)

    async def evaluate_async(self, request: ModelRequest, text: str, finish_reason: str | None,
                             tool_calls: Sequence[ToolCall] = ()) -> Evaluation:
        """:meth:`evaluate`, in a worker thread for answers longer than :data:`INLINE_MAX_CHARS`
        (the same scores, without stalling the caller's event loop)."""
        if isinstance(text, str) and len(text) <= INLINE_MAX_CHARS:
            return self.evaluate(request, text, finish_reason, tool_calls)
        return await asyncio.to_thread(self.evaluate, request, text, finish_reason, tool_calls)

    def _judged_by_schema(self, check: OutputCheck) -> Evaluation:
        n = check.checked
        if check.kind == "structured":
            quality = completeness = float(check.valid)
            relevance = float(check.parsed)
        else:
            quality = completeness = check.valid / n if n else 0.0
            relevance = check.parsed / n if n else 0.0
        valid = check.ok
        return Evaluation(
            completeness=_unit(completeness), relevance=_unit(relevance), coherence=1.0,
            quality_score=_unit(quality), low_quality=quality < self._settings.threshold,
            explanation=check.describe(), evaluator="schema",
            structured_valid=valid if check.kind == "structured" else None,
            tool_calls_valid=valid if check.kind == "tool_calls" else None,
        )

    def _result(self, scores: Scores, note: list[str], calibrated: float | None) -> Evaluation:
        c, r, h = scores.completeness, scores.relevance, scores.coherence
        parts = [_explain("completeness", c, scores.completeness_why),
                 _explain("relevance", r, scores.relevance_why),
                 _explain("coherence", h, scores.coherence_why), *note]
        name = None
        if calibrated is not None and self._calibration is not None:
            quality = _unit(calibrated)
            name = self._calibration.name
            parts.append(f"quality calibrated by {name}")
        else:
            w = self._settings.weights
            quality = _unit(w.completeness * c + w.relevance * r + w.coherence * h)
        return Evaluation(completeness=c, relevance=r, coherence=h, quality_score=quality,
                          low_quality=quality < self._settings.threshold,
                          explanation="; ".join(parts), calibration=name)


def scored_part(text: str) -> str:
    """The part of an answer that is scored: all of it up to :data:`SCORED_MAX_CHARS`, else its
    first :data:`SCORED_MAX_CHARS` characters cut back to the last sentence end in the second half
    of that window (so the prefix does not look cut off mid-sentence), if there is one."""
    if len(text) <= SCORED_MAX_CHARS:
        return text
    head = text[:SCORED_MAX_CHARS]
    end = max(head.rfind(mark) for mark in _SENTENCE_ENDS)
    return head[:end + 1] if end >= SCORED_MAX_CHARS // 2 else head


def request_text(request: ModelRequest) -> str:
    """What the user asked: the user messages (the system prompt is framing, not the question)."""
    return "\n".join(m.text for m in request.chat_messages() if m.role == "user")


# -- helpers -----------------------------------------------------------------------------------


@cache
def _packaged() -> Calibration | None:
    return load_calibration(DEFAULT)


def _load(path: str | None) -> Calibration | None:
    """The packaged calibration is read once per process; a file named in settings every time
    (so that a refitted file is picked up by a new evaluator)."""
    return _packaged() if path == DEFAULT else load_calibration(path)


def _measure(request: ModelRequest, text: str,
             finish_reason: str | None) -> tuple[Requirements, Answer, Scores] | None:
    """What the prompt asks, the answer, and its scores (rounded as reported: the calibration
    reads the same numbers the event records); None for an answer without a word."""
    answer = Answer(text)
    if _empty(answer):
        return None
    asked = request_text(request)
    req = extract(asked)
    scores = score(req, asked, answer, finish_reason, request.max_tokens)
    scores.completeness = _unit(scores.completeness)
    scores.relevance = _unit(scores.relevance)
    scores.coherence = _unit(scores.coherence)
    return req, answer, scores


def _empty(answer: Answer) -> bool:
    """No word at all (an answer in a script without Latin letters has no tokens, yet words)."""
    return not answer.tokens and not any(map(str.isalpha, answer.text))


def _check_input(request: object, text: object, finish_reason: object) -> None:
    if not isinstance(request, ModelRequest):
        raise InvalidInput(f"request must be a ModelRequest, not {type(request).__name__}")
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a str, not {type(text).__name__}")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise InvalidInput(f"finish_reason must be a str or None, not {type(finish_reason).__name__}")


def _check_calls(tool_calls: object) -> None:
    if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, str) or not all(
            isinstance(call, ToolCall) for call in tool_calls):
        raise InvalidInput("tool_calls must be a sequence of ToolCall")


def _unit(value: float) -> float:
    """Clamp to [0, 1] and round to 4 places (rounding is monotone, so invariants survive)."""
    if math.isnan(value):
        return 0.0
    return round(min(1.0, max(0.0, value)), 4)


def _explain(name: str, score: float, reasons: list[str]) -> str:
    return f"{name} {score:.2f} ({', '.join(reasons) if reasons else 'ok'})"
