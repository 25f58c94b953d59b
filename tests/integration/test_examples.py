"""The examples run as documented (``python examples/<name>.py``) and print what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management.config._load import demo_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AGENTS = ("research", "coder", "reviewer", "planner")
AGENT_LINE = re.compile(r"^agent (\w+)\s+served by (.+?)\s+cost \$(\d+\.\d+)$", re.M)
STREAM_LINE = re.compile(r"^streamed (\d+) chunks \((\d+) chars\) from (\S+)$", re.M)
TOTAL_LINE = re.compile(r"^requests (\d+), failed (\d+), total cost \$(\d+\.\d+)$", re.M)


def _run_example(name: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    # The example starts its own Ray: never join the test session's (or any other) cluster.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    return subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_ray_agents_example_serves_every_agent_and_streams():
    done = _run_example("ray_agents.py")

    assert done.returncode == 0, done.stderr[-4000:]
    model_ids = {m.id for m in demo_config().models}
    served = {agent: (models, Decimal(cost)) for agent, models, cost in AGENT_LINE.findall(done.stdout)}
    assert set(served) == set(AGENTS), done.stdout
    for agent, (models, _) in served.items():
        assert models != "-" and set(models.split(", ")) <= model_ids, (agent, done.stdout)
    # the reviewer asked for Anthropic models only
    assert all(m.startswith("claude-") for m in served["reviewer"][0].split(", ")), done.stdout

    chunks, chars, stream_model = STREAM_LINE.search(done.stdout).groups()
    assert int(chunks) > 1 and int(chars) > 0 and stream_model in model_ids, done.stdout

    requests, failed, total = TOTAL_LINE.search(done.stdout).groups()
    assert (int(requests), int(failed)) == (6, 0), done.stdout
    assert Decimal(total) == sum((cost for _, cost in served.values()), Decimal(0))
    assert Decimal(total) > 0  # Anthropic is never free
