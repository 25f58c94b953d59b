"""The three heuristic scores of an answer, each in [0, 1], with a short reason per factor below 1.

- completeness = finish reason × coverage of what was asked × length adequacy × cut-off signs
  × the form asked for (word or sentence limit, "concise", JSON, one item per line, the code
  language named, the request's language)
- relevance    = (0.7 · weighted coverage of prompt terms + 0.3 · on-topic density, or 1 for an
  answer that opens with one of a multiple-choice prompt's options) × refusal × answering as the
  one who asked
- coherence    = clean characters × structure × (1 − repeated sentences) × (1 − excess repeated
  trigrams) × runs of one word × chat-template text × arithmetic slips

Every factor is a product term, so the documented invariants hold (and are property-tested): a
``length`` finish never scores above a clean stop; appending text unrelated to the prompt never
raises relevance; repeating the answer never raises coherence. Reasons name kinds and counts only,
never prompt or answer text, so that the explanation may be logged.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from . import _checks, _text
from ._requirements import CACHED_PROMPT_CHARS, Requirements
from ._text import Answer

#: Completeness factor per normalized finish reason (``stop`` / ``tool_calls`` / None: 1).
FINISH_FACTORS: dict[str, float] = {"length": 0.35, "content_filter": 0.3, "error": 0.2, "other": 0.9}

_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry,? but|i (?:cannot|can't|can not|won't|will not|am unable to|"
    r"'m unable to|am not able to|'m not able to) (?:help|assist|comply|provide|answer|do that)"
    r"(?! but)|as an ai(?: language model)?,? i (?:cannot|can't|don't)|i must decline|"
    r"unable to (?:help|assist) with (?:that|this))"
)
#: "As an AI I cannot browse, but here are ...": a disclaimer before the answer, not a refusal.
_YET_ANSWERS = re.compile(r"\b(?:but|however,?|instead,?)\s+(?:i can|i'll|i will|here)|\bhere (?:is|are)\b")
_REFUSAL_WINDOW_CHARS = 300
#: An answer that opens by naming one option: "B", "(b)", "**C.** text", "Answer: D", "The answer
#: is (A)"; a bare letter followed by prose ("A type of ...", "I don't know") names none.
_OPENING_CHOICE = re.compile(
    r"\A\s*(?P<lead>(?:the )?(?:correct |best |right )?(?:answer|option|choice)(?: is)?\s*:?\s*)?"
    r"\**(?P<open>\()?(?P<letter>[A-Ha-h])(?(open)\))\**(?P<end>[.):]|\s*\Z)?", re.IGNORECASE)
#: The answer speaks as the one who asked ("I'm trying to implement this ... here's my code").
_USER_VOICE = re.compile(
    r"\A\s*(?:i'm trying to|i am trying to|i'm having trouble|i have (?:a|an|this) (?:question|"
    r"problem|task)|can you help me|could you help me|please help me|how (?:do|can|should) i)\b"
)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[a-zA-Z]\)|[-*•+])\s+\S", re.MULTILINE)
_MARKER_CLOSERS = re.compile(r"(?<![\w(])(?:\d{1,3}|[a-zA-Z])\)")  # "1)", "a)": markers, not brackets
_CODE_LINE = re.compile(
    r"^(?: {4}|\t)\S|\b(?:def|return|function|class|import|const|let|var|fn|func|public|SELECT|"
    r"FROM)\b|[;{}]\s*$|=>|==|\w\(.*\)",
    re.MULTILINE,
)
#: Signs of a code language in an answer (a fence tag, or a telling construct).
_CODE_SIGNS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"```python|^\s*def \w+\(.*\):\s*$|^\s*import \w+\s*$", re.MULTILINE),
    "c++": re.compile(r"```(?:cpp|c\+\+)|#include\s*<|std::|\bcout\s*<<"),
    "javascript": re.compile(r"```(?:javascript|js)\b|\bconsole\.log\(|\bfunction \w+\(.*\)\s*\{"),
    "java": re.compile(r"```java\b|\bpublic static void main\b|System\.out\.print"),
    "html": re.compile(r"```html|<!DOCTYPE html|<html\b|<body\b|<button\b", re.IGNORECASE),
    "sql": re.compile(r"```sql|\bSELECT\b[\s\S]{1,200}\bFROM\b"),
}
_CLEAN_END = set(".!?)]}\"'`*:>|")
_BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"))
_PLAIN = string.ascii_letters + string.digits + string.whitespace + string.punctuation
_DROP_PLAIN = str.maketrans("", "", _PLAIN)
_EXTRA_SYMBOLS = set("…–—’‘“”·•°€£")
_MAX_WORD_CHARS = 40
_K1 = 1.2  # BM25 term-frequency saturation for prompt terms
#: Shares of a request's (weighted) terms an answer needs to be on topic: on-topic answers to
#: long requests cover far fewer than half of them, so only a clear miss counts.
_COVERED = 0.35
_ON_TOPIC = 0.04
_PART_COVERED = 0.34  # of each question's or item's terms
_FEW_TERMS = 4.0
_LIMIT_SLACK = 2.0  # judges let a word limit slip well past before they mind
_CONCISE_WORDS = 400
_FOREIGN_EXCESS = 0.4


@dataclass
class Scores:
    """The three scores with their reasons, and the measurements the calibration reads
    (``form``: the factor of completeness that the form asked for contributes)."""

    completeness: float = 1.0
    relevance: float = 1.0
    coherence: float = 1.0
    completeness_why: list[str] = field(default_factory=list)
    relevance_why: list[str] = field(default_factory=list)
    coherence_why: list[str] = field(default_factory=list)
    form: float = 1.0
    repeated_trigrams: float = 0.0
    arithmetic_wrong: int = 0
    mean_sentence_words: float = 0.0


def score(req: Requirements, asked: str, answer: Answer, finish_reason: str | None,
          max_tokens: int) -> Scores:
    """Completeness, relevance and coherence of ``answer`` (non-empty) to the request ``asked``."""
    out = Scores()
    out.form = _form(req, answer, out.completeness_why)
    out.completeness = out.form * _completeness(req, answer, finish_reason, max_tokens,
                                                out.completeness_why)
    out.relevance = _relevance(asked, req, answer, out.relevance_why)
    out.coherence = _coherence(answer, out)
    return out


# -- completeness ------------------------------------------------------------------------------


def _completeness(req: Requirements, answer: Answer, finish_reason: str | None,
                  max_tokens: int, why: list[str]) -> float:
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
    return score


def _coverage_checks(req: Requirements, answer: Answer, why: list[str]) -> list[float]:
    checks: list[float] = []
    if req.parts:
        missed: Counter[str] = Counter()
        for kind, terms in req.parts:
            share = len(terms & answer.term_set) / len(terms)
            needed = _needed(_PART_COVERED, len(terms))
            checks.append(min(1.0, share / needed))
            if share < needed:
                missed[kind] += 1
        totals = Counter(kind for kind, _ in req.parts)
        why += [f"misses {missed[k]} of {totals[k]} {k}s" for k in sorted(missed)]
    if req.count:
        items = len(_LIST_ITEM.findall(answer.text))
        found = items if items else len(answer.sentences) / 2
        checks.append(min(1.0, found / req.count))
        if found < req.count:
            why.append(f"{int(found)} of {req.count} requested items")
    if req.choices:
        checks.append(_choice_check(req.choices, answer, why))
    if req.wants_code:
        has_code = "```" in answer.text or len(_CODE_LINE.findall(answer.text)) >= 2
        checks.append(1.0 if has_code else 0.25)
        if not has_code:
            why.append("code asked, none given")
    return checks


def opening_choice(text: str) -> str | None:
    """The option letter an answer to a multiple-choice prompt opens with ("B"), if it names one."""
    match = _OPENING_CHOICE.match(text)
    if match is None or not (match["lead"] or match["open"] or match["end"] is not None):
        return None
    return match["letter"].upper()


def _choice_check(options: str, answer: Answer, why: list[str]) -> float:
    """A multiple-choice answer names one of the options (a short answer that names none, or names
    one that does not exist, did not answer)."""
    letter = opening_choice(answer.text)
    if letter is not None and letter not in options:
        why.append("names an option that does not exist")
        return 0.2
    if letter is None and len(answer.tokens) <= 3:
        why.append("no option chosen")
        return 0.2
    return 1.0


def _needed(share: float, n_terms: int) -> float:
    """The share of ``n_terms`` request terms an on-topic answer covers: ``share``, or a few terms'
    worth when the request is long (a story does not echo a long brief; an extraction names a few
    of the many words of the text it works on)."""
    return min(share, _FEW_TERMS / n_terms)


def _form(req: Requirements, answer: Answer, why: list[str]) -> float:
    """The form asked for: length limits, "concise", JSON, one item per line, the language."""
    factor = 1.0
    words = len(answer.tokens)
    if req.max_words and words > _LIMIT_SLACK * req.max_words:
        factor *= max(0.3, (_LIMIT_SLACK * req.max_words / words) ** 1.5)
        why.append(f"{words} words, {req.max_words} asked")
    if req.max_sentences and len(answer.sentences) > _LIMIT_SLACK * req.max_sentences + 1:
        factor *= max(0.4, (_LIMIT_SLACK * req.max_sentences + 1) / len(answer.sentences))
        why.append(f"{len(answer.sentences)} sentences, {req.max_sentences} asked")
    if req.concise and words > _CONCISE_WORDS:
        factor *= _CONCISE_WORDS / words
        why.append(f"not concise ({words} words)")
    if req.wants_json and not _checks.json_parses(answer.text):
        factor *= 0.5
        why.append("JSON asked, none parses")
    if req.wants_lines and sum(1 for line in answer.text.splitlines() if line.strip()) < 2:
        factor *= 0.6
        why.append("one item per line asked, one line given")
    foreign = _checks.foreign_share(answer.text) - req.foreign_share
    if foreign > (0.1 if req.wants_english else _FOREIGN_EXCESS):
        factor *= 0.3
        why.append("in another language than the request's")
    if req.code_language and _other_code_language(req.code_language, answer.text):
        factor *= 0.5
        why.append("code in another language than asked")
    return factor


def _other_code_language(asked: str, text: str) -> bool:
    """The answer's code is plainly in a language other than ``asked`` (and not also in it)."""
    sign = _CODE_SIGNS.get(asked)
    if sign is None or sign.search(text):
        return False
    return any(pattern.search(text) for name, pattern in _CODE_SIGNS.items() if name != asked)


def _looks_cut_off(answer: Answer, max_tokens: int) -> bool:
    """Near ``max_tokens`` (about 4 characters a token) and stopping mid-sentence."""
    if len(answer.text) < 3.6 * max_tokens:
        return False
    tail = answer.text.rstrip()
    return bool(tail) and (tail[-1].isalnum() or tail[-1] in ",;-(") and tail[-1] not in _CLEAN_END


# -- relevance ---------------------------------------------------------------------------------


def prompt_term_weights(asked: str) -> Mapping[str, float]:
    """BM25-like weights of the prompt's content terms: saturated frequency × specificity
    (remembered for the last few hundred prompts up to 16 KB, as the prompt's requirements)."""
    if len(asked) <= CACHED_PROMPT_CHARS:
        return _term_weights_cached(asked)
    return _term_weights(asked)


@lru_cache(maxsize=256)
def _term_weights_cached(asked: str) -> Mapping[str, float]:
    return MappingProxyType(_term_weights(asked))


def _term_weights(asked: str) -> dict[str, float]:
    """Specificity is a corpus-free stand-in for IDF: numbers 0.8, words 0.5 + length / 20 (up to
    10 letters): longer words carry more information."""
    counts = Counter(_text.content_terms(_text.words(asked), drop_instructions=True))
    return {term: tf * (_K1 + 1) / (tf + _K1) * (0.8 if term.isdigit() else 0.5 + min(len(term), 10) / 20)
            for term, tf in counts.items()}


def _relevance(asked: str, req: Requirements, answer: Answer, why: list[str]) -> float:
    weights = prompt_term_weights(asked)
    if req.choices and (opening_choice(answer.text) or "?") in req.choices:
        score = 1.0  # picking an option is on topic by construction
    elif not weights:
        score = 0.7
        why.append("no content terms in the request to match")
    else:
        covered = [t for t in weights if t in answer.term_set]
        coverage = sum(weights[t] for t in covered) / sum(weights.values())
        on_topic = sum(map(weights.__contains__, answer.terms))
        density = on_topic / len(answer.terms) if answer.terms else 0.0
        needed = _needed(_COVERED, len(weights))
        score = 0.7 * min(1.0, coverage / needed) + 0.3 * min(1.0, density / _ON_TOPIC)
        if coverage < needed:
            why.append(f"covers {len(covered)} of {len(weights)} request terms")
        if density < _ON_TOPIC:
            why.append(f"{density:.0%} of answer terms on topic")
    head = answer.text[:_REFUSAL_WINDOW_CHARS].lower()
    refusal = _REFUSAL.search(head)
    if refusal and not _YET_ANSWERS.search(head, refusal.end()):
        score *= 0.25
        why.append("refusal")
    if _USER_VOICE.search(head):
        score *= 0.5
        why.append("answers as the one asking")
    return score


# -- coherence ---------------------------------------------------------------------------------


def _coherence(answer: Answer, out: Scores) -> float:
    why = out.coherence_why
    score = 1.0
    garbage = _garbage_ratio(answer.text)
    if garbage > 0.02:
        score *= max(0.0, 1.0 - 2.5 * garbage)
        why.append(f"{garbage:.0%} garbage characters")
    score *= _structure(answer, out)
    repeated = _repeated_sentence_share(answer.sentences, answer.sentence_words)
    if repeated > 0:
        score *= 1.0 - repeated
        why.append(f"{repeated:.0%} repeated sentences")
    trigrams = out.repeated_trigrams = _repeated_trigram_share(answer.tokens)
    if trigrams > 0.1:
        score *= 1.0 - min(1.0, 1.5 * (trigrams - 0.1))
        why.append(f"{trigrams:.0%} repeated phrases")
    return score * _slips(answer, out)


def _slips(answer: Answer, out: Scores) -> float:
    """Runs of one word, chat-template text and arithmetic that does not hold."""
    factor = 1.0
    run = _checks.longest_run(answer.tokens)
    if run > 3:
        factor *= max(0.2, 1.0 - (run - 3) / 10)
        out.coherence_why.append(f"a word repeated {run} times in a row")
    if _checks.template_leak(answer.text):
        factor *= 0.85
        out.coherence_why.append("chat-template text")
    checked, wrong = _checks.arithmetic(answer.text) if "=" in answer.text else (0, 0)
    out.arithmetic_wrong = wrong
    if wrong:
        factor *= 0.5
        out.coherence_why.append(f"{wrong} of {checked} calculations wrong")
    return factor


def _garbage_ratio(text: str) -> float:
    """Share of non-space characters that are neither letters, digits nor common punctuation,
    counting over-long "words" (no space for 40+ characters, not a URL) as garbage too."""
    chunks = text.split()
    visible = sum(map(len, chunks))
    if not visible:
        return 1.0
    rest = text.translate(_DROP_PLAIN)  # usually empty or a few non-ASCII characters
    bad = sum(1 for ch in rest if not (ch.isalnum() or ch in _EXTRA_SYMBOLS)) if rest else 0
    if max(map(len, chunks)) > _MAX_WORD_CHARS:
        bad += sum(len(c) - _MAX_WORD_CHARS for c in chunks
                   if len(c) > _MAX_WORD_CHARS and "://" not in c)
    return min(1.0, bad / visible)


def _structure(answer: Answer, out: Scores) -> float:
    """Sentence lengths, bracket balance and a clean ending; invariant under repeating the text."""
    factor = 1.0
    lengths = [n for n in answer.sentence_words if n]
    mean_words = out.mean_sentence_words = sum(lengths) / len(lengths) if lengths else 0.0
    if mean_words > 45:
        factor *= max(0.5, 1.0 - (mean_words - 45) / 100)
        out.coherence_why.append("run-on sentences")
    counts = [(answer.text.count(o), answer.text.count(c)) for o, c in _BRACKETS]
    if counts[0][1] > counts[0][0]:
        markers = len(_MARKER_CLOSERS.findall(answer.text))
        counts[0] = (counts[0][0], counts[0][1] - markers)
    opened = sum(o for o, _ in counts)
    closed = sum(c for _, c in counts)
    if opened + closed:
        gap = sum(abs(o - c) for o, c in counts)
        imbalance = gap / (opened + closed)
        if imbalance > 0:
            factor *= 1.0 - 0.5 * imbalance
            out.coherence_why.append("unbalanced brackets")
    if ends_mid_sentence(answer.text):
        factor *= 0.9
        out.coherence_why.append("ends mid-sentence")
    return factor


def ends_mid_sentence(text: str) -> bool:
    """The last line is a sentence of more than 8 words without an end mark (not a list item,
    not a row of comma-separated fields)."""
    tail = text.rstrip()
    last_line = tail.rsplit("\n", 1)[-1]
    if not tail or tail[-1] in _CLEAN_END or _LIST_ITEM.match(last_line):
        return False
    n_words = len(_text.words(last_line))
    fields = last_line.count(",") + 1
    return n_words > 8 and not (fields >= 3 and n_words / fields <= 6)


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
    distinct = len(set(zip(tokens, tokens[1:], tokens[2:], strict=False)))
    return 1.0 - distinct / (len(tokens) - 2)
