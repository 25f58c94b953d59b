"""The emulator as a judge: a grading request is answered with a score that follows the answer world.

A judge request is a last user message ending with the system's judge template (see
:mod:`api_model_management._judge_format`: a REQUEST block, an ANSWER block, then
``Score (0-10):``), with its instructions before it or sent as a system prompt. Whatever the
model, the reply is ``Score: N`` and nothing else, where N depends on how the graded answer ends:

- ``[correct]`` (an answer-world answer that was right): N in 8..10;
- ``[incorrect]``: N in 1..3;
- no marker (not a world answer, or one cut before its end): N in 4..7. The request alone cannot
  say which model answered, so the world cannot be asked.

N within its band comes from a hash of the graded answer: the same answer always gets the same
score, from every judge model, and different answers spread over the band. Usage is counted as for
any answer (the whole conversation in, the score line out).
"""

from __future__ import annotations

from .._judge_format import split_judge_message
from ._text import WORLD_MARKERS, seed_of

#: The score band (lowest, highest on 0..10) for an answer marked right, marked wrong, unmarked.
SCORE_BANDS: dict[bool | None, tuple[int, int]] = {True: (8, 10), False: (1, 3), None: (4, 7)}


def judge_reply(message: str) -> str | None:
    """``Score: N`` when ``message`` is a judge request, else None."""
    parts = split_judge_message(message)
    if parts is None:
        return None
    return f"Score: {judge_score(parts[1])}"


def judge_score(answer: str) -> int:
    """The score (0..10) the emulator gives ``answer``: its marker's band, a hash within it."""
    text = answer.rstrip()
    correct = next((value for value, marker in WORLD_MARKERS.items() if text.endswith(marker)), None)
    lowest, highest = SCORE_BANDS[correct]
    return lowest + seed_of("judge", text) % (highest - lowest + 1)
