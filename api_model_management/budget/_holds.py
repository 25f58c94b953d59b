"""The CostLedger's holds on disk, so that a restarted ledger still holds what routers hold.

A router keeps spending a budget slice until it expires, whatever happens to the ledger; so a
ledger that restarted without knowing its predecessor's slices could grant the same headroom twice.
Every hold added (a reservation, a slice, a pending charge) and dropped is appended here before the
answer leaves the ledger; a restarted ledger rebuilds its settled spend from the log, then holds
again what this file says was open (pending charges the log has since delivered excepted).

Times are monotonic: the file is a :class:`~api_model_management._journal.ClockedJournal`, shifted
when read on another clock, as the RateLimiter's journal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .._journal import ClockedJournal
from ._ledger import Reservation
from ._limits import SpendKey


class HoldJournal(ClockedJournal):
    """Append-only file of hold changes; :meth:`load` gives the holds still open."""

    def load(self) -> list[Reservation]:
        """The holds open at the end of the file, on this clock (a torn line is skipped)."""
        shift, values = self.read()
        open_holds: dict[str, Reservation] = {}
        for op in values:
            try:
                if op[0] == "+":
                    hold = _decode(op[1], shift)
                    open_holds[hold.reservation_id] = hold
                else:
                    open_holds.pop(op[1], None)
            except (ValueError, KeyError, TypeError, IndexError):
                continue
        return list(open_holds.values())

    def append(self, changes: Sequence[tuple[str, Reservation | str]]) -> None:
        self.append_json([_encode(op, item) for op, item in changes])

    def rewrite(self, holds: Sequence[Reservation]) -> None:
        """Replace the file by the holds open now (atomically)."""
        self.replace_json([_encode("+", h) for h in holds])


def _encode(op: str, item: Reservation | str) -> list[Any]:
    if isinstance(item, str):
        return [op, item]
    data = dataclasses.asdict(item)
    data["amount_usd"] = str(item.amount_usd)
    return [op, data]


def _decode(data: dict[str, Any], shift: float) -> Reservation:
    data = dict(data)
    data["key"] = SpendKey(**data["key"])
    data["amount_usd"] = Decimal(data["amount_usd"])
    data["created_at"] = float(data["created_at"]) + shift
    data["drop_at"] = float(data["drop_at"]) + shift
    return Reservation(**data)
