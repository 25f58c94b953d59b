"""The test session's local Ray, started by the ``ray_session`` fixture (tests/conftest.py) and
started again by a module that needed a Ray of its own (tests/integration/test_cluster.py)."""

from __future__ import annotations


def start_session_ray() -> None:
    """A local Ray for the session: 2 CPUs, no dashboard (nothing if Ray is up already)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # a fresh one, never a cluster another process left running
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
        )
