"""Helpers shared by the benchmark scripts (not part of the package, not imported by tests).

- :func:`start_emulator`: the emulator in its OWN process on a free loopback port, ready to serve;
- :func:`summarize` / :func:`percentile`: latency statistics;
- :func:`markdown_table`: a table for the terminal and for pasting into notes;
- :func:`process_memory`: resident memory of a process tree (the driver, Ray's processes, ...);
- :func:`machine_line`: cores and load average, printed with every result (a 2-core machine
  shared with other work gives noisy figures; the load says how noisy).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
_START_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------
# the emulator in its own process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmulatorProcess:
    """A running ``python -m api_model_management.emulator``; stop it with :meth:`stop`."""

    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_emulator/stats", timeout=5).json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_emulator/reset", timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_emulator(profile: Path | None = None, port: int | None = None) -> EmulatorProcess:
    """Start the emulator (fault-free and zero latency unless ``profile`` says otherwise) in a
    separate process and wait until it answers."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "api_model_management.emulator", "--port", str(port)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
    emulator = EmulatorProcess(proc, port)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited with code {proc.returncode}")
        try:
            if httpx.get(f"{emulator.url}/_emulator/stats", timeout=0.5).status_code == 200:
                return emulator
        except httpx.TransportError:
            time.sleep(0.05)
    emulator.stop()
    raise RuntimeError(f"the emulator did not answer within {_START_TIMEOUT_S:.0f} s")


# --------------------------------------------------------------------------------------------
# statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies_s: Sequence[float], elapsed_s: float | None = None) -> dict[str, float]:
    """``requests``, ``p50_ms``, ``p99_ms``, ``mean_ms`` and, given the wall time, ``rps``."""
    ms = [x * 1000 for x in latencies_s]
    out = {"requests": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
           "mean_ms": sum(ms) / len(ms) if ms else math.nan}
    if elapsed_s is not None:
        out["rps"] = len(ms) / elapsed_s if elapsed_s > 0 else math.nan
    return out


def median(values: Iterable[float]) -> float:
    return percentile(list(values), 50)


def quantiles(values: Sequence[float], points: int = 101) -> list[float]:
    """``points`` evenly spaced percentiles (0 to 100) of ``values``: a compact empirical
    distribution to sample from (``capacity_sim.py``); empty for no values."""
    if not values:
        return []
    ordered = sorted(values)
    return [percentile(ordered, 100 * i / (points - 1)) for i in range(points)]


# --------------------------------------------------------------------------------------------
# output


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]],
                   align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: first
    column left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table: ``-`` for missing, thousands separators for large values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def machine_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def write_json(name: str, data: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` (the folder is gitignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# processes: CPU and memory


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def process_role(proc) -> str:
    """A short role for a process of the system: ``driver``, ``gcs_server``, ``raylet``,
    ``ray::RouterShell`` (an actor: Ray sets its title), ``ray::IDLE`` (a pooled worker), ..."""
    if proc.pid == os.getpid():
        return "driver"
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except (ProcessLookupError, PermissionError):
        return "?"
    title = cmdline[0] if len(cmdline) == 1 else " ".join(cmdline[:3])
    if title.startswith("ray::"):
        return title.split()[0].split(".")[0]
    for known in ("gcs_server", "raylet"):
        if known in name or any(known in part for part in cmdline[:1]):
            return known
    for part in cmdline:
        if part.endswith(".py"):
            return Path(part).stem  # Ray's helpers: log_monitor, monitor, dashboard agents, ...
    return name


def process_memory(root_pid: int | None = None, *, exclude: Iterable[int] = ()) -> list[dict]:
    """``[{pid, role, rss_mb, pss_mb}]`` for ``root_pid`` (default: this process) and all its
    descendants, minus ``exclude`` (and their descendants). PSS (Linux) shares each shared page
    among the processes that map it, so its sum is the fair total; the RSS sum counts shared
    pages (Python, Ray's libraries) once per process."""
    import psutil

    root = psutil.Process(root_pid or os.getpid())
    skipped = set()
    for pid in exclude:
        try:
            skipped |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
    out = []
    for proc in [root, *root.children(recursive=True)]:
        if proc.pid in skipped:
            continue
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out.append({"pid": proc.pid, "role": process_role(proc), "rss_mb": info.rss / 2**20,
                    "pss_mb": getattr(info, "pss", info.rss) / 2**20})
    return out


def memory_summary(processes: list[dict]) -> dict:
    """Totals and per-role sums of :func:`process_memory` rows."""
    roles: dict[str, dict] = {}
    for p in processes:
        entry = roles.setdefault(p["role"], {"count": 0, "rss_mb": 0.0, "pss_mb": 0.0})
        entry["count"] += 1
        entry["rss_mb"] += p["rss_mb"]
        entry["pss_mb"] += p["pss_mb"]
    return {"processes": len(processes), "rss_mb": sum(p["rss_mb"] for p in processes),
            "pss_mb": sum(p["pss_mb"] for p in processes), "by_role": roles}


def memory_table(summary: dict) -> str:
    rows = [(role, v["count"], fmt(v["rss_mb"], 0), fmt(v["pss_mb"], 0))
            for role, v in sorted(summary["by_role"].items(), key=lambda kv: -kv[1]["pss_mb"])]
    rows.append(("**total**", summary["processes"], fmt(summary["rss_mb"], 0), fmt(summary["pss_mb"], 0)))
    return markdown_table(["process (role)", "count", "RSS MB", "PSS MB"], rows)


def add_child_options(parser, *, timeout_s: float = 300) -> None:
    """The options of a benchmark that measures in fresh child processes of itself: the timeout
    of one child, and the hidden ones the parent passes (``--child``, the emulator's ``--port``,
    the child's ``--out`` JSON file)."""
    import argparse
    from pathlib import Path

    parser.add_argument("--timeout-s", type=float, default=timeout_s)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
