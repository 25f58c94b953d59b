"""The optional judge mode: a prompt asking a judge model to grade an answer, and its score parser.

The router sends the judge request through the system like any other (so it is selected, budgeted
and logged); this module only builds the request and reads the score from the judge's reply. The
request's text is defined in :mod:`api_model_management._judge_format`, which the emulator shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._judge_format import JUDGE_SYSTEM_PROMPT, JUDGE_TEMPLATE
from .._request import ModelRequest
from ._evaluator import request_text

_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(100|10|5|1)(?![\d.])", re.IGNORECASE)
_LABELLED = re.compile(r"\b(?:score|rating|grade)\b\s*(?:is|of|=|:)?\s*[:=]?\s*(-?\d+(?:\.\d+)?)",
                       re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


@dataclass(frozen=True)
class JudgePrompt:
    """Builds the judge's request for one (request, answer) pair.

    Long texts are clipped (head and tail kept) to ``max_chars`` each so a judge call stays cheap."""

    max_chars: int = 6000
    max_tokens: int = 16

    def text(self, request: ModelRequest, answer: str) -> str:
        """The user message sent to the judge."""
        return JUDGE_TEMPLATE.format(request=self._clip(request_text(request)),
                                     answer=self._clip(answer))

    def build(self, request: ModelRequest, answer: str, judge_model_id: str | None = None
              ) -> ModelRequest:
        """A deterministic, cacheable request to ``judge_model_id`` grading ``answer``."""
        return ModelRequest(
            prompt=self.text(request, answer),
            system=JUDGE_SYSTEM_PROMPT,
            parameters={"temperature": 0},
            max_tokens=self.max_tokens,
            agent_type="judge",
            task_id=request.task_id,
            model_id=judge_model_id,
            cacheable=True,
            priority="low",
        )

    def _clip(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        half = self.max_chars // 2
        return f"{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n{text[-half:]}"


def build_judge_prompt(request_text: str, answer: str, *, max_chars: int = 6000) -> str:
    """One self-contained judge message (instructions included) for callers that send no system
    prompt: the text of the request and the answer, clipped to ``max_chars`` each."""
    clip = JudgePrompt(max_chars=max_chars)._clip
    body = JUDGE_TEMPLATE.format(request=clip(request_text), answer=clip(answer))
    return f"{JUDGE_SYSTEM_PROMPT}\n\n{body}"


def parse_judge_score(text: str) -> float | None:
    """The judge's score as a share in [0, 1], or None when the reply holds no usable score.

    Reads ``7/10``, ``8 out of 10``, ``85/100``, ``Score: 7``, ``Rating = 0.8`` or a bare number. An
    integer (or a decimal above 1) is on the 0-10 scale asked for; a decimal in [0, 1] such as
    ``0.8`` is already a share. Values outside the scale give None, not a clamped guess."""
    match = _FRACTION.search(text)
    if match:
        value, scale = float(match.group(1)), float(match.group(2))
        return value / scale if 0 <= value <= scale else None
    match = _LABELLED.search(text) or _NUMBER.search(text)
    if not match:
        return None
    raw = match.group(1)
    value = float(raw)
    if "." in raw and 0 <= value <= 1:
        return value
    if 0 <= value <= 10:
        return value / 10
    return None
