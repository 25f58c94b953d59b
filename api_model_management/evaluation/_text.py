"""Text helpers for the heuristic evaluator: tokens, a light stemmer, stop words, sentences.

Everything here is pure and deterministic. The stemmer is deliberately small ("stemming-lite"): it
folds the common English inflections (plural ``-s``/``-es``/``-ies``, ``-ing``, ``-ed``, ``-ly``) so
that ``works``/``working``/``worked`` meet, and leaves anything shorter than four letters alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:[+#][a-z0-9+#]*|\+\+|#)?")
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
_VOWEL = re.compile(r"[aeiouy]")

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also may might must shall
    let lets us get got one two three four five six seven eight nine ten many much via per etc
    i'm it's don't can't won't isn't aren't
    """.split()
)

#: Words that say what to do rather than what about: not expected to reappear in the answer.
INSTRUCTION_WORDS = frozenset(
    """
    explain describe tell give write list show provide summarize summarise discuss compare
    contrast define outline elaborate please help want need like know make answer question briefly
    detail detailed short long simple simply example examples use using way ways thing things
    kind sure work
    """.split()
)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Fold common English inflections: ``queries`` → ``query``, ``running`` → ``runn`` → ``run``."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""),
                                ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix in ("ing", "ed") and (word.endswith("eed") or not _VOWEL.search(word[:-len(suffix)])):
                return word  # "speed", "string" are not inflections
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                return word[:-1]  # "notes" → "note"
            base = word[: len(word) - len(suffix)] + replacement
            if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # "running" → "run"
            return base
    return word


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits; keeps ``c++`` and ``c#``)."""
    lowered = text.lower()
    if "+" in lowered or "#" in lowered:
        return _WORD.findall(lowered)
    return _PLAIN_WORD.findall(lowered)  # the same tokens, found faster


_TERMS: dict[str, str] = {}  # token -> content term ("" for a stop word): a bounded memo
_TERMS_MAX = 100_000


def _term(token: str) -> str:
    """The stemmed content term of a token, or "" for a stop word or a single letter."""
    if token in STOP_WORDS or (len(token) == 1 and not token.isdigit()):
        term = ""
    else:
        term = stem(token)
    if len(_TERMS) < _TERMS_MAX:
        _TERMS[token] = term
    return term


def content_terms(tokens: Iterable[str], *, drop_instructions: bool = False) -> list[str]:
    """Stemmed tokens without stop words (and without instruction verbs, if asked)."""
    if drop_instructions:
        tokens = [token for token in tokens if token not in INSTRUCTION_WORDS]
    elif not isinstance(tokens, list):
        tokens = list(tokens)
    terms = list(map(_TERMS.get, tokens))  # None for a token not seen yet
    if None in terms:
        terms = [_term(token) if term is None else term for token, term in zip(tokens, terms, strict=True)]
    return list(filter(None, terms))


def sentences(text: str) -> list[str]:
    """Sentences (split at ``.!?`` followed by a space, and at line breaks), stripped, non-empty."""
    marked = text.replace(". ", ".\n").replace("! ", "!\n").replace("? ", "?\n")
    return [s for piece in marked.splitlines() if (s := piece.strip())]


class Answer:
    """An answer's text with its tokens, stemmed terms and sentences, computed once."""

    __slots__ = ("text", "tokens", "terms", "term_set", "sentences", "sentence_words")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = words(text)
        self.terms = content_terms(self.tokens)
        self.term_set = frozenset(self.terms)
        self.sentences = sentences(text)
        self.sentence_words = list(map(len, map(str.split, self.sentences)))


def normalize_sentence(sentence: str) -> str:
    """Lower case, no end punctuation: how repeated sentences are recognised."""
    return sentence.lower().strip(" .!?")
