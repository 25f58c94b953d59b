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
from ._fold import FileSpend, LogSpend, SpendDelta
from ._holds import HoldJournal
from ._ledger import (
    SLICE_SHARE,
    BudgetStatus,
    CostLedgerCore,
    LedgerSnapshot,
    LimitRef,
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
from ._pricing import (
    SettledUsage,
    UsageBound,
    UsageOverrun,
    cost_usd,
    settle_usage,
    usage_bound,
    worst_case_cost_usd,
)

__all__ = [
    "GLOBAL_KEY",
    "SCOPES",
    "SLICE_SHARE",
    "WINDOWS",
    "BudgetPort",
    "BudgetStatus",
    "BudgetTicket",
    "FileSpend",
    "HoldJournal",
    "CostLedgerCore",
    "LedgerSnapshot",
    "LimitRef",
    "LocalBudget",
    "LocalSliceGranter",
    "LogSpend",
    "Reservation",
    "SettledUsage",
    "Slice",
    "SliceBudget",
    "SliceGranter",
    "SliceHolder",
    "SpendDelta",
    "SpendKey",
    "UsageBound",
    "UsageOverrun",
    "applicable_limits",
    "cost_usd",
    "is_limited",
    "is_per_key",
    "limit_keys",
    "per_key",
    "scope_keys",
    "settle_usage",
    "slice_amount",
    "to_money",
    "usage_bound",
    "window_start",
    "worst_case_cost_usd",
]
