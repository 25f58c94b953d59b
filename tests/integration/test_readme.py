"""The README's Python blocks run as written, against the emulator (the config file they name is
the demo registry pointed at the test emulator; the keys are the demo keys)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from api_model_management.config import load_config, with_provider_base_urls

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S)


def test_the_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, ray_session, emulator, tmp_path, monkeypatch):
    config = load_config(ROOT / "config" / "demo_registry.json")
    config = with_provider_base_urls(
        config, {name: emulator.url_for(p.type) for name, p in config.providers.items()})
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "model_registry.json").write_text(config.model_dump_json(), "utf-8")
    for name, p in config.providers.items():
        if p.api_key_env:
            monkeypatch.setenv(p.api_key_env, f"demo-key-{name}")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__main__"})  # noqa: S102
    assert out.getvalue().strip(), "the block printed nothing"
    assert "demo-key-" not in out.getvalue()
