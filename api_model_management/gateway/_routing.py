"""From an HTTP request to a ``ModelRequest``: which model or selection, for which agent type,
at what priority, needing what, under which constraints.

- ``model`` names a registry model (by id, or by its name on the provider's wire): the request
  pins it, with its configured ``fallbacks`` (``ModelRequest.use_fallbacks``: when the pinned
  model is not usable, or its call fails before any text was sent, its fallbacks the key may use
  serve the request, in their order). ``auto`` lets the selector choose; an alias (``settings.gateway.aliases``) sets what
  it defines (agent type, priority, capabilities, models, constraints) and lets it choose.
- The virtual key gives the defaults (agent type, priority, capabilities, constraints) and its
  ``allowed_models`` (a pin outside them: 403; selection stays inside them).
- ``metadata`` of the body, then ``x-amm-*`` headers, override the key's agent type, priority
  and task id and add capabilities and constraints, when the key ``allow_overrides``.
  Constraints only ever tighten: lists are joined, bounds take the stricter value.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .._request import ModelRequest, SelectionConstraints
from ..config import GatewayAlias, GatewayConstraints, GatewayKey, RegistryConfig
from ._wire import GatewayRefusal, WireRequest, bad_request

AUTO = "auto"
_PRIORITIES = ("low", "normal", "medium", "high", "critical")
#: Overrides a request may carry, as ``x-amm-<name>`` headers or ``metadata`` keys (``-`` or
#: ``_``): name -> the field it sets.
OVERRIDES = ("agent-type", "priority", "task-id", "capabilities", "max-cost-usd",
             "max-latency-ms", "min-quality", "allowed-providers", "excluded-providers",
             "excluded-models", "timeout-s", "cache")


class Router:
    """Resolves requests against one registry and its gateway settings."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.aliases = dict(config.settings.gateway.aliases)
        self.default_max_tokens = config.settings.gateway.default_max_tokens
        #: key name -> (the key, its constraints as a request carries them)
        self._plain: dict[str, tuple[GatewayKey, SelectionConstraints]] = {}
        self._ids = {m.id: m.id for m in config.models}
        for m in config.models:
            self._ids.setdefault(m.wire_name, m.id)

    def model_names(self, key: GatewayKey) -> list[tuple[str, str]]:
        """``(name, owner)`` of every model name ``key`` may ask for: its usable registry models
        (owner: the provider), ``auto`` and the aliases (owner ``amm``)."""
        allowed = key.allowed_models
        models = [(m.id, m.provider) for m in self.config.models
                  if m.enabled and (allowed is None or m.id in allowed)]
        return models + [(AUTO, "amm")] + [(name, "amm") for name in sorted(self.aliases)]

    def request(self, wire: WireRequest, key: GatewayKey, headers: Mapping[str, str],
                request_id: str) -> ModelRequest:
        """The ``ModelRequest`` for ``wire`` sent with ``key``; ``GatewayRefusal`` (400, 403,
        404) or ``InvalidInput`` (400, naming the field) when it cannot be served."""
        fields = dict(wire.fields)
        fields.setdefault("max_tokens", self.default_max_tokens)
        fields["request_id"] = request_id
        fields["agent_type"] = key.agent_type
        fields["priority"] = key.priority
        capabilities = ["text-generation", *key.required_capabilities]
        constraints = [key.constraints]
        allowed = key.allowed_models
        pinned: str | None = None
        if wire.model == AUTO:
            pass
        elif wire.model in self.aliases:
            alias = self.aliases[wire.model]
            _apply_alias(alias, fields, capabilities, constraints)
            allowed = _intersect(allowed, alias.models)
        else:
            pinned = self._pinned(wire.model, key)
        overrides = _overrides(wire.metadata, headers)
        if overrides and not key.allow_overrides:
            raise GatewayRefusal(f"virtual key {key.name!r} does not allow x-amm-* overrides "
                                 f"({', '.join(sorted(overrides))})", status=403,
                                 kind="permission", param=sorted(overrides)[0])
        _apply_overrides(overrides, fields, capabilities, constraints)
        fields["required_capabilities"] = tuple(dict.fromkeys(capabilities))
        if len(constraints) == 1 and allowed is key.allowed_models:  # the key's own: kept
            plain = self._plain.get(key.name)
            if plain is None or plain[0] is not key:
                plain = self._plain[key.name] = (key, _constraints(constraints, allowed))
            fields["constraints"] = plain[1]
        else:
            fields["constraints"] = _constraints(constraints, allowed)
        if pinned is not None:
            fields["model_id"] = pinned
            fields["use_fallbacks"] = True
        return ModelRequest(**fields)

    def _pinned(self, name: str, key: GatewayKey) -> str:
        model_id = self._ids.get(name)
        if model_id is None:
            raise GatewayRefusal(
                f"unknown model {name!r}: use a model id from GET /v1/models, {AUTO!r} or an "
                "alias", status=404, kind="not_found", param="model", code="model_not_found")
        if key.allowed_models is not None and model_id not in key.allowed_models:
            raise GatewayRefusal(f"virtual key {key.name!r} may not use model {model_id!r}",
                                 status=403, kind="permission", param="model",
                                 code="model_not_allowed")
        return model_id


def _intersect(a: list[str] | None, b: list[str] | None) -> list[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return [m for m in a if m in b]


def _apply_alias(alias: GatewayAlias, fields: dict[str, Any], capabilities: list[str],
                 constraints: list[GatewayConstraints]) -> None:
    if alias.agent_type is not None:
        fields["agent_type"] = alias.agent_type
    if alias.priority is not None:
        fields["priority"] = alias.priority
    capabilities.extend(alias.required_capabilities)
    constraints.append(alias.constraints)


def _overrides(metadata: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """The overrides a request carries: ``metadata`` keys (``agent_type`` or ``agent-type``),
    then ``x-amm-*`` headers, which win."""
    found: dict[str, str] = {}
    if metadata:
        for name in OVERRIDES:
            for key in (name, name.replace("-", "_"), f"amm_{name.replace('-', '_')}"):
                value = metadata.get(key)
                if value is not None:
                    found[name] = str(value)
    if isinstance(headers, dict):  # the gateway's: one pass for the x-amm-* names
        if any(h.startswith("x-amm-") for h in headers):
            for name in OVERRIDES:
                header = headers.get(f"x-amm-{name}")
                if header is not None:
                    found[name] = header
        return found
    for name in OVERRIDES:
        header = headers.get(f"x-amm-{name}")
        if header is not None:
            found[name] = header
    return found


def _apply_overrides(overrides: Mapping[str, str], fields: dict[str, Any],
                     capabilities: list[str], constraints: list[GatewayConstraints]) -> None:
    if "agent-type" in overrides:
        fields["agent_type"] = _text(overrides["agent-type"], "agent-type")
    if "priority" in overrides:
        priority = overrides["priority"].strip().lower()
        if priority not in _PRIORITIES:
            raise bad_request(f"x-amm-priority must be one of {', '.join(_PRIORITIES)}",
                              param="x-amm-priority")
        fields["priority"] = priority
    if "task-id" in overrides:
        fields["task_id"] = _text(overrides["task-id"], "task-id")
    if "timeout-s" in overrides:
        fields["timeout_s"] = _number(overrides["timeout-s"], "timeout-s")
    if "cache" in overrides:
        fields["cacheable"] = _boolean(overrides["cache"], "cache")
    capabilities.extend(_names(overrides.get("capabilities")))
    limits: dict[str, Any] = {}
    if "max-cost-usd" in overrides:
        limits["max_cost_per_request"] = _money(overrides["max-cost-usd"], "max-cost-usd")
    if "max-latency-ms" in overrides:
        limits["max_latency_ms"] = _number(overrides["max-latency-ms"], "max-latency-ms")
    if "min-quality" in overrides:
        limits["min_quality"] = _number(overrides["min-quality"], "min-quality")
    if "allowed-providers" in overrides:
        limits["allowed_providers"] = _names(overrides["allowed-providers"])
    for name in ("excluded-providers", "excluded-models"):
        if name in overrides:
            limits[name.replace("-", "_")] = _names(overrides[name])
    if limits:
        try:
            constraints.append(GatewayConstraints(**limits))
        except ValueError:
            raise bad_request("an x-amm-* constraint is out of range (max-cost-usd >= 0, "
                              "max-latency-ms > 0, min-quality in [0, 1])",
                              param="x-amm-constraints") from None


def _constraints(parts: list[GatewayConstraints], allowed: list[str] | None) -> SelectionConstraints:
    """The strictest combination of every source's constraints."""
    allowed_providers: list[str] | None = None
    for c in parts:
        allowed_providers = _intersect(allowed_providers, c.allowed_providers)
    costs = [c.max_cost_per_request for c in parts if c.max_cost_per_request is not None]
    latencies = [c.max_latency_ms for c in parts if c.max_latency_ms is not None]
    qualities = [c.min_quality for c in parts if c.min_quality is not None]
    return SelectionConstraints(
        allowed_providers=tuple(allowed_providers) if allowed_providers is not None else None,
        excluded_providers=tuple(dict.fromkeys(p for c in parts for p in c.excluded_providers)),
        allowed_models=tuple(allowed) if allowed is not None else None,
        excluded_models=tuple(dict.fromkeys(m for c in parts for m in c.excluded_models)),
        max_cost_per_request=min(costs) if costs else None,
        max_latency_ms=min(latencies) if latencies else None,
        min_quality=max(qualities) if qualities else None,
    )


def _text(value: str, name: str) -> str:
    value = value.strip()
    if not value or len(value) > 128:
        raise bad_request(f"x-amm-{name} must be 1 to 128 characters", param=f"x-amm-{name}")
    return value


def _names(value: str | None) -> list[str]:
    if value is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _number(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise bad_request(f"x-amm-{name} must be a number", param=f"x-amm-{name}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise bad_request(f"x-amm-{name} must be a finite number", param=f"x-amm-{name}")
    return number


def _money(value: str, name: str) -> Decimal:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise bad_request(f"x-amm-{name} must be an amount in USD", param=f"x-amm-{name}") from None
    if not amount.is_finite():
        raise bad_request(f"x-amm-{name} must be a finite amount", param=f"x-amm-{name}")
    return amount


def _boolean(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise bad_request(f"x-amm-{name} must be true or false", param=f"x-amm-{name}")
