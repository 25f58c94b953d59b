"""``ModelManagement.start`` applies the log level in this process and in every actor: real Ray,
the actors of design §3 (no provider calls are made)."""

from __future__ import annotations

import logging
import uuid

import pytest

from api_model_management.config._load import demo_config, override
from api_model_management.config._logging import LEVEL_ENV, PACKAGE_LOGGER

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}


def test_start_logs_at_the_environment_level_here_and_in_every_actor(ray_session, tmp_path):
    from api_model_management.runtime._system import ModelManagement

    def logging_state(shell: object) -> tuple[int, int]:
        """Run inside an actor (pickled by value: defined in the test): its package logger's
        level and how many console handlers it has."""
        logger = logging.getLogger(PACKAGE_LOGGER)
        return logger.level, sum(getattr(h, "_amm_console", False) for h in logger.handlers)

    config = override(demo_config(), settings={"data_dir": str(tmp_path), "log_level": "ERROR",
                                               "routers": {"replicas": 1}})
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.NOTSET)
    mm = ModelManagement.start(config, env={**KEYS, LEVEL_ENV: "debug"},
                               name_prefix=f"log-{uuid.uuid4().hex[:8]}")
    try:
        assert logging.getLogger(PACKAGE_LOGGER).level == logging.DEBUG
        assert mm.config.settings.log_level == "DEBUG"  # what the actors were given
        named = mm.handles.named()
        states = ray_session.get([h.__ray_call__.remote(logging_state) for _, h in named])
        assert {name: state for (name, _), state in zip(named, states, strict=True)} == {
            name: (logging.DEBUG, 1) for name, _ in named
        }
        assert {"EventSink", "CostLedger", "Cache", "Selector", "Router 0"} <= {n for n, _ in named}
    finally:
        mm.shutdown()
