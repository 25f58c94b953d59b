"""What a prompt asks for, read with a few explicit patterns (no model involved).

A :class:`Requirements` lists the parts an answer should cover: each question of a multi-question
prompt, each numbered or bulleted item, both sides of "explain X and Y" / "compare X and Y"; a count
("list 3 ...", "five reasons"); whether code is wanted; whether a developed answer is expected
("explain", "why", "how") or a short one suffices; the form asked for (a word or sentence limit,
"concise", JSON, one item per line, English); and the kind of task (:data:`KINDS`), which decides
what a good answer looks like (a solved problem is short and right, a story is long).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ._checks import foreign_share
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
    r"kotlin|swift|sql|bash|haskell|scala|php|html|css)\b"
)
_LANGUAGE_NAMED = re.compile(r"\b(python|c\+\+|javascript|java|html|sql)(?![\w+])")
_WRITE_VERB = re.compile(r"\b(?:write|implement|create|code|fix|refactor|generate)\b")
_WORD_LIMIT = re.compile(
    r"\b(?:(?:fewer|less) than|under|no (?:more|longer) than|at most|maximum of|max(?:imum)?|within|"
    r"up to|limit(?:ed)? (?:it |yourself |your (?:answer|response) )?to|not exceed(?:ing)?|in)\s+"
    r"(\d{1,4})\s+words?\b|\b(\d{1,4})[- ]words? or (?:less|fewer)\b|\b(\d{1,4})-word\b"
)
_SENTENCE_LIMIT = re.compile(
    rf"\b(?:in|using|with|within|(?:fewer|less) than|at most|no more than)\s+(?:a single|one|{_NUM})\s+"
    r"sentences?\b|\bin a (?:single )?sentence\b|\bone-sentence\b"
)
_CONCISE = re.compile(
    r"\b(?:concise(?:ly)?|briefly|be brief|in brief|succinct(?:ly)?|to the point|keep it (?:short|brief)|"
    r"short answer|"
    r"only (?:the|a|one) (?:answer|number|word|name)|just (?:the|a) (?:answer|number|word|name))\b"
)
_JSON = re.compile(r"\bjson\b")
_PER_LINE = re.compile(r"\b(?:one|each) (?:\w+ )?(?:per|on a (?:separate|new|single)) line\b|"
                       r"\bon (?:separate|individual|its own) lines?\b|\bseparate line\b")
_ENGLISH = re.compile(r"\b(?:in|into) english\b")
_SOLVE = re.compile(
    r"\b(?:calculate|compute|solve|evaluate the expression|find the (?:value|area|sum|product|"
    r"probability|number|total|root|solution)|what(?:'s| is) the (?:value|area|sum|product|probability|"
    r"total|result|answer)|how (?:many|much)|probability|equation|f\(\w\))\b"
)
_WRITE = re.compile(
    r"\b(?:write|compose|draft|craft|create|role|story|poem|essay|email|e-mail|blog|"
    r"letter|speech|script|slogan|dialogue|limerick|haiku|song|lyrics|advert|advertisement|outline)\b"
)
_EXTRACT = re.compile(
    r"\b(?:extract|identify|count|classify|categori[sz]e|rate|rank|sort|evaluate|analy[sz]e|parse|"
    r"summari[sz]e|reformat|return|edit|correct|rewrite|translate|read the|given|following|below|"
    r"presented|provided)\b"
)
#: What a prompt asks for, which decides what a good answer looks like: ``solve`` (one right
#: answer: arithmetic, a word problem, a multiple-choice question, a puzzle), ``code``, ``extract``
#: (work on material quoted in the prompt: extract, classify, reformat, edit), ``write`` (compose
#: something) and ``open`` (explain, advise, discuss).
KINDS = ("solve", "code", "extract", "write", "open")
_MATERIAL_WORDS = 40
#: Prompts up to this long have their reading remembered (the last few hundred).
CACHED_PROMPT_CHARS = 16 * 1024
_CHOICE_LINE = re.compile(r"^\s*\(?([A-Ha-h])[.)]\s+\S", re.MULTILINE)
_NUMBER = re.compile(r"(?<![\w.])\$?\d+(?:[.,]\d+)?%?")
_ASKS = re.compile(r"\s*(?:question:|return|output|answer|respond|reply|format|present|list|give|"
                   r"provide|write|use|please|only|make sure|do not|don't)\b", re.IGNORECASE)
_POINTS_AT = re.compile(r"\b(?:following|below|given|above|this|these|here is|here are|here's|"
                        r"provided|presented|attached)\b", re.IGNORECASE)
_DETAIL_WORDS = re.compile(
    r"\b(?:explain|describe|why|how(?! (?:many|much|old|long|far|often|tall|big|large)\b)|compare|"
    r"contrast|discuss|elaborate|analy[sz]e|walk me through|in detail|essay|overview|summari[sz]e)\b"
)


#: Words without which a pattern cannot match (its alternatives' first words, as :func:`words`
#: splits them): a pattern is only searched for when the prompt has one of them.
_TRIGGERS: dict[re.Pattern[str], frozenset[str]] = {
    _CONJUNCT: frozenset("explain describe compare contrast discuss define summarise summarize "
                         "difference differences".split()),
    _CODE_WORDS: frozenset("code function implement implementation script program snippet class "
                           "method regex sql query algorithm unit bash shell".split()),
    _CODE_LANGS: frozenset("python javascript typescript java rust go golang c++ c# ruby kotlin swift "
                           "sql bash haskell scala php html css".split()),
    _WRITE_VERB: frozenset("write implement create code fix refactor generate".split()),
    _CONCISE: frozenset("concise concisely briefly brief succinct succinctly point short only just"
                        .split()),
    _DETAIL_WORDS: frozenset("explain describe why how compare contrast discuss elaborate analyse "
                             "analyze walk detail essay overview summarise summarize".split()),
    _SOLVE: frozenset("calculate compute solve evaluate find what how probability equation f".split()),
    _WRITE: frozenset("write compose draft craft create role story poem essay email mail blog letter "
                      "speech script slogan dialogue limerick haiku song lyrics advert advertisement "
                      "outline".split()),
    _EXTRACT: frozenset("extract identify count classify categorise categorize rate rank sort "
                        "evaluate analyse analyze parse summarise summarize reformat return edit "
                        "correct rewrite translate read given following below presented provided"
                        .split()),
}


def _cue(pattern: re.Pattern[str], text: str, tokens: frozenset[str]) -> bool:
    """``pattern`` occurs in ``text`` (whose words are ``tokens``)."""
    return not _TRIGGERS[pattern].isdisjoint(tokens) and pattern.search(text) is not None


@dataclass(frozen=True)
class Requirements:
    """Parts the answer should cover and other demands.

    ``parts`` pairs a kind (``question``, ``item`` or ``part``; never prompt text, so that it can
    be named in an explanation that is logged) with the part's stemmed content terms; a request
    that itemises nothing has no parts (relevance measures whether the answer is on its topic).
    ``max_words`` / ``max_sentences``: a limit the prompt sets ("in fewer than 200 words", "in one
    sentence"); ``concise``: asked to be brief; ``wants_json`` / ``wants_lines`` / ``wants_english``:
    the output format or language asked for; ``kind``: one of :data:`KINDS`; ``code_language``: the
    one code language named when code is wanted; ``foreign_share``: the prompt's own share of
    non-Latin letters (an answer may quote what it was given); ``instruction``: the prompt without
    the material it quotes for the answer to work on (None when it quotes none), which is what
    relevance is measured against; ``choices``: the option letters of a multiple-choice prompt
    ("ABCD"), "" for any other."""

    parts: tuple[tuple[str, frozenset[str]], ...] = ()
    count: int | None = None
    wants_code: bool = False
    wants_detail: bool = False
    max_words: int | None = None
    max_sentences: int | None = None
    concise: bool = False
    wants_json: bool = False
    wants_lines: bool = False
    wants_english: bool = False
    kind: str = "open"
    code_language: str | None = None
    foreign_share: float = 0.0
    instruction: str | None = None
    choices: str = ""

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


def _limit(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    if not match:
        return None
    token = next((g for g in match.groups() if g), None)
    if token is None:
        return 1  # "in a sentence"
    return int(token) if token.isdigit() else _NUMBER_WORDS.get(token, 1)


def split_material(prompt: str) -> tuple[str, str]:
    """``(instruction, material)``: the text to work on that follows the instruction (the lines
    after the first, or the text after the first colon, when they hold 40+ words and the
    instruction points at them: "the following", "below", "this", ...), and the instruction with
    what its last two lines ask ("Question: who ...?", "Return the answer as a JSON array").
    ``material`` is "" when there is none."""
    first, newline, rest = prompt.strip().partition("\n")
    if not (newline and len(rest.split()) >= _MATERIAL_WORDS and _POINTS_AT.search(first)):
        first, colon, rest = prompt.partition(":")
        if not (colon and len(rest.split()) >= _MATERIAL_WORDS and _POINTS_AT.search(first)):
            return prompt, ""
    asked = [line for line in rest.strip().splitlines()[-2:]
             if line.rstrip().endswith("?") or _ASKS.match(line)]
    return "\n".join([first, *asked]), rest


def choices(prompt: str) -> str:
    """The option letters of a multiple-choice prompt ("ABCD" for lines "A. ...", "B. ...", or
    "a) ...", ...): two or more consecutive letters from A; "" for any other prompt."""
    letters = "".join(m.upper() for m in _CHOICE_LINE.findall(prompt))
    for size in range(len(letters), 1, -1):
        expected = "ABCDEFGH"[:size]
        if expected in letters:
            return expected
    return ""


def _kind(instruction: str, tokens: frozenset[str], has_material: bool, wants_code: bool,
          options: str) -> str:
    head = instruction[:300]
    if options:
        return "solve"  # one right option
    if wants_code:
        return "code"
    word_problem = "?" in instruction and len(_NUMBER.findall(instruction)) >= 2
    solve = _cue(_SOLVE, head, tokens) or word_problem
    if solve and not _cue(_WRITE, head[:80], tokens):
        return "solve"
    if has_material and _cue(_EXTRACT, head, tokens):
        return "extract"
    if _cue(_WRITE, head, tokens):
        return "write"
    return "open"


def _questions(text: str) -> list[str]:
    return [s for s in sentences(text) if s.endswith("?")]


def extract(prompt: str) -> Requirements:
    """Read the prompt's demands (from its instruction, not from material quoted for it to work
    on). Parts without content terms are dropped. The last few hundred prompts (up to 16 KB each)
    are remembered: a request scored again (a failover, a reroute) is read once."""
    if len(prompt) <= CACHED_PROMPT_CHARS:
        return _extract_cached(prompt)
    return _extract(prompt)


@lru_cache(maxsize=256)
def _extract_cached(prompt: str) -> Requirements:
    return _extract(prompt)


def _extract(prompt: str) -> Requirements:
    instruction, material = split_material(prompt)
    lowered = instruction.lower()
    tokens = frozenset(words(lowered))
    wants_code = _cue(_CODE_WORDS, lowered, tokens) or (
        _cue(_CODE_LANGS, lowered, tokens) and _cue(_WRITE_VERB, lowered, tokens))
    sentence_limit = _limit(_SENTENCE_LIMIT, lowered) if "sentence" in lowered else None
    options = choices(prompt)
    return Requirements(
        parts=_parts(instruction, lowered, tokens),
        count=_count(lowered) if _has_number(tokens) else None,
        wants_code=wants_code,
        wants_detail=_cue(_DETAIL_WORDS, lowered, tokens) and sentence_limit is None,
        max_words=_limit(_WORD_LIMIT, lowered) if "word" in lowered else None,
        max_sentences=sentence_limit,
        concise=_cue(_CONCISE, lowered, tokens),
        wants_json="json" in lowered and bool(_JSON.search(lowered)),
        wants_lines="line" in lowered and bool(_PER_LINE.search(lowered)),
        wants_english="english" in lowered and bool(_ENGLISH.search(lowered)),
        kind=_kind(lowered, tokens, bool(material), wants_code, options),
        code_language=_code_language(lowered) if wants_code else None,
        foreign_share=foreign_share(prompt),
        instruction=instruction if material else None,
        choices=options,
    )


def _has_number(tokens: frozenset[str]) -> bool:
    return any(map(str.isdigit, tokens)) or not _NUMBER_WORDS.keys().isdisjoint(tokens)


def _parts(instruction: str, lowered: str,
           tokens: frozenset[str]) -> tuple[tuple[str, frozenset[str]], ...]:
    """Each question of a multi-question request, each listed item, both sides of "compare X
    and Y"; the ones without content terms dropped."""
    labelled: list[tuple[str, str]] = []
    questions = _questions(lowered) if "?" in lowered else []
    if len(questions) > 1:
        labelled += [("question", q) for q in questions]
    items = _ITEM_LINE.findall(instruction)
    if len(items) > 1:
        labelled += [("item", item.lower()) for item in items]
    if (" and " in lowered or " vs" in lowered or "versus" in lowered) and \
            not _TRIGGERS[_CONJUNCT].isdisjoint(tokens):
        for match in _CONJUNCT.finditer(lowered):
            labelled += [("part", match.group(1)), ("part", match.group(2))]
    return tuple((label, terms) for label, text in labelled if (terms := _terms(text)))


def _code_language(lowered: str) -> str | None:
    """The one code language the prompt names (None when it names none, or several)."""
    named = set(_LANGUAGE_NAMED.findall(lowered))
    return named.pop() if len(named) == 1 else None
