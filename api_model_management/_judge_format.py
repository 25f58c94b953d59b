"""The judge request's text: its instructions, its template and the inverse of the template.

One definition for the two sides of judge mode: :mod:`api_model_management.evaluation` builds the
request, and the emulator recognises it to play a judge. It imports nothing, so the emulator can
use it without loading the evaluator (which brings numpy, pyarrow and the configuration: about
50 MB and 0.3 s more for a process that otherwise takes 40 MB).
"""

from __future__ import annotations

JUDGE_SYSTEM_PROMPT = (
    "You are a strict grader of answers written by AI assistants. Judge the ANSWER to the REQUEST "
    "for completeness (does it do everything asked), relevance (does it stay on the request) and "
    "coherence (is it clear, well structured, not repetitive). Reply with one line of the form "
    "'Score: N' where N is an integer from 0 (useless) to 10 (excellent), then nothing else."
)
JUDGE_TEMPLATE = "REQUEST:\n<<<\n{request}\n>>>\n\nANSWER:\n<<<\n{answer}\n>>>\n\nScore (0-10):"

_HEAD, _REST = JUDGE_TEMPLATE.split("{request}")
_MIDDLE, _TAIL = _REST.split("{answer}")


def split_judge_message(text: str) -> tuple[str, str] | None:
    """(request, answer) of a message that ends with a filled :data:`JUDGE_TEMPLATE`, else None.

    Whatever precedes the template (the instructions, when they are not sent as a system prompt)
    is ignored. The request starts at the first REQUEST block; the answer is what follows the last
    ANSWER delimiter, so its end, where an answer world puts its marker, is always exact."""
    body = text.rstrip()
    if not body.endswith(_TAIL):
        return None
    start = body.find(_HEAD)
    if start < 0:
        return None
    request, delimiter, answer = body[start + len(_HEAD): len(body) - len(_TAIL)].rpartition(_MIDDLE)
    if not delimiter:
        return None
    return request, answer
