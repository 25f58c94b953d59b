"""Errors of replay and tuning (both are ``InvalidInput``: the caller's data or file is at fault)."""

from __future__ import annotations

from ..errors import InvalidInput


class NoDecisions(InvalidInput):
    """There is no logged decision (a ``ModelSelected`` with a terminal outcome) to replay."""

    error_kind = "no_decisions"


class BadWeightsFile(InvalidInput):
    """A weights file is missing, not JSON, or does not hold valid selection weights."""

    error_kind = "bad_weights_file"


class NoSupport(InvalidInput):
    """The log cannot support the question: the estimator has no logged data for the policies
    asked about (no exploration where they choose differently)."""

    error_kind = "no_support"


class TooFewDecisions(InvalidInput):
    """Fewer logged decisions than the minimum a tuning was asked to trust."""

    error_kind = "too_few_decisions"


class ConstraintUnmet(InvalidInput):
    """No candidate weights meet a constrained tuning's constraint at its confidence level."""

    error_kind = "constraint_unmet"
