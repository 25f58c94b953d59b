"""Model selection, in one place: the policy (filter, score, priority, choose, explore), its
weights, and the live statistics it scores performance with."""

from ._core import (
    COST_FLOOR_USD,
    HEALTH_FACTOR,
    LATENCY_REF_MS,
    PRIOR_STRENGTH,
    PRIOR_SUCCESS_RATE,
    QUALITY_IN_PERFORMANCE,
    RELIABILITY_RESOLUTION,
    LiveState,
    Selection,
    SelectorCore,
    adjust_for_priority,
    reliability_part,
)
from ._quality import CELL_PSEUDO, MODEL_PSEUDO, QualityEstimate, QualityFold, QualitySnapshot
from ._seed import SEED_MAX_DAYS, SEED_OUTCOMES_PER_MODEL, recent_outcomes, seed_stats
from ._stats import ModelStats, ModelStatsSnapshot, StatsCore

__all__ = [
    "CELL_PSEUDO",
    "MODEL_PSEUDO",
    "QualityEstimate",
    "QualityFold",
    "QualitySnapshot",
    "COST_FLOOR_USD",
    "HEALTH_FACTOR",
    "LATENCY_REF_MS",
    "PRIOR_STRENGTH",
    "PRIOR_SUCCESS_RATE",
    "QUALITY_IN_PERFORMANCE",
    "RELIABILITY_RESOLUTION",
    "SEED_MAX_DAYS",
    "SEED_OUTCOMES_PER_MODEL",
    "LiveState",
    "ModelStats",
    "ModelStatsSnapshot",
    "Selection",
    "SelectorCore",
    "StatsCore",
    "adjust_for_priority",
    "recent_outcomes",
    "reliability_part",
    "seed_stats",
]
