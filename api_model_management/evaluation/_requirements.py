"""What a prompt asks for, read with a few explicit patterns (no model involved).

A :class:`Requirements` lists the parts an answer should cover: each question of a multi-question
prompt, each numbered or bulleted item, both sides of "explain X and Y" / "compare X and Y"; a count
("list 3 ...", "five reasons"); whether code is wanted; and whether a developed answer is expected
("explain", "why", "how") or a short one suffices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._text import content_terms, sentences, words

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
}
_NUM = r"(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"
_COUNT_PATTERNS = (
    re.compile(rf"\b(?:list|give|name|provide|suggest|write|show|enumerate|describe|outline)\s+"
               rf"(?:me\s+)?(?:the\s+)?(?:top\s+)?{_NUM}\b"),
    re.compile(rf"\b{_NUM}\s+(?:\w+\s+)?(?:examples|ways|reasons|steps|tips|ideas|items|points|"
               rf"benefits|advantages|disadvantages|differences|methods|options|things|facts|"
               rf"questions|types|kinds|features|names|words|bullet points)\b"),
)
_ITEM_LINE = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+(.+)$", re.MULTILINE)
_CONJUNCT = re.compile(
    r"\b(?:explain|describe|compare|contrast|discuss|define|summari[sz]e|difference between|"
    r"differences between)\s+(.{2,80}?)\s+(?:and|vs\.?|versus)\s+(.{2,80}?)(?:[.?!,;\n]|$)"
)
_CODE_WORDS = re.compile(
    r"\b(?:code|function|implement|implementation|script|program|snippet|class|method|regex|"
    r"sql query|query in sql|algorithm in|unit test|bash command|shell command)\b"
)
_CODE_LANGS = re.compile(
    r"\b(?:in|using|with)\s+(?:python|javascript|typescript|java|rust|go|golang|c\+\+|c#|ruby|"
    r"kotlin|swift|sql|bash|haskell|scala|php)\b"
)
_WRITE_VERB = re.compile(r"\b(?:write|implement|create|code|fix|refactor|generate)\b")
_DETAIL_WORDS = re.compile(
    r"\b(?:explain|describe|why|how|compare|contrast|discuss|elaborate|analy[sz]e|walk me through|"
    r"in detail|essay|overview|summari[sz]e)\b"
)


@dataclass(frozen=True)
class Requirements:
    """Parts the answer should cover and other demands.

    ``parts`` pairs a kind (``question``, ``item``, ``part``, or ``request`` for the whole request
    when nothing is itemised; never prompt text, so that it can
    be named in an explanation that is logged) with the part's stemmed content terms."""

    parts: tuple[tuple[str, frozenset[str]], ...] = ()
    count: int | None = None
    wants_code: bool = False
    wants_detail: bool = False

    @property
    def min_words(self) -> int:
        """A modest floor for the answer's length given what was asked."""
        floor = 1
        if self.wants_detail:
            floor = 40
        if self.count:
            floor = max(floor, 4 * self.count)
        if self.wants_code:
            floor = max(floor, 8)
        return floor


def _terms(text: str) -> frozenset[str]:
    return frozenset(content_terms(words(text), drop_instructions=True))


def _count(text: str) -> int | None:
    for pattern in _COUNT_PATTERNS:
        match = pattern.search(text)
        if match:
            token = match.group(1)
            return int(token) if token.isdigit() else _NUMBER_WORDS[token]
    return None


def _questions(text: str) -> list[str]:
    return [s for s in sentences(text) if s.endswith("?")]


def extract(prompt: str) -> Requirements:
    """Read the prompt's demands. Parts without content terms are dropped."""
    lowered = prompt.lower()
    labelled: list[tuple[str, str]] = []
    questions = _questions(lowered)
    if len(questions) > 1:
        labelled += [("question", q) for q in questions]
    items = _ITEM_LINE.findall(prompt)
    if len(items) > 1:
        labelled += [("item", item.lower()) for item in items]
    for match in _CONJUNCT.finditer(lowered):
        labelled += [("part", match.group(1)), ("part", match.group(2))]
    if not labelled:
        labelled.append(("request", lowered))  # nothing itemised: the request is one part
    parts = tuple((label, terms) for label, text in labelled if (terms := _terms(text)))
    wants_code = bool(_CODE_WORDS.search(lowered)) or bool(
        _CODE_LANGS.search(lowered) and _WRITE_VERB.search(lowered)
    )
    return Requirements(
        parts=parts,
        count=_count(lowered),
        wants_code=wants_code,
        wants_detail=bool(_DETAIL_WORDS.search(lowered)),
    )
