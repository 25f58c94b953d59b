"""Deterministic answers: the same model and messages always produce the same text.

Answers read like a short reply that restates the prompt's key words, so relevance scoring has
something real to measure. Token counts use the usual rule of thumb (characters / 4).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ._data import WorldEntry

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]{3,}")
_STOP = frozenset(
    """
    about above after again against also because been before being below between both could does
    doing down during each from further have having here into itself just more most other over
    please same should some such than that their them then there these they this those through
    under until very what when where which while will with would your yours you're tell explain
    answer question following give using make need want know like into onto upon within without
    """.split()
)
_OPENERS = (
    "Here is a short answer about {a}.",
    "Good question about {a}.",
    "Let me address {a} directly.",
    "In brief, {a} comes down to a few points.",
)
_BODY = (
    "The key point about {a} is that it depends on {b} and {c}.",
    "In practice, {a} relates closely to {b}, which matters for {c}.",
    "A sound approach to {a} is to consider {b} first and then {c}.",
    "Most sources agree that {a} and {b} should be evaluated together.",
    "It helps to separate {b} from {c} when reasoning about {a}.",
    "One common mistake is to treat {b} as independent of {a}.",
    "Evidence on {c} suggests that {b} plays a central role.",
)
_CLOSERS = (
    "To summarise, {a} is best understood through {b}.",
    "In short, keep {b} and {c} in mind when thinking about {a}.",
    "Overall, {a} rewards a careful look at {b}.",
)
_FILLERS = ("the context", "the constraints", "the details")
WORLD_MARKERS = {True: "[correct]", False: "[incorrect]"}


def count_tokens(text: str) -> int:
    """Approximate tokens of a text (characters / 4, at least 1 for non-empty text)."""
    return (len(text) + 3) // 4


def keywords(prompt: str, limit: int = 6) -> list[str]:
    """Distinct content words of a prompt, in order of appearance."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(prompt):
        word = match.group(0).lower().strip("'-")
        if word not in _STOP and len(word) >= 4:
            seen.setdefault(word, None)
            if len(seen) >= limit:
                break
    return list(seen)


def seed_of(model: str, conversation: str) -> int:
    digest = hashlib.blake2b(f"{model}\x00{conversation}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@functools.lru_cache(maxsize=8192)
def compose_answer(model: str, conversation: str, prompt: str) -> str:
    """A few sentences, seeded by model + conversation, restating the prompt's key words."""
    seed = seed_of(model, conversation)
    words = keywords(prompt)
    for filler in _FILLERS:
        if len(words) >= 3:
            break
        words.append(filler)
    n = len(words)

    def fill(template: str, salt: int) -> str:
        a = words[(seed + salt) % n]
        b = words[(seed + salt + 1 + (seed >> 8) % (n - 1)) % n]
        c = next(w for k in range(n) if (w := words[(seed + salt + k) % n]) not in (a, b))
        return template.format(a=a, b=b, c=c)

    first, step = (seed >> 16) % len(_BODY), 1 + (seed >> 24) % (len(_BODY) - 1)
    body = [_BODY[(first + i * step) % len(_BODY)] for i in range(2 + (seed >> 32) % 2)]
    sentences = [fill(_OPENERS[(seed >> 40) % len(_OPENERS)], 0)]
    sentences += [fill(template, i + 1) for i, template in enumerate(body)]
    sentences.append(fill(_CLOSERS[(seed >> 48) % len(_CLOSERS)], len(body) + 1))
    return " ".join(sentences)


def world_answer(model: str, column: str, entry: WorldEntry, conversation: str) -> str | None:
    """The world's answer for a model: a recorded response, or an option letter, plus a marker.

    The routellm files record only whether a model was right, not the right option, so the option
    letter is arbitrary; the marker ``[correct]`` / ``[incorrect]`` is the ground truth to check.
    """
    if column not in entry.correct:
        return None
    marker = WORLD_MARKERS[entry.correct[column]]
    recorded = entry.responses.get(column)
    if recorded:
        return f"{recorded.strip()}\n{marker}"
    letter = "ABCD"[seed_of(model, conversation) % 4]
    return f"Answer: {letter} {marker}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of an answer. ``arguments`` is the object the wires that carry an object send
    (Anthropic ``input``, Gemini ``args``, Ollama ``arguments``); ``text`` the JSON text OpenAI
    sends (possibly cut at the maximum of output tokens, or broken by a fault)."""

    id: str
    name: str
    arguments: Any
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    input_tokens: int
    output_tokens: int
    #: True when the text was cut at the requested maximum of output tokens.
    truncated: bool
    #: Tool calls, after ``text`` (which is then usually empty).
    tool_calls: tuple[ToolCall, ...] = ()


def make_answer(full_text: str, prompt_chars: int, max_tokens: int | None,
                extra_input_tokens: int = 0) -> Answer:
    """Cut ``full_text`` to ``max_tokens`` (on a word boundary when possible) and count tokens;
    ``extra_input_tokens`` (tool definitions, images) add to the text's input tokens."""
    input_tokens = max(1, (prompt_chars + 3) // 4) + extra_input_tokens
    if max_tokens is None or count_tokens(full_text) <= max_tokens:
        return Answer(full_text, input_tokens, count_tokens(full_text), False)
    limit_chars = max(0, max_tokens * 4)
    cut = full_text[:limit_chars]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return Answer(cut, input_tokens, count_tokens(cut), True)


def oversized_answer(answer: Answer, size_bytes: int) -> Answer:
    """``answer`` with its text replaced by ``size_bytes`` of filler (1 KiB words, so a stream of
    it has a few thousand frames, not millions); usage as for a real answer that long."""
    word = "x" * 1023 + " "
    text = (word * (size_bytes // len(word) + 1))[:size_bytes]
    return Answer(text, answer.input_tokens, count_tokens(text), False)


def degraded_answer(answer: Answer, words: int = 4) -> Answer:
    """``answer`` as a model stuck in a loop writes it: its first ``words`` words repeated to
    about its length (at least twice); usage counted on the text sent."""
    head = " ".join(answer.text.split()[:words]) or "the"
    text = " ".join([head] * max(2, len(answer.text) // (len(head) + 1)))
    return Answer(text, answer.input_tokens, count_tokens(text), answer.truncated)


def split_json(text: str, chars_per_chunk: int = 12) -> list[str]:
    """Pieces of JSON text (which has few spaces) that concatenate back to it exactly."""
    return [text[i : i + chars_per_chunk] for i in range(0, len(text), chars_per_chunk)] or [""]


def split_for_stream(text: str, words_per_chunk: int = 3) -> list[str]:
    """Pieces of ``text`` that concatenate back to it exactly."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return ["".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)] or [""]
