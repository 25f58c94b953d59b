"""Replay and tuning of selection weights (design §7).

From logged ``ModelSelected`` decisions (candidates with sub-scores, propensity) and their
outcomes, estimate offline what other weights would have achieved (IPS, SNIPS, DM, DR, with
confidence intervals), search weights that maximise the reward or meet a constraint relative to
always the strongest model, and write the weights file the Selector loads.
"""

from ._decisions import LoggedDecision, Outcome, decisions_from_events, load_decisions
from ._errors import BadWeightsFile, ConstraintUnmet, NoDecisions, NoSupport, TooFewDecisions
from ._estimators import (
    ESTIMATORS,
    METRICS,
    Estimate,
    Interval,
    Objective,
    PreparedLog,
    ReplayReport,
    replay,
)
from ._goal import GOALS, Goal
from ._policy import TargetPolicy
from ._reference import CHEAPEST, STRONGEST, Reference, compare, references
from ._tune import TuneResult, random_simplex, simplex_grid, tune
from ._weights_file import WeightsFile, read_weights_file, write_weights_file

__all__ = [
    "CHEAPEST",
    "ESTIMATORS",
    "GOALS",
    "METRICS",
    "STRONGEST",
    "BadWeightsFile",
    "ConstraintUnmet",
    "Estimate",
    "Goal",
    "Interval",
    "LoggedDecision",
    "NoDecisions",
    "NoSupport",
    "Objective",
    "Outcome",
    "PreparedLog",
    "Reference",
    "ReplayReport",
    "TargetPolicy",
    "TooFewDecisions",
    "TuneResult",
    "WeightsFile",
    "compare",
    "decisions_from_events",
    "load_decisions",
    "random_simplex",
    "read_weights_file",
    "references",
    "replay",
    "simplex_grid",
    "tune",
    "write_weights_file",
]
