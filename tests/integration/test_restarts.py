"""Actors that restart keep their promises (issue 10): a restarted RateLimiter remembers its
window. Real Ray: the actor process is killed and Ray restarts it."""

from __future__ import annotations

import time

import pytest

from api_model_management.config import demo_config, override

pytestmark = pytest.mark.integration


def _answer(call, timeout_s: float = 60.0, what: str = "an answer"):
    """The first answer of ``call`` that is not "the actor is restarting"."""
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except (ActorUnavailableError, RayActorError, GetTimeoutError, AssertionError):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}") from None
            time.sleep(0.2)


def test_a_restarted_rate_limiter_remembers_its_window(ray_session, tmp_path):
    import ray

    from api_model_management.runtime._actors import RateLimiterActor

    config = override(demo_config(), settings={"data_dir": str(tmp_path)})
    model_id = "gpt-4.1-mini"
    rpm = config.model(model_id).rate_limits.requests_per_minute
    limiter = RateLimiterActor.remote(config, model_id)
    try:
        granted = 0
        for i in range(rpm):  # leases of one request each, until the window is full
            lease = ray.get(limiter.lease.remote(f"router-{i % 3}", 1, 10))
            granted += lease.requests
            if lease.requests == 0:
                break
        assert granted == rpm
        pids = [ray.get(limiter.pid.remote())]
        for kill in range(2):  # killed twice, restarted by Ray each time
            ray.kill(limiter, no_restart=False)

            def new_incarnation() -> int:
                pid = ray.get(limiter.pid.remote(), timeout=5)
                assert pid not in pids, "still the killed process"
                return pid

            pids.append(_answer(new_incarnation, what=f"the limiter back after kill {kill + 1}"))
            status = _answer(lambda: ray.get(limiter.status.remote(), timeout=5))
            assert status.requests_used == rpm
            again = _answer(lambda: ray.get(limiter.lease.remote("router-new", 1, 10), timeout=5))
            assert again.requests == 0 and again.retry_after_s > 0
    finally:
        ray.kill(limiter, no_restart=True)
