"""Real data the emulator replays: llmperf latency traces and routellm answer worlds.

The shared data folder is ``$AMM_SHARED_DATA`` if set, else ``../shared/data`` next to the
current directory or next to the repository checkout.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from ._profile import ProfileError

ENV_VAR = "AMM_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The shared data folder, or None when it cannot be found."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured)
        return path if path.is_dir() else None
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / ".." / "shared" / "data", repo_root / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_data_path(relative: str, what: str) -> Path:
    """An absolute path, or one under the shared data folder; ProfileError when absent."""
    path = Path(relative)
    if path.is_absolute():
        if not path.exists():
            raise ProfileError(f"{what} {path} does not exist")
        return path
    root = shared_data_dir()
    if root is None:
        raise ProfileError(
            f"{what} {relative!r} needs the shared data folder: set {ENV_VAR} or place it at ../shared/data"
        )
    for candidate in (root / relative, root / "llmperf" / relative):
        if candidate.exists():
            return candidate
    raise ProfileError(f"{what} {relative!r} not found under {root}")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    end_to_end_s: float
    ttft_s: float
    #: 429 for a rate-limited call, 500 for any other recorded failure, None for success.
    error_status: int | None


def load_trace(relative: str) -> tuple[TraceRecord, ...]:
    """Load an llmperf ``raw_data/individual`` JSON file."""
    path = resolve_data_path(relative, "trace file")
    try:
        rows = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"trace file {path}: not JSON ({exc})") from None
    records = []
    for row in rows:
        code = row.get("error_code")
        status = None if code is None else (429 if code == 429 else 500)
        e2e = float(row.get("end_to_end_latency_s") or 0.0)
        ttft = float(row.get("ttft_s") or 0.0)
        records.append(TraceRecord(e2e, min(ttft, e2e) if e2e else ttft, status))
    if not records:
        raise ProfileError(f"trace file {path} holds no requests")
    return tuple(records)


def prompt_key(prompt: str) -> bytes:
    """The lookup key of a prompt in an answer world (whitespace-insensitive at the ends)."""
    return hashlib.blake2b(prompt.strip().encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class WorldEntry:
    correct: dict[str, bool]
    responses: dict[str, str]
    multiple_choice: bool


def load_world(relative: str) -> dict[bytes, WorldEntry]:
    """Every routellm-format CSV under the folder: prompt -> per-column correctness (+ responses)."""
    folder = resolve_data_path(relative, "world_dir")
    files = sorted(folder.rglob("*.csv")) if folder.is_dir() else [folder]
    world: dict[bytes, WorldEntry] = {}
    csv.field_size_limit(16 * 1024 * 1024)
    for file in files:
        with file.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                entry = _world_entry(row)
                if entry is not None:
                    world[prompt_key(row["prompt"])] = entry
    if not world:
        raise ProfileError(f"world_dir {folder} holds no CSV rows with a 'prompt' column")
    return world


def _world_entry(row: dict[str, str]) -> WorldEntry | None:
    if not row.get("prompt"):
        return None
    correct: dict[str, bool] = {}
    responses: dict[str, str] = {}
    for column, value in row.items():
        if column == "prompt" or column is None:
            continue
        if column.endswith("_response"):
            responses[column.removesuffix("_response")] = value
        elif value in ("True", "False"):
            correct[column] = value == "True"
    multiple_choice = row["prompt"].rstrip().endswith("Answer:")
    return WorldEntry(correct, responses, multiple_choice)
