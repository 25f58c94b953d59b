"""Replay and tuning of selection weights (design §7).

From logged ``ModelSelected`` decisions (candidates with sub-scores, propensity) and their
outcomes, estimate offline what other weights would have achieved (IPS, SNIPS, DM, DR), search
weights that maximise a stated objective, and write the weights file the Selector loads.
"""

from ._decisions import LoggedDecision, Outcome, decisions_from_events, load_decisions
from ._errors import BadWeightsFile, NoDecisions
from ._estimators import (
    ESTIMATORS,
    METRICS,
    Estimate,
    Objective,
    PreparedLog,
    ReplayReport,
    replay,
)
from ._policy import TargetPolicy
from ._tune import TuneResult, random_simplex, simplex_grid, tune
from ._weights_file import WeightsFile, read_weights_file, write_weights_file

__all__ = [
    "ESTIMATORS",
    "METRICS",
    "BadWeightsFile",
    "Estimate",
    "LoggedDecision",
    "NoDecisions",
    "Objective",
    "Outcome",
    "PreparedLog",
    "ReplayReport",
    "TargetPolicy",
    "TuneResult",
    "WeightsFile",
    "decisions_from_events",
    "load_decisions",
    "random_simplex",
    "read_weights_file",
    "replay",
    "simplex_grid",
    "tune",
    "write_weights_file",
]
