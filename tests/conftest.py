"""Test layers (style.md §5): unit and property tests must not start Ray; integration tests share
one Ray session (started once, sized for 2 cores) and talk to the emulator over loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("AMM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_data_or_skip() -> Path:
    """The real external data beside the checkout, or skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}); this test needs the real traces")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _disallow_ray_outside_integration(request, monkeypatch):
    """A unit or property test that starts Ray fails (as Ray Serve's ``disallow_ray_init``)."""
    if request.node.get_closest_marker("integration") is not None:
        return
    import sys

    if "ray" not in sys.modules:
        return
    ray = sys.modules["ray"]

    def _refuse(*args, **kwargs):
        raise RuntimeError("unit and property tests must not start Ray; mark the test integration")

    monkeypatch.setattr(ray, "init", _refuse)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session: 2 CPUs, no dashboard, shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
        )
    yield ray
    ray.shutdown()
