"""An append-only JSON-lines file on a monotonic clock: what the CostLedger's hold journal and the
RateLimiter's decision journal have in common.

The first line records the clock it was written on (``Clock.domain``, one per host boot) with its
monotonic and wall-clock readings; every later line is one JSON value. Read on another clock
(another host, a reboot), monotonic times in the file are shifted by the difference of the two
clocks' offsets to wall time (:meth:`ClockedJournal.read`). Appends are one ``os.write`` each; a
line torn by a crash is skipped when read, and an append after one starts on a new line, so the
torn line never swallows the next record. The file is rewritten atomically (temp file, rename)
when the owner compacts it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._clock import Clock


class ClockedJournal:
    """The file; subclasses encode and decode their records."""

    def __init__(self, path: str | Path, clock: Clock, *, max_lines: int = 20_000) -> None:
        self.path = Path(path)
        self._clock = clock
        self.max_lines = max_lines
        self._lines = 0
        self._fd: int | None = None

    def read(self) -> tuple[float, list[Any]]:
        """(the shift to add to the file's monotonic times, the JSON value of every line after
        the header that parses); ``(0.0, [])`` without a file or a readable header."""
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return 0.0, []
        if not lines:
            return 0.0, []
        try:
            shift = self._shift(json.loads(lines[0]))
        except (ValueError, KeyError, TypeError):
            return 0.0, []
        values = []
        for line in lines[1:]:
            try:
                values.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash mid-write: nothing after it was answered
        self._lines = len(lines)
        return shift, values

    def append_json(self, values: Sequence[Any]) -> None:
        """Append one line per value, in one write."""
        if not values:
            return
        if self._fd is None:
            self._open()
        assert self._fd is not None
        data = "".join(json.dumps(v, separators=(",", ":")) + "\n" for v in values)
        os.write(self._fd, data.encode("utf-8"))
        self._lines += len(values)

    def needs_compaction(self) -> bool:
        return self._lines > self.max_lines

    def replace_json(self, values: Sequence[Any]) -> None:
        """Replace the file by a new header and ``values`` (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = self._header() + "".join(
            json.dumps(v, separators=(",", ":")) + "\n" for v in values)
        tmp.write_text(body, "utf-8")
        os.replace(tmp, self.path)
        self.close()
        self._lines = len(values) + 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if size == 0:
            os.write(self._fd, self._header().encode("utf-8"))
            self._lines = 1
        elif os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")  # end a torn last line: the next record starts clean

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
