"""``amm serve``: an OpenAI- and Anthropic-compatible HTTP gateway with virtual keys, on the
router of this process (no Ray here; ``runtime`` adds the engine on a Ray system).

    gateway = Gateway(config, LocalEngine(config), keys=KeyRing(...), limits=KeyLimits(...))
    uvicorn.run(gateway.app)            # or: amm serve --config registry.json
"""

from ._app import Gateway
from ._engine import GatewayEngine, LocalEngine, share_of
from ._errors import HttpError, http_error
from ._keys import KeyLimits, KeyRing, KeyStatus, key_hash, new_key, presented_key
from ._metrics import Metrics
from ._routing import Router
from ._wire import GatewayRefusal, WireRequest

__all__ = [
    "Gateway",
    "GatewayEngine",
    "GatewayRefusal",
    "HttpError",
    "KeyLimits",
    "KeyRing",
    "KeyStatus",
    "LocalEngine",
    "Metrics",
    "Router",
    "WireRequest",
    "http_error",
    "key_hash",
    "new_key",
    "presented_key",
    "share_of",
]
