"""Response quality scoring: a deterministic heuristic evaluator and the optional judge mode."""

from ._evaluator import FINISH_FACTORS, Evaluation, ResponseEvaluator, request_text
from ._judge import JUDGE_SYSTEM_PROMPT, JudgePrompt, build_judge_prompt, parse_judge_score
from ._requirements import Requirements, extract

__all__ = [
    "FINISH_FACTORS",
    "JUDGE_SYSTEM_PROMPT",
    "Evaluation",
    "JudgePrompt",
    "Requirements",
    "build_judge_prompt",
    "ResponseEvaluator",
    "extract",
    "parse_judge_score",
    "request_text",
]
