"""The request path: the RouterCore (cache, select, admit, call, evaluate, settle, fail over),
its ports, concurrency limits, and the one factory that builds a router for a runtime."""

from ._concurrency import ConcurrencyLimits
from ._factory import (
    LocalBackend,
    LocalRouter,
    RouterBackend,
    build_local_router,
    build_router,
    make_adapters,
)
from ._ports import (
    AdapterPort,
    BatchedOutcomes,
    EventPort,
    HealthReporter,
    ListEvents,
    NullOutcomes,
    OutcomePort,
    OutcomeReport,
)
from ._router import RouterCore, SelectorPort

__all__ = [
    "AdapterPort",
    "BatchedOutcomes",
    "ConcurrencyLimits",
    "EventPort",
    "HealthReporter",
    "ListEvents",
    "LocalBackend",
    "LocalRouter",
    "NullOutcomes",
    "OutcomePort",
    "OutcomeReport",
    "RouterBackend",
    "RouterCore",
    "SelectorPort",
    "build_local_router",
    "build_router",
    "make_adapters",
]
