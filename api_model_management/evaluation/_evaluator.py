"""The heuristic response evaluator: completeness, relevance and coherence, each in [0, 1].

Deterministic, explainable and fast (well under a millisecond for a 2 KB answer). Each score is a
product of named factors; every factor below 1 adds a short reason to ``explanation``. Reasons name
kinds and counts only, never prompt or answer text, so that the explanation may be logged.

- completeness = finish reason × coverage of what was asked × length adequacy × cut-off signs
- relevance    = (0.7 · weighted coverage of prompt terms + 0.3 · on-topic density) × refusal
- coherence    = clean characters × structure × (1 − repeated sentences) × (1 − excess repeated trigrams)

The factors are chosen so that the documented invariants hold (and are property-tested): a
``length`` finish never scores above a clean stop; appending text unrelated to the prompt never
raises relevance; repeating the answer never raises coherence.

Large answers (scoring takes about 0.35 s a MB, holding the GIL) are kept off the caller's event
loop: :meth:`ResponseEvaluator.evaluate_async` scores answers longer than
:data:`INLINE_MAX_CHARS` in a worker thread, and an answer longer than :data:`SCORED_MAX_CHARS` is
scored on its first :data:`SCORED_MAX_CHARS` characters, cut back to a sentence end (the
explanation says so). Both rules depend on the text alone, so scores stay deterministic.
"""

from __future__ import annotations

import asyncio
import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from .._request import ModelRequest
from ..config import QualitySettings
from ..events import ResponseEvaluated
from . import _text
from ._requirements import Requirements, extract

#: Completeness factor per normalized finish reason (``stop`` / ``tool_calls`` / None: 1).
FINISH_FACTORS: dict[str, float] = {"length": 0.35, "content_filter": 0.3, "error": 0.2, "other": 0.9}

_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry,? but|i (?:cannot|can't|can not|won't|will not|am unable to|"
    r"'m unable to|am not able to|'m not able to) (?:help|assist|comply|provide|answer|do that)|"
    r"as an ai(?: language model)?,? i (?:cannot|can't|don't)|i must decline|"
    r"unable to (?:help|assist) with (?:that|this))"
)
_REFUSAL_WINDOW_CHARS = 300
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•+])\s+\S", re.MULTILINE)
_CODE_LINE = re.compile(
    r"^(?: {4}|\t)\S|\b(?:def|return|function|class|import|const|let|var|fn|func|public|SELECT|"
    r"FROM)\b|[;{}]\s*$|=>|==|\w\(.*\)",
    re.MULTILINE,
)
_CLEAN_END = set(".!?)]}\"'`*:>|")
_BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"))
_PLAIN = string.ascii_letters + string.digits + string.whitespace + string.punctuation
_DROP_PLAIN = str.maketrans("", "", _PLAIN)
_EXTRA_SYMBOLS = set("…–—’‘“”·•°€£")
_MAX_WORD_CHARS = 40
_K1 = 1.2  # BM25 term-frequency saturation for prompt terms
#: Answers up to this many characters are scored on the caller's loop (about 10 ms at most).
INLINE_MAX_CHARS = 32 * 1024
#: Longer answers are scored on a prefix this long (about 80 ms; the GIL is held for at most
#: about 15 ms at a time, so a loop beside the worker thread keeps running).
SCORED_MAX_CHARS = 256 * 1024
_SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n\n")


class Evaluation(BaseModel):
    """Scores of one answer, each in [0, 1], with a short reason for anything below full marks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    completeness: float
    relevance: float
    coherence: float
    quality_score: float
    low_quality: bool
    explanation: str

    def to_event(self, **common: object) -> ResponseEvaluated:
        """The ``ResponseEvaluated`` event for these scores; ``common`` holds ``request_id`` etc."""
        return ResponseEvaluated(
            completeness=self.completeness,
            relevance=self.relevance,
            coherence=self.coherence,
            quality_score=self.quality_score,
            low_quality=self.low_quality,
            evaluator="heuristic",
            explanation=self.explanation,
            **common,
        )


class ResponseEvaluator:
    """Scores answers against their requests; weights and the low-quality threshold from settings."""

    def __init__(self, settings: QualitySettings | None = None) -> None:
        self._settings = settings or QualitySettings()

    def evaluate(self, request: ModelRequest, text: str, finish_reason: str | None) -> Evaluation:
        """Score ``text`` as the answer to ``request`` (``finish_reason`` normalized, or None);
        an answer longer than :data:`SCORED_MAX_CHARS` on its :func:`scored_part`."""
        scored = scored_part(text)
        note = [] if scored is text else [f"scored the first {len(scored)} of {len(text)} characters"]
        answer = _Answer(scored)
        if not answer.tokens:
            empty = ["empty answer"]
            return self._result(0.0, 0.0, 0.0, empty, empty, empty, note)
        asked = request_text(request)
        completeness, c_why = _completeness(extract(asked), answer, finish_reason, request.max_tokens)
        relevance, r_why = _relevance(asked, answer)
        coherence, h_why = _coherence(answer)
        return self._result(completeness, relevance, coherence, c_why, r_why, h_why, note)

    async def evaluate_async(self, request: ModelRequest, text: str,
                             finish_reason: str | None) -> Evaluation:
        """:meth:`evaluate`, in a worker thread for answers longer than :data:`INLINE_MAX_CHARS`
        (the same scores, without stalling the caller's event loop)."""
        if len(text) <= INLINE_MAX_CHARS:
            return self.evaluate(request, text, finish_reason)
        return await asyncio.to_thread(self.evaluate, request, text, finish_reason)

    def _result(self, completeness: float, relevance: float, coherence: float,
                c_why: list[str], r_why: list[str], h_why: list[str],
                note: list[str]) -> Evaluation:
        c, r, h = (_unit(completeness), _unit(relevance), _unit(coherence))
        w = self._settings.weights
        quality = _unit(w.completeness * c + w.relevance * r + w.coherence * h)
        parts = [_explain("completeness", c, c_why), _explain("relevance", r, r_why),
                 _explain("coherence", h, h_why), *note]
        return Evaluation(completeness=c, relevance=r, coherence=h, quality_score=quality,
                          low_quality=quality < self._settings.threshold, explanation="; ".join(parts))


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
    return "\n".join(m.content for m in request.chat_messages() if m.role == "user")


class _Answer:
    """An answer's text with its tokens, stemmed terms and sentences, computed once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _text.words(text)
        self.terms = _text.content_terms(self.tokens)
        self.term_set = frozenset(self.terms)
        self.sentences = _text.sentences(text)
        self.sentence_words = [len(s.split()) for s in self.sentences]


# -- completeness ------------------------------------------------------------------------------


def _completeness(req: Requirements, answer: _Answer, finish_reason: str | None,
                  max_tokens: int) -> tuple[float, list[str]]:
    why: list[str] = []
    score = FINISH_FACTORS.get(finish_reason or "stop", 1.0)
    if score < 1:
        why.append(f"finish_reason={finish_reason}")
    checks = _coverage_checks(req, answer, why)
    if checks:
        score *= sum(checks) / len(checks)
    word_count = len(answer.tokens)
    if word_count < req.min_words:
        score *= 0.5 + 0.5 * word_count / req.min_words
        why.append(f"short ({word_count} of ~{req.min_words} words expected)")
    if answer.text.count("```") % 2:
        score *= 0.8
        why.append("unclosed code block")
    elif finish_reason != "length" and _looks_cut_off(answer, max_tokens):
        score *= 0.6
        why.append("looks cut off at max_tokens")
    return score, why


def _coverage_checks(req: Requirements, answer: _Answer, why: list[str]) -> list[float]:
    checks: list[float] = []
    if req.parts:
        missed: Counter[str] = Counter()
        for kind, terms in req.parts:
            share = len(terms & answer.term_set) / len(terms)
            checks.append(min(1.0, share / 0.5))
            if share < 0.5:
                missed[kind] += 1
        totals = Counter(kind for kind, _ in req.parts)
        why += [f"misses {missed[k]} of {totals[k]} {k}s" for k in sorted(missed)]
    if req.count:
        items = len(_LIST_ITEM.findall(answer.text))
        found = items if items else len(answer.sentences) / 2
        checks.append(min(1.0, found / req.count))
        if found < req.count:
            why.append(f"{int(found)} of {req.count} requested items")
    if req.wants_code:
        has_code = "```" in answer.text or len(_CODE_LINE.findall(answer.text)) >= 2
        checks.append(1.0 if has_code else 0.25)
        if not has_code:
            why.append("code asked, none given")
    return checks


def _looks_cut_off(answer: _Answer, max_tokens: int) -> bool:
    """Near ``max_tokens`` (about 4 characters a token) and stopping mid-sentence."""
    if len(answer.text) < 3.6 * max_tokens:
        return False
    tail = answer.text.rstrip()
    return bool(tail) and (tail[-1].isalnum() or tail[-1] in ",;-(") and tail[-1] not in _CLEAN_END


# -- relevance ---------------------------------------------------------------------------------


def prompt_term_weights(asked: str) -> dict[str, float]:
    """BM25-like weights of the prompt's content terms: saturated frequency × specificity."""
    counts = Counter(_text.content_terms(_text.words(asked), drop_instructions=True))
    return {term: tf * (_K1 + 1) / (tf + _K1) * _specificity(term) for term, tf in counts.items()}


def _specificity(term: str) -> float:
    """A corpus-free stand-in for IDF: longer words and numbers carry more information."""
    if term.isdigit():
        return 0.8
    return 0.5 + min(len(term), 10) / 20


def _relevance(asked: str, answer: _Answer) -> tuple[float, list[str]]:
    why: list[str] = []
    weights = prompt_term_weights(asked)
    if not weights:
        score = 0.7
        why.append("no content terms in the request to match")
    else:
        covered = [t for t in weights if t in answer.term_set]
        coverage = sum(weights[t] for t in covered) / sum(weights.values())
        on_topic = sum(1 for t in answer.terms if t in weights)
        density = on_topic / len(answer.terms) if answer.terms else 0.0
        score = 0.7 * min(1.0, coverage / 0.6) + 0.3 * min(1.0, density / 0.1)
        if coverage < 0.6:
            why.append(f"covers {len(covered)} of {len(weights)} request terms")
        if density < 0.1:
            why.append(f"{density:.0%} of answer terms on topic")
    if _REFUSAL.search(answer.text[:_REFUSAL_WINDOW_CHARS].lower()):
        score *= 0.25
        why.append("refusal")
    return score, why


# -- coherence ---------------------------------------------------------------------------------


def _coherence(answer: _Answer) -> tuple[float, list[str]]:
    why: list[str] = []
    score = 1.0
    garbage = _garbage_ratio(answer.text)
    if garbage > 0.02:
        score *= max(0.0, 1.0 - 2.5 * garbage)
        why.append(f"{garbage:.0%} garbage characters")
    score *= _structure(answer, why)
    repeated = _repeated_sentence_share(answer.sentences, answer.sentence_words)
    if repeated > 0:
        score *= 1.0 - repeated
        why.append(f"{repeated:.0%} repeated sentences")
    trigrams = _repeated_trigram_share(answer.tokens)
    if trigrams > 0.1:
        score *= 1.0 - min(1.0, 1.5 * (trigrams - 0.1))
        why.append(f"{trigrams:.0%} repeated phrases")
    return score, why


def _garbage_ratio(text: str) -> float:
    """Share of non-space characters that are neither letters, digits nor common punctuation,
    counting over-long "words" (no space for 40+ characters, not a URL) as garbage too."""
    chunks = text.split()
    visible = sum(map(len, chunks))
    if not visible:
        return 1.0
    rest = text.translate(_DROP_PLAIN)  # usually empty or a few non-ASCII characters
    bad = sum(1 for ch in rest if not (ch.isalnum() or ch in _EXTRA_SYMBOLS))
    bad += sum(len(c) - _MAX_WORD_CHARS for c in chunks if len(c) > _MAX_WORD_CHARS and "://" not in c)
    return min(1.0, bad / visible)


def _structure(answer: _Answer, why: list[str]) -> float:
    """Sentence lengths, bracket balance and a clean ending; invariant under repeating the text."""
    factor = 1.0
    lengths = [n for n in answer.sentence_words if n]
    mean_words = sum(lengths) / len(lengths) if lengths else 0.0
    if mean_words > 45:
        factor *= max(0.5, 1.0 - (mean_words - 45) / 100)
        why.append("run-on sentences")
    opened = sum(answer.text.count(o) for o, _ in _BRACKETS)
    closed = sum(answer.text.count(c) for _, c in _BRACKETS)
    if opened + closed:
        gap = sum(abs(answer.text.count(o) - answer.text.count(c)) for o, c in _BRACKETS)
        imbalance = gap / (opened + closed)
        if imbalance > 0:
            factor *= 1.0 - 0.5 * imbalance
            why.append("unbalanced brackets")
    tail = answer.text.rstrip()
    last_line = tail.rsplit("\n", 1)[-1]
    if tail and tail[-1] not in _CLEAN_END and not _LIST_ITEM.match(last_line) \
            and len(_text.words(last_line)) > 8:
        factor *= 0.9
        why.append("ends mid-sentence")
    return factor


def _repeated_sentence_share(sentences: Sequence[str], word_counts: Sequence[int]) -> float:
    """Share of (4+ word) sentences that repeat an earlier one."""
    normalized = [_text.normalize_sentence(s)
                  for s, n in zip(sentences, word_counts, strict=True) if n >= 4]
    if not normalized:
        return 0.0
    return 1.0 - len(set(normalized)) / len(normalized)


def _repeated_trigram_share(tokens: Sequence[str]) -> float:
    if len(tokens) < 3:
        return 0.0
    grams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return 1.0 - len(set(grams)) / len(grams)


# -- helpers -----------------------------------------------------------------------------------


def _unit(value: float) -> float:
    """Clamp to [0, 1] and round to 4 places (rounding is monotone, so invariants survive)."""
    if math.isnan(value):
        return 0.0
    return round(min(1.0, max(0.0, value)), 4)


def _explain(name: str, score: float, reasons: list[str]) -> str:
    return f"{name} {score:.2f} ({', '.join(reasons) if reasons else 'ok'})"
