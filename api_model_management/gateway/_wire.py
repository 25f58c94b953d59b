"""What the two wire formats have in common: a parsed request before routing
(:class:`WireRequest`), the gateway's own refusals (:class:`GatewayRefusal`), and small
helpers for bodies and headers."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AMMError

#: Finish reasons as OpenAI's SDK types them (``ModelResponse.finish_reason`` is normalized).
OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                 "content_filter": "content_filter"}
#: The same as Anthropic's ``stop_reason``.
ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                  "content_filter": "refusal"}


_UNPRINTABLE = re.compile(r"[^ -~]")


class GatewayRefusal(AMMError):
    """A request the gateway refuses itself (bad body, auth, permission, size, unknown model):
    ``status``, the error ``kind`` (``invalid_request``, ``authentication``, ``permission``,
    ``not_found``, ``request_too_large``) and the ``param`` at fault, if any. The message names
    fields, never their values."""

    error_kind = "refused"
    status: int
    kind: str
    param: str | None
    code: str | None

    def __init__(self, message: str, *, status: int, kind: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, status=status, kind=kind, param=param, code=code)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayRefusal:
    return GatewayRefusal(message, status=400, kind="invalid_request", param=param, code=code)


@dataclass
class WireRequest:
    """A request as one wire format gave it, before routing: the ``ModelRequest`` fields it
    carries (messages, tools, sampling, ``max_tokens``), the ``model`` it names, whether it is
    streamed, its ``metadata`` and the top-level fields the gateway ignored."""

    model: str
    fields: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def model_name(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required: a model id, auto or an alias (GET /v1/models)",
                          param="model")
    return model.strip()


def flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", param=name)
    return value


def string_metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object", param="metadata")
    return metadata


@functools.lru_cache(maxsize=1024)
def fingerprint(model_id: str) -> str:
    """A stable ``system_fingerprint`` per served model."""
    return "fp_amm_" + hashlib.sha256(model_id.encode()).hexdigest()[:10]


def header_text(value: str, limit: int = 512) -> str:
    """``value`` as an HTTP header can carry it: printable ASCII on one line (typographic signs
    spelled out), at most ``limit`` characters."""
    text = value[:limit * 2]
    if not (text.isascii() and text.isprintable()):
        text = text.replace("−", "-").replace("×", "x").replace("≥", ">=").replace("≤", "<=")
        text = _UNPRINTABLE.sub("?", text)
    return text[:limit]
