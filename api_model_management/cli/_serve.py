"""``amm serve`` (the HTTP gateway) and ``amm gateway-key new`` (a virtual key).

``amm serve --config PATH`` serves the registry's models to OpenAI and Anthropic SDKs on
127.0.0.1:4000 with the virtual keys of ``settings.gateway.keys``; ``--demo`` serves the demo
registry on the bundled emulator with one virtual key (``AMM_DEMO_GATEWAY_KEY``, generated and
printed once when unset). ``--ray`` runs the router embedded in a ``ModelManagement`` (local
Ray, or ``--address``) instead of the standalone one; ``--ray-serve`` deploys the gateway on
Ray Serve (``runtime._serve``: Serve's proxy on ``--host``/``--port``, replicas each holding a
router, ``--replicas N`` or autoscaling per ``settings.gateway.serve``). Nothing printed holds a
key, except the demo key that was generated for this run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..config import RegistryConfig, load_config, override
from ..errors import ComponentUnavailable, ConfigError
from ..gateway import GatewayEngine
from ._errors import print_error

DEMO_KEY_ENV = "AMM_DEMO_GATEWAY_KEY"
#: Aliases of the demo: selection under a cost cap, for code, for reasoning.
DEMO_ALIASES = {
    "auto:cheap": {"description": "the best model costing at most $0.002 a request",
                   "constraints": {"max_cost_per_request": "0.002"}},
    "auto:code": {"description": "selection with the coder agent type's weights",
                  "agent_type": "coder", "required_capabilities": ["code-generation"]},
    "auto:reasoning": {"description": "models that reason, of quality 0.85 or more",
                       "required_capabilities": ["reasoning"],
                       "constraints": {"min_quality": 0.85}},
}


def new_key_command(name: str, console: Console | None = None) -> int:
    """Print a new virtual key (once) and the ``settings.gateway.keys`` entry holding its hash."""
    import json

    from ..config import GatewayKey
    from ..gateway import new_key

    out = console or Console()
    try:
        GatewayKey(name=name, key_sha256="0" * 64)
    except ValueError:
        return print_error(f"key name {name!r}: letters, digits and _ . : - only (at most 64)")
    key, digest = new_key()
    out.print(f"key (shown once; give it to the client, keep it secret): {key}",
              highlight=False, soft_wrap=True)
    out.print(f"sha256: {digest}", highlight=False)
    out.print("add to settings.gateway.keys:", highlight=False)
    out.print(escape(json.dumps({"name": name, "key_sha256": digest, "agent_type": "default"})),
              highlight=False, soft_wrap=True)
    return 0


def serve_command(config_path: Path | None, *, host: str, port: int, workers: int,
                  data_dir: Path | None, demo: bool, ray: bool = False,
                  address: str | None = None, console: Console | None = None,
                  ray_serve: bool = False, replicas: int | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM; 0 after a graceful stop, 2 on bad input."""
    out = console or Console(soft_wrap=True, highlight=False)
    if demo == (config_path is not None):
        return print_error("give --config PATH, or --demo for the emulator and demo registry")
    if workers < 1:
        return print_error("--workers must be at least 1")
    if ray and workers > 1:
        return print_error("--ray serves from one process (the embedded router); leave --workers at 1")
    if ray_serve and (ray or workers > 1):
        return print_error("--ray-serve runs replicas on Ray Serve (--replicas N); leave out --ray "
                           "and --workers")
    if replicas is not None and not ray_serve:
        return print_error("--replicas is for --ray-serve (--workers for the standalone gateway)")
    serve_on = (ray_serve, replicas)
    try:
        if demo:
            return _serve_demo(host, port, workers, data_dir, ray, address, out, serve_on)
        config = load_config(config_path) if config_path is not None else None
        assert config is not None
        if data_dir is not None:
            config = override(config, settings={"data_dir": str(data_dir)})
        if not config.settings.gateway.keys:
            return print_error("no virtual keys: add settings.gateway.keys (`amm gateway-key new "
                               "NAME` prints one), or try `amm serve --demo`")
        return _run(config, host, port, workers, ray, address, out, env=None, serve_on=serve_on)
    except ImportError as exc:
        if ray_serve and "serve" in str(exc):
            return print_error("--ray-serve needs Ray Serve: pip install 'api-model-management[serve]'")
        raise
    except (ConfigError, ComponentUnavailable, OSError, ValueError) as exc:
        return print_error(exc)


def _serve_demo(host: str, port: int, workers: int, data_dir: Path | None, ray: bool,
                address: str | None, out: Console, serve_on: tuple[bool, int | None]) -> int:
    from ..config import demo_config, with_emulator_port
    from ..emulator.testing import EmulatorServer
    from ..gateway import new_key

    generated = None
    if not os.environ.get(DEMO_KEY_ENV, "").strip():
        generated, _ = new_key()
        os.environ[DEMO_KEY_ENV] = generated  # the workers inherit it; nothing writes it down
    folder = data_dir if data_dir is not None else Path(tempfile.mkdtemp(prefix="amm-serve-"))
    with EmulatorServer() as emulator:
        config = with_emulator_port(demo_config(), emulator.port)
        config = override(config, settings={"data_dir": str(folder), "gateway": {
            "keys": [{"name": "demo", "key_env": DEMO_KEY_ENV}], "aliases": DEMO_ALIASES}})
        for name, provider in config.providers.items():
            if provider.api_key_env:
                os.environ.setdefault(provider.api_key_env, f"demo-key-{name}")
        out.print(f"[bold]amm serve --demo[/]: {len(config.models)} models on the emulator "
                  f"({emulator.base_url}), event log in {folder}", highlight=False)
        if generated is not None:
            out.print(f"virtual key (generated for this run; set {DEMO_KEY_ENV} to choose "
                      f"one): {generated}", highlight=False, soft_wrap=True)
        else:
            out.print(f"virtual key: the value of {DEMO_KEY_ENV}", highlight=False)
        return _run(config, host, port, workers, ray, address, out, env=None,
                    key_hint=f"${DEMO_KEY_ENV}", serve_on=serve_on)


def _run(config: RegistryConfig, host: str, port: int, workers: int, ray: bool,
         address: str | None, out: Console, *, env: Mapping[str, str] | None,
         key_hint: str = "$AMM_KEY", serve_on: tuple[bool, int | None] = (False, None)) -> int:
    from ..gateway._server import ServeOptions, serve

    ray_serve, replicas = serve_on
    mode = "ray serve" if ray_serve else "ray" if ray else "standalone"
    units = (f"{replicas} replica{'s' * (replicas > 1)}" if replicas is not None
             else "autoscaling replicas" if ray_serve
             else f"{workers} worker{'s' * (workers > 1)}")

    def ready(bound_host: str, bound_port: int) -> None:
        base = f"http://{bound_host}:{bound_port}"
        out.print(f"amm serve: listening on {base} ({units}, {mode}); Ctrl-C stops",
                  highlight=False)
        out.print(f"  OpenAI SDK:    OpenAI(base_url=\"{base}/v1\", api_key=KEY)", highlight=False)
        out.print(f"  Anthropic SDK: Anthropic(base_url=\"{base}\", api_key=KEY)", highlight=False)
        out.print(f"  curl {base}/v1/chat/completions -H \"Authorization: Bearer {key_hint}\" "
                  "-H 'content-type: application/json' "
                  "-d '{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'",
                  highlight=False, soft_wrap=True)

    if ray_serve:
        from ..runtime._serve import serve_gateway

        code = serve_gateway(config, address=address, host=host, port=port, replicas=replicas,
                             on_ready=ready)
    else:
        factory = _ray_engine_factory(address) if ray else None
        code = serve(ServeOptions(config, host=host, port=port, workers=workers, env=env,
                                  on_ready=ready, engine_factory=factory))
    out.print("amm serve: stopped; events are in the log under "
              f"{config.settings.data_dir}", highlight=False)
    return code


def _ray_engine_factory(address: str | None) -> Callable[[RegistryConfig], GatewayEngine]:
    def build(config: RegistryConfig) -> GatewayEngine:
        from ..runtime._gateway import RayEngine

        return RayEngine.launch(config, address=address)

    return build
