"""A RateLimiter's decisions on disk, so that a restarted limiter remembers its window.

Every decision record of a :class:`RateLimiterCore` (grants of reservations and leases, commits,
releases, lease returns, cool-downs) is appended as one JSON line before the decision is answered;
a restarted limiter replays the file (``RateLimiterCore.replay``), so that leases and reservations
granted before the restart count as used until they slide out of the window, and used + leased
stays within every window across restarts. Records that slid out of the window are dropped by the
replay itself; the file is rewritten as one snapshot (temp file, then rename) when it grows past
``max_lines``.

Times in records are monotonic. The first line says on which clock (``Clock.domain``, one per
host boot) and when in wall-clock time it was written; a file read on another clock (another host,
a reboot) is shifted by the difference of the two clocks' offsets to wall time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .._journal import ClockedJournal
from ._core import (
    Committed,
    Cooled,
    EntryState,
    Flagged,
    Granted,
    LeaseReturned,
    RateLimiterSnapshot,
    Record,
    Released,
    Restored,
)

_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (
    Granted, Committed, Released, LeaseReturned, Cooled, Flagged, Restored)}
#: Monotonic fields, shifted when the file was written on another clock.
_ENTRY_TIMES = ("started_at", "until", "lease_expires_at")


class LimiterJournal(ClockedJournal):
    """The append-only decision file of one model's limiter."""

    def load(self) -> list[Record]:
        """The records in the file, on this clock (empty when there is no file). Lines that do
        not parse (a torn last line) are skipped."""
        shift, values = self.read()
        records = []
        for value in values:
            try:
                records.append(_shifted(_decode(value), shift))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return records

    def append(self, records: Sequence[Record]) -> None:
        """Append ``records`` (one write)."""
        self.append_json([_encode(r) for r in records])

    def rewrite(self, snapshot: RateLimiterSnapshot) -> None:
        """Replace the file by one snapshot record (atomically)."""
        self.replace_json([_encode(Restored(self._clock.monotonic(), snapshot))])


# ---------------------------------------------------------------------------------------------
# encoding


def _encode(record: Record) -> dict[str, Any]:
    return {"type": type(record).__name__, **dataclasses.asdict(record)}


def _decode(data: dict[str, Any]) -> Record:
    cls = _TYPES[data.pop("type")]
    if cls is Granted:
        data["entry"] = EntryState(**data["entry"])
    elif cls is Restored:
        snap = data["snapshot"]
        snap["entries"] = tuple(EntryState(**e) for e in snap["entries"])
        data["snapshot"] = RateLimiterSnapshot(**snap)
    record: Record = cls(**data)
    return record


def _shifted(record: Record, shift: float) -> Record:
    if not shift:
        return record
    if isinstance(record, Granted):
        return dataclasses.replace(record, at=record.at + shift, entry=_entry(record.entry, shift))
    if isinstance(record, LeaseReturned | Cooled):
        return dataclasses.replace(record, at=record.at + shift, until=record.until + shift)
    if isinstance(record, Restored):
        snap = record.snapshot
        cooling = None if snap.cooling_until is None else snap.cooling_until + shift
        snap = dataclasses.replace(snap, entries=tuple(_entry(e, shift) for e in snap.entries),
                                   cooling_until=cooling)
        return Restored(record.at + shift, snap)
    return dataclasses.replace(record, at=record.at + shift)


def _entry(entry: EntryState, shift: float) -> EntryState:
    changes = {f: getattr(entry, f) + shift for f in _ENTRY_TIMES if getattr(entry, f) is not None}
    return dataclasses.replace(entry, **changes)


