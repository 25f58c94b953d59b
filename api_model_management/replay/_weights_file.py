"""The weights file the Selector loads: JSON written whole (temp file, then rename).

    {"weights": {"capability": .., "cost": .., "performance": .., "availability": ..},
     "weights_version": "tuned-...", "agent_weights": {"<agent_type>": {...}},
     "estimated": {...}, "provenance": {...}}

``estimated`` (what the replay estimated for these weights) and ``provenance`` (how they were made)
are free-form and optional; the rest is validated with ``config.SelectionWeights``.
"""

from __future__ import annotations

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
    """Write the weights file at ``path`` atomically; returns the path."""
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
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temp, target)
    return target


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read and validate a weights file; raises :class:`BadWeightsFile` with the reason."""
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
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise BadWeightsFile(f"weights file {path}: unknown keys {', '.join(unknown)}",
                             path=str(path))
    version = body.get("weights_version")
    if not isinstance(version, str) or not version:
        raise BadWeightsFile(f"weights file {path}: weights_version must be a non-empty string",
                             path=str(path))
    agents = body.get("agent_weights") or {}
    if not isinstance(agents, dict):
        raise BadWeightsFile(f"weights file {path}: agent_weights must be an object",
                             path=str(path))
    return WeightsFile(
        weights=_parse(path, "weights", body.get("weights")),
        weights_version=version,
        agent_weights={k: _parse(path, f"agent_weights.{k}", v) for k, v in agents.items()},
        estimated=_object(path, "estimated", body.get("estimated")),
        provenance=_object(path, "provenance", body.get("provenance")),
    )


def _parse(path: str | Path, where: str, value: object) -> SelectionWeights:
    if not isinstance(value, dict):
        raise BadWeightsFile(f"weights file {path}: {where} must be an object", path=str(path))
    try:
        return SelectionWeights.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        detail = f"{where}.{loc}" if loc else where
        raise BadWeightsFile(f"weights file {path}: {detail}: {first['msg']}",
                             path=str(path)) from None


def _object(path: str | Path, where: str, value: object) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadWeightsFile(f"weights file {path}: {where} must be an object", path=str(path))
    return value
