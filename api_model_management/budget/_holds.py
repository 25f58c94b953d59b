"""The CostLedger's holds on disk, so that a restarted ledger still holds what routers hold.

A router keeps spending a budget slice until it expires, whatever happens to the ledger; so a
ledger that restarted without knowing its predecessor's slices could grant the same headroom twice.
Every hold added (a reservation, a slice, a pending charge) and dropped is appended here before the
answer leaves the ledger; a restarted ledger rebuilds its settled spend from the log, then holds
again what this file says was open (pending charges the log has since delivered excepted).

Times are monotonic: the first line records the clock (``Clock.domain``) and its offset to wall
time, and a file read on another clock is shifted, as for the RateLimiter's journal.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._clock import Clock
from ._ledger import Reservation
from ._limits import SpendKey


class HoldJournal:
    """Append-only file of hold changes; :meth:`load` gives the holds still open."""

    def __init__(self, path: str | Path, clock: Clock, *, max_lines: int = 20_000) -> None:
        self.path = Path(path)
        self._clock = clock
        self.max_lines = max_lines
        self._lines = 0
        self._fd: int | None = None

    def load(self) -> list[Reservation]:
        """The holds open at the end of the file, on this clock (a torn line is skipped)."""
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []
        if not lines:
            return []
        try:
            shift = self._shift(json.loads(lines[0]))
        except (ValueError, KeyError):
            return []
        open_holds: dict[str, Reservation] = {}
        for line in lines[1:]:
            try:
                op = json.loads(line)
                if op[0] == "+":
                    hold = _decode(op[1], shift)
                    open_holds[hold.reservation_id] = hold
                else:
                    open_holds.pop(op[1], None)
            except (ValueError, KeyError, TypeError, IndexError):
                continue
        self._lines = len(lines)
        return list(open_holds.values())

    def append(self, changes: Sequence[tuple[str, Reservation | str]]) -> None:
        if not changes:
            return
        if self._fd is None:
            self._open()
        assert self._fd is not None
        data = "".join(json.dumps(_encode(op, item), separators=(",", ":")) + "\n"
                       for op, item in changes)
        os.write(self._fd, data.encode("utf-8"))
        self._lines += len(changes)

    def needs_compaction(self) -> bool:
        return self._lines > self.max_lines

    def rewrite(self, holds: Sequence[Reservation]) -> None:
        """Replace the file by the holds open now (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = self._header() + "".join(
            json.dumps(_encode("+", h), separators=(",", ":")) + "\n" for h in holds)
        tmp.write_text(body, "utf-8")
        os.replace(tmp, self.path)
        self.close()
        self._lines = len(holds) + 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if fresh:
            os.write(self._fd, self._header().encode("utf-8"))
            self._lines = 1

    def _header(self) -> str:
        return json.dumps({"domain": getattr(self._clock, "domain", ""),
                           "mono": self._clock.monotonic(),
                           "wall": self._clock.now().timestamp()}) + "\n"

    def _shift(self, header: dict[str, Any]) -> float:
        domain = getattr(self._clock, "domain", "")
        if header.get("domain") and header.get("domain") == domain:
            return 0.0
        ours = self._clock.monotonic() - self._clock.now().timestamp()
        return ours - (float(header["mono"]) - float(header["wall"]))


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
