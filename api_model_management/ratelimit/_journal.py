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
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._clock import Clock
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


class LimiterJournal:
    """The append-only decision file of one model's limiter."""

    def __init__(self, path: str | Path, clock: Clock, *, max_lines: int = 20_000) -> None:
        self.path = Path(path)
        self._clock = clock
        self.max_lines = max_lines
        self._lines = 0
        self._fd: int | None = None

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> list[Record]:
        """The records in the file, on this clock (empty when there is no file). Lines that do
        not parse (a torn last line) are skipped."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        lines = text.splitlines()
        if not lines:
            return []
        try:
            header = json.loads(lines[0])
        except ValueError:
            return []
        shift = self._shift(header)
        records = []
        for line in lines[1:]:
            try:
                records.append(_shifted(_decode(json.loads(line)), shift))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: nothing after it was answered
        self._lines = len(lines)
        return records

    def _shift(self, header: dict[str, Any]) -> float:
        domain = getattr(self._clock, "domain", "")
        if header.get("domain") and header.get("domain") == domain:
            return 0.0
        ours = self._clock.monotonic() - self._clock.now().timestamp()
        theirs = float(header["mono"]) - float(header["wall"])
        return ours - theirs

    # -- writing -------------------------------------------------------------------------------
    def append(self, records: Sequence[Record]) -> None:
        """Append ``records`` (one write); rewrite the file as a snapshot when it is long."""
        if not records:
            return
        if self._fd is None:
            self._open()
        assert self._fd is not None
        data = "".join(json.dumps(_encode(r), separators=(",", ":")) + "\n" for r in records)
        os.write(self._fd, data.encode("utf-8"))
        self._lines += len(records)

    def needs_compaction(self) -> bool:
        return self._lines > self.max_lines

    def rewrite(self, snapshot: RateLimiterSnapshot) -> None:
        """Replace the file by one snapshot record (atomically)."""
        now = self._clock.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = self._header() + json.dumps(_encode(Restored(now, snapshot)), separators=(",", ":")) + "\n"
        tmp.write_text(body, "utf-8")
        os.replace(tmp, self.path)
        self.close()
        self._lines = 2

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


