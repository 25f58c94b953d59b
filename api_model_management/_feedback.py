"""Outcome feedback for a request, the one rule for every runtime: what may be recorded
(:func:`check_feedback`) and the event that records it (:func:`feedback_event`).

Used by ``ModelManagement.feedback`` and the Router actors (through the Selector actor) and by the
in-process ``FailoverManager``. No Ray here.
"""

from __future__ import annotations

from .config import RegistryConfig
from .errors import InvalidInput
from .events import FeedbackRecorded

#: Who may score a request: the pipeline's user, a judge model, a ground truth (tests passed).
FEEDBACK_SOURCES = ("user", "judge", "ground_truth")
#: The longest comment kept (with ``store_prompts`` on).
MAX_COMMENT_CHARS = 2000


def check_feedback(request_id: object, score: object, source: object, comment: object) -> None:
    """InvalidInput for feedback that cannot be recorded."""
    if not isinstance(request_id, str) or not request_id:
        raise InvalidInput("request_id must be a non-empty string", field="request_id")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
        raise InvalidInput("score must be a number in [0, 1]", field="score")
    if source not in FEEDBACK_SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(FEEDBACK_SOURCES)}", field="source")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS):
        raise InvalidInput(f"comment must be a string of at most {MAX_COMMENT_CHARS} characters",
                           field="comment")


def feedback_event(config: RegistryConfig, request_id: str, score: float, source: str,
                   model_id: str, agent_type: str, task_id: str | None = None,
                   comment: str | None = None) -> FeedbackRecorded:
    """The ``FeedbackRecorded`` for a checked outcome of the request ``model_id`` answered; the
    comment is kept only with ``store_prompts`` on (it may quote the answer)."""
    return FeedbackRecorded(
        request_id=request_id, task_id=task_id, agent_type=agent_type, model_id=model_id,
        provider=config.model(model_id).provider, score=float(score), source=source,
        comment=comment if config.settings.store_prompts else None,
    )
