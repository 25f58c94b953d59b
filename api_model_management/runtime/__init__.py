"""Everything that touches Ray, and nothing else does: the one wrapper for Ray calls
(``_ray``), the actor shells around the cores (``_shells``, ``_router``), where ``ray.remote``
is applied and the actors are started (``_actors``), the Ray side of the router's ports
(``_ports``), the router embedded in the caller's process (``_embedded``) and ``ModelManagement``
(``_system``), and the gateway's deployment on Ray Serve (``_serve``).

Imported on first use (PEP 562): importing this package does not import Ray until one of these
names is used.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

_EXPORTS = {
    "ActorHandles": "._actors",
    "start_actors": "._actors",
    "EmbeddedRouter": "._embedded",
    "RayBackend": "._ports",
    "RouterShell": "._router",
    "ModelManagement": "._system",
    "gateway_app": "._serve",
    "serve_gateway": "._serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value
    return value


if _TYPE_CHECKING:
    from ._actors import ActorHandles, start_actors
    from ._embedded import EmbeddedRouter
    from ._ports import RayBackend
    from ._router import RouterShell
    from ._serve import gateway_app, serve_gateway
    from ._system import ModelManagement
