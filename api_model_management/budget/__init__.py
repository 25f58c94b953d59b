"""Money, in one place: prices and worst-case costs, the CostLedger core (spend per scope and
window, reservations, slices, alerts), which limits apply to a spend, and budget admission on the
router's side (per-call or from slices)."""

from ._admission import (
    BudgetPort,
    BudgetTicket,
    LocalBudget,
    LocalSliceGranter,
    SliceBudget,
    SliceGranter,
    SliceHolder,
)
from ._ledger import (
    SLICE_SHARE,
    BudgetStatus,
    CostLedgerCore,
    LedgerSnapshot,
    Reservation,
    Slice,
    slice_amount,
    to_money,
)
from ._limits import (
    GLOBAL_KEY,
    SCOPES,
    WINDOWS,
    SpendKey,
    applicable_limits,
    is_limited,
    is_per_key,
    limit_keys,
    per_key,
    scope_keys,
    window_start,
)
from ._pricing import cost_usd, worst_case_cost_usd

__all__ = [
    "GLOBAL_KEY",
    "SCOPES",
    "SLICE_SHARE",
    "WINDOWS",
    "BudgetPort",
    "BudgetStatus",
    "BudgetTicket",
    "CostLedgerCore",
    "LedgerSnapshot",
    "LocalBudget",
    "LocalSliceGranter",
    "Reservation",
    "Slice",
    "SliceBudget",
    "SliceGranter",
    "SliceHolder",
    "SpendKey",
    "applicable_limits",
    "cost_usd",
    "is_limited",
    "is_per_key",
    "limit_keys",
    "per_key",
    "scope_keys",
    "slice_amount",
    "to_money",
    "window_start",
    "worst_case_cost_usd",
]
