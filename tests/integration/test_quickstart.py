"""The original system's quick-start ("3. Basic Usage" of its README) runs unchanged but for the
import line, against the emulator, through the facades of ``api_model_management``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management.config._load import load_config, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.events import EventLog

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO_REGISTRY = ROOT / "config" / "demo_registry.json"
ORIGINAL_README = ROOT.parent / "shared" / "original-readme.md"
ORIGINAL_IMPORT = "from agentic_sdlc.orchestration.api_model_management import"
NEW_IMPORT = (
    "from api_model_management import (ModelRegistry, ModelSelector, HealthChecker, RateLimiter, "
    "PerformanceMonitor, ModelRequest)"
)

# The quick-start, copied verbatim from the original README; only the import is changed (and the
# spaces on its blank lines are dropped, which Python ignores).
QUICKSTART = NEW_IMPORT.join(["""import asyncio
from pathlib import Path
""", """

async def main():
    # Initialize components
    registry = ModelRegistry(Path("config/model_registry.json"))
    registry.load_config()

    health_checker = HealthChecker(registry)
    await health_checker.start()

    rate_limiter = RateLimiter(registry)
    performance_monitor = PerformanceMonitor(Path("data/performance.db"))

    selector = ModelSelector(
        registry=registry,
        health_checker=health_checker,
        rate_limiter=rate_limiter,
        performance_monitor=performance_monitor
    )

    # Create request
    request = ModelRequest(
        prompt="Explain how async/await works in Python",
        parameters={"temperature": 0.7},
        task_id="task-001",
        agent_type="research",
        max_tokens=500
    )

    # Select optimal model
    selection = await selector.select_model(request, "research")
    print(f"Selected: {selection.model_id}")
    print(f"Score: {selection.suitability_score:.2f}")
    print(f"Reason: {selection.selection_reason}")

    # Cleanup
    await health_checker.stop()

if __name__ == "__main__":
    asyncio.run(main())
"""])


def _readme_snippet() -> str:
    text = ORIGINAL_README.read_text(encoding="utf-8")
    section = text.split("### 3. Basic Usage", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _with_new_import(snippet: str) -> str:
    """The snippet with its multi-line import statement replaced by the one-line new import."""
    return re.sub(re.escape(ORIGINAL_IMPORT) + r" \(.*?\)", NEW_IMPORT, snippet, count=1, flags=re.S)


def test_embedded_code_is_the_original_readme_with_only_the_import_changed():
    if not ORIGINAL_README.is_file():
        pytest.skip(f"the original README is not beside the checkout ({ORIGINAL_README})")
    def normalized(code: str) -> list[str]:
        return [line.rstrip() for line in code.splitlines()]

    assert normalized(_with_new_import(_readme_snippet())) == normalized(QUICKSTART)


def _write_registry(tmp_path: Path, emulator) -> dict[str, str]:
    """config/model_registry.json: the demo registry on the emulator's port; returns the demo keys."""
    config = load_config(DEMO_REGISTRY)
    config = with_provider_base_urls(
        config, {name: emulator.url_for(p.type) for name, p in config.providers.items()})
    (tmp_path / "config").mkdir(parents=True)
    (tmp_path / "config" / "model_registry.json").write_text(config.model_dump_json(indent=2), "utf-8")
    return {p.api_key_env: f"demo-key-{name}" for name, p in config.providers.items() if p.api_key_env}


def _run_quickstart(tmp_path: Path, emulator, monkeypatch) -> tuple[subprocess.CompletedProcess, dict]:
    keys = _write_registry(tmp_path, emulator)
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "quickstart.py"
    script.write_text(QUICKSTART, "utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done, keys


def _selected(stdout: str) -> str:
    found = re.search(r"^Selected: (\S+)$", stdout, re.M)
    assert found, stdout
    return found.group(1)


def test_quickstart_runs_with_only_the_import_changed(tmp_path, emulator, monkeypatch):
    done, keys = _run_quickstart(tmp_path, emulator, monkeypatch)

    assert keys and all(k.startswith("AMM_DEMO_") for k in keys)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    model_ids = {m["id"] for m in json.loads(DEMO_REGISTRY.read_text("utf-8"))["models"]}
    selected = _selected(done.stdout)
    assert selected in model_ids, done.stdout
    score = re.search(r"^Score: (\d+\.\d\d)$", done.stdout, re.M)
    assert score and 0 < float(score.group(1)) <= 1, done.stdout
    reason = re.search(r"^Reason: (.+)$", done.stdout, re.M)
    assert reason and selected in reason.group(1), done.stdout
    for value in keys.values():
        assert value not in done.stdout + done.stderr


def test_quickstart_selection_follows_the_health_checks(tmp_path, fresh_emulator, monkeypatch):
    """The HealthChecker really probed the providers: a model the provider stops listing is not
    selected any more."""
    first, _ = _run_quickstart(tmp_path / "a", fresh_emulator, monkeypatch)
    chosen = load_config(DEMO_REGISTRY).model(_selected(first.stdout))
    provider = "gemini" if chosen.provider == "google" else chosen.provider
    listed = [m.wire_name for m in load_config(DEMO_REGISTRY).models
              if m.provider == chosen.provider and m.id != chosen.id]
    fresh_emulator.set_profile(Profile.model_validate({"catalog": {provider: listed}}))

    second, _ = _run_quickstart(tmp_path / "b", fresh_emulator, monkeypatch)

    assert _selected(second.stdout) != chosen.id, second.stdout


# ---------------------------------------------------------------------------------------------
# Issue 12, "Done when": the quick-start, the ModelOptimizer integration and the metrics snippet,
# verbatim but for the import line, against the original's own config file, with only
# OPENAI_API_KEY and OPENAI_BASE_URL set.

#: The original README's config/model_registry.json, as written (a models list, no providers).
ORIGINAL_REGISTRY = """{
  "models": [
    {
      "id": "gpt-4-turbo",
      "provider": "openai",
      "name": "GPT-4 Turbo",
      "capabilities": ["text-generation", "code-generation", "analysis"],
      "cost_per_1k_input_tokens": 0.01,
      "cost_per_1k_output_tokens": 0.03,
      "rate_limits": {
        "requests_per_minute": 500,
        "tokens_per_minute": 150000
      },
      "context_window": 128000,
      "average_response_time_ms": 2000,
      "enabled": true
    }
  ]
}
"""
ORIGINAL_INTEGRATION_IMPORT = (
    "from agentic_sdlc.orchestration.api_model_management.model_optimizer_integration import"
)
#: The one line that changes (``AgentType`` came from the original's own models module).
NEW_INTEGRATION_IMPORT = (
    "from api_model_management import ModelOptimizerIntegration, APIModelAssignment, AgentType"
)
#: "Integration with ModelOptimizer", verbatim but for its import.
INTEGRATION = NEW_INTEGRATION_IMPORT + """

# Initialize integration
integration = ModelOptimizerIntegration(
    model_selector=selector,
    failover_manager=failover_manager,
    performance_monitor=performance_monitor,
    cost_tracker=cost_tracker
)

# Get base assignment from ModelOptimizer
base_assignment = model_optimizer.select_model_for_agent(
    agent_type=AgentType.SA,
    task=task
)

# Enhance with API selection
api_assignment = await integration.select_model_for_agent(
    agent_type=AgentType.SA,
    task=task,
    base_assignment=base_assignment
)

# Use the selected model
model_id = api_assignment.selected_model_id
"""
#: "Metrics", verbatim.
METRICS = """# Get performance summary
summary = await integration.get_performance_summary(
    agent_type=AgentType.SA,
    window_hours=24
)

# Access specific metrics
print(f"Total requests: {summary['total_requests']}")
print(f"Total cost: ${summary['total_cost']:.2f}")
print(f"Success rate: {summary['average_success_rate']:.1%}")
"""

#: The pipeline around the two snippets: what the original README leaves to its reader (the
#: components of the quick-start, a FailoverManager and a CostTracker sharing them, the
#: pipeline's own optimizer and task), then one request run with the model assigned.
PIPELINE = '''import asyncio
from pathlib import Path
from types import SimpleNamespace

from api_model_management import (CostTracker, FailoverManager, HealthChecker, ModelRegistry,
                                  ModelRequest, ModelSelector, PerformanceMonitor, RateLimiter)


class ModelOptimizer:
    """The pipeline's own optimizer (the original's ModelAssignment has these fields)."""

    def select_model_for_agent(self, agent_type, task):
        return SimpleNamespace(role_type=agent_type, model_tier="strategic",
                               recommended_model="gpt-4-turbo", fallback_model="gpt-4-turbo")


async def main():
    registry = ModelRegistry(Path("config/model_registry.json"))
    registry.load_config()
    health_checker = HealthChecker(registry)
    await health_checker.start()
    rate_limiter = RateLimiter(registry)
    performance_monitor = PerformanceMonitor(Path("data/performance.db"))
    selector = ModelSelector(registry=registry, health_checker=health_checker,
                             rate_limiter=rate_limiter, performance_monitor=performance_monitor)
    cost_tracker = CostTracker(registry, data_dir="data")
    failover_manager = FailoverManager(model_selector=selector, cost_tracker=cost_tracker,
                                       max_retries=3)
    model_optimizer = ModelOptimizer()
    task = SimpleNamespace(id="task-sa-001",
                           description="Propose service boundaries for a billing system")

{integration}
    print(f"Assigned: {{model_id}} ({{api_assignment.selection_reason}})")
    response = await failover_manager.execute(ModelRequest(
        prompt=task.description, task_id=task.id, agent_type=AgentType.SA, model_id=model_id,
        max_tokens=300))
    print(f"Answered by: {{response.model_id}}")

{metrics}
    await failover_manager.aclose()
    await health_checker.stop()


asyncio.run(main())
'''


def _indented(code: str) -> str:
    return "".join(f"    {line}" if line.strip() else line for line in code.splitlines(True))


def _original_block(heading: str) -> str:
    text = ORIGINAL_README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```(?:python|json)\n(.*?)```", section, re.S).group(1)


def test_the_embedded_snippets_are_the_original_readme_with_only_the_import_changed():
    if not ORIGINAL_README.is_file():
        pytest.skip(f"the original README is not beside the checkout ({ORIGINAL_README})")

    def normalized(code: str) -> list[str]:
        return [line.rstrip() for line in code.splitlines()]

    integration = re.sub(re.escape(ORIGINAL_INTEGRATION_IMPORT) + r" \(.*?\)",
                         NEW_INTEGRATION_IMPORT, _original_block("## Integration with ModelOptimizer"),
                         count=1, flags=re.S)
    assert normalized(integration) == normalized(INTEGRATION)
    assert normalized(_original_block("### Metrics")) == normalized(METRICS)
    registry = _original_block("Configure models in `config/model_registry.json`:")
    assert json.loads(registry) == json.loads(ORIGINAL_REGISTRY)


def _only_openai_env(emulator) -> tuple[dict[str, str], str]:
    """The process environment without any provider or system variable, plus OPENAI_API_KEY and
    OPENAI_BASE_URL (the emulator)."""
    drop = re.compile(r"(_API_KEY|_BASE_URL|_KEY)$|^(OLLAMA_HOST|AMM_.*|API_MODEL_.*)$")
    env = {name: value for name, value in os.environ.items() if not drop.search(name)}
    key = "sk-test-original-quickstart-4c1d"
    env.update(OPENAI_API_KEY=key, OPENAI_BASE_URL=emulator.url_for("openai"))
    return env, key


def _run(script: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_original_readme_runs_against_its_own_config(tmp_path, fresh_emulator):
    # the emulator knows (only) the model the original config names
    fresh_emulator.set_profile(Profile.model_validate(
        {"catalog": {"openai": ["gpt-4-turbo"]}, "strict_models": True}))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "model_registry.json").write_text(ORIGINAL_REGISTRY, "utf-8")
    env, key = _only_openai_env(fresh_emulator)
    quickstart = tmp_path / "quickstart.py"
    quickstart.write_text(QUICKSTART, "utf-8")
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(PIPELINE.format(integration=_indented(INTEGRATION),
                                        metrics=_indented(METRICS)), "utf-8")

    first = _run(quickstart, tmp_path, env)
    second = _run(pipeline, tmp_path, env)

    assert _selected(first.stdout) == "gpt-4-turbo"
    assert re.search(r"^Score: 0\.\d\d$", first.stdout, re.M), first.stdout
    assert re.search(r"^Assigned: gpt-4-turbo \(.*base assignment's choice", second.stdout, re.M)
    assert "Answered by: gpt-4-turbo" in second.stdout
    assert re.search(r"^Total requests: 1$", second.stdout, re.M), second.stdout
    assert re.search(r"^Success rate: 100\.0%$", second.stdout, re.M), second.stdout
    # the request, its cost and the health checks reached the log, under the agent type's value
    log = EventLog(tmp_path / "data")
    (completed,) = log.read("RequestCompleted")
    assert (completed.model_id, completed.agent_type, completed.task_id) == (
        "gpt-4-turbo", "solution_architect", "task-sa-001")
    assert completed.cost_usd > 0
    total = re.search(r"^Total cost: \$(\d+\.\d\d)$", second.stdout, re.M)
    assert total and Decimal(total.group(1)) == completed.cost_usd.quantize(Decimal("0.01"))
    assert any(e.provider == "openai" for e in log.read("HealthChecked"))
    # the key never left the environment
    assert key not in first.stdout + first.stderr + second.stdout + second.stderr
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
