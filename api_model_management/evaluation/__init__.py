"""Response quality scoring: a deterministic heuristic evaluator, the calibration that turns its
scores into the rating a judge would give, the schema checks of tool calls and structured
answers, and the optional judge mode."""

from ._calibration import FEATURE_NAMES, Calibration, load_calibration
from ._evaluator import FINISH_FACTORS, Evaluation, ResponseEvaluator, request_text
from ._judge import JUDGE_SYSTEM_PROMPT, JudgePrompt, build_judge_prompt, parse_judge_score
from ._requirements import Requirements, extract
from ._structured import OutputCheck, check_output

__all__ = [
    "FEATURE_NAMES",
    "FINISH_FACTORS",
    "JUDGE_SYSTEM_PROMPT",
    "Calibration",
    "Evaluation",
    "JudgePrompt",
    "OutputCheck",
    "Requirements",
    "build_judge_prompt",
    "check_output",
    "ResponseEvaluator",
    "extract",
    "load_calibration",
    "parse_judge_score",
    "request_text",
]
