"""The weights file the Selector loads: JSON written whole (temp file, then rename).

    {"weights": {"capability": .., "cost": .., "performance": .., "availability": ..},
     "weights_version": "tuned-...", "agent_weights": {"<agent_type>": {...}},
     "estimated": {...}, "provenance": {...}}

``estimated`` (what the replay estimated for these weights) and ``provenance`` (how they were made)
are free-form and optional; the rest is validated with ``config.SelectionWeights``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..config import SelectionWeights
from ._errors import BadWeightsFile

_KEYS = {"weights", "weights_version", "agent_weights", "estimated", "provenance"}


@dataclass(frozen=True)
class WeightsFile:
    """A weights file's contents."""

    weights: SelectionWeights
    weights_version: str
    agent_weights: dict[str, SelectionWeights] = field(default_factory=dict)
    estimated: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def write_weights_file(
    path: str | Path,
    weights: SelectionWeights,
    version: str,
    agent_weights: Mapping[str, SelectionWeights] | None = None,
    *,
    estimated: Mapping | None = None,
    provenance: Mapping | None = None,
) -> Path:
    """Write the weights file at ``path`` atomically (its folders are created); returns the path.
    ``BadWeightsFile`` naming ``path`` (never the temporary file) when it cannot be written; no
    temporary file is left behind."""
    if not version:
        raise BadWeightsFile("weights_version must not be empty", path=str(path))
    body = {
        "weights": weights.model_dump(),
        "weights_version": version,
        "agent_weights": {k: w.model_dump() for k, w in (agent_weights or {}).items()},
        "estimated": dict(estimated or {}),
        "provenance": dict(provenance or {}),
    }
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise BadWeightsFile(f"cannot write the weights file {path}: "
                             f"{exc.strerror or type(exc).__name__}", path=str(path)) from None
    return target


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read and validate a weights file; raises :class:`BadWeightsFile` with the reason: every
    problem of a file that is a JSON object, on one line (its ``problems`` lists them)."""
    try:
        body = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadWeightsFile(f"weights file {path} not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadWeightsFile(f"weights file {path} unreadable: {exc.__class__.__name__}",
                             path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise BadWeightsFile(f"weights file {path} is not JSON (line {exc.lineno})",
                             path=str(path)) from None
    if not isinstance(body, dict):
        raise BadWeightsFile(f"weights file {path}: expected a JSON object", path=str(path))
    problems: list[str] = []
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        problems.append(f"unknown keys {', '.join(unknown)}")
    version = body.get("weights_version")
    if not isinstance(version, str) or not version:
        problems.append("weights_version must be a non-empty string")
    agents = body.get("agent_weights") or {}
    if not isinstance(agents, dict):
        problems.append("agent_weights must be an object")
        agents = {}
    weights = _parse(problems, "weights", body.get("weights"))
    agent_weights = {k: _parse(problems, f"agent_weights.{k}", v) for k, v in agents.items()}
    estimated = _object(problems, "estimated", body.get("estimated"))
    provenance = _object(problems, "provenance", body.get("provenance"))
    if problems:
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise BadWeightsFile(f"weights file {path}: {count}{'; '.join(problems)}",
                             path=str(path), problems=problems)
    return WeightsFile(
        weights=_valid(weights),
        weights_version=str(version),
        agent_weights={k: _valid(w) for k, w in agent_weights.items()},
        estimated=estimated,
        provenance=provenance,
    )


def _parse(problems: list[str], where: str, value: object) -> SelectionWeights | None:
    """``value`` as weights, or None with each of its problems added to ``problems``."""
    if not isinstance(value, dict):
        problems.append(f"{where} must be an object")
        return None
    try:
        return SelectionWeights.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}.{loc}: {message}" if loc else f"{where}: {message}")
        return None


def _valid(weights: SelectionWeights | None) -> SelectionWeights:
    assert weights is not None  # a None was recorded as a problem, and problems raise first
    return weights


def _object(problems: list[str], where: str, value: object) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where} must be an object")
        return {}
    return value
