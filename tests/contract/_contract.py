"""What the port contract suites share: running a scenario, configs for the actors of the Ray
variants, and the actors a test started (killed at its end, so the session stays small)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from api_model_management.config import RegistryConfig
from api_model_management.config._load import demo_config, override

T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a fresh event loop."""
    return asyncio.run(scenario)


def config_in(data_dir: Path, **settings: Any) -> RegistryConfig:
    """The demo config, its actors writing under ``data_dir``, with ``settings`` merged in."""
    return override(demo_config(), settings={"data_dir": str(data_dir), **settings})


def with_rate_limits(config: RegistryConfig, model_id: str, rpm: int, tpm: int) -> RegistryConfig:
    """``config`` with one model's RPM and TPM replaced."""
    models = [m.model_dump(mode="python") for m in config.models]
    for model in models:
        if model["id"] == model_id:
            model["rate_limits"] = {"requests_per_minute": rpm, "tokens_per_minute": tpm}
    return override(config, models=models)


class Actors:
    """The Ray actors one test started."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def start(self, actor_class: Any, *args: Any) -> Any:
        handle = actor_class.remote(*args)
        self.handles.append(handle)
        return handle


@contextmanager
def ray_actors() -> Iterator[Actors]:
    """Actors started inside are killed (``ray.kill``) on the way out."""
    import ray

    actors = Actors()
    try:
        yield actors
    finally:
        for handle in actors.handles:
            ray.kill(handle)
