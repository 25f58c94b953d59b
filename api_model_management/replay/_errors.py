"""Errors of replay and tuning (both are ``InvalidInput``: the caller's data or file is at fault)."""

from __future__ import annotations

from ..errors import InvalidInput


class NoDecisions(InvalidInput):
    """There is no logged decision (a ``ModelSelected`` with a terminal outcome) to replay."""

    error_kind = "no_decisions"


class BadWeightsFile(InvalidInput):
    """A weights file is missing, not JSON, or does not hold valid selection weights."""

    error_kind = "bad_weights_file"
