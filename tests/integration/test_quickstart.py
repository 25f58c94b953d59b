"""The original system's quick-start ("3. Basic Usage" of its README) runs unchanged but for the
import line, against the emulator, through the facades of ``api_model_management``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api_model_management.config._load import load_config, with_provider_base_urls
from api_model_management.emulator import Profile

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
