"""``amm serve`` and ``amm gateway-key new`` without serving: what they refuse (one line, exit
2, nothing bound) and what they print; a worker's app built from its spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from api_model_management.cli import app
from api_model_management.config import GatewayKey, demo_config
from api_model_management.gateway import key_hash
from api_model_management.gateway._server import SPEC_ENV, build_gateway, key_spend_path, worker_app

pytestmark = pytest.mark.unit


def registry_file(tmp_path: Path, gateway: dict) -> Path:
    data = demo_config().model_dump(mode="json")
    data["settings"]["data_dir"] = str(tmp_path / "data")
    data["settings"]["gateway"] = gateway
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data))
    return path


def test_a_new_key_is_printed_once_with_the_entry_holding_its_hash() -> None:
    result = CliRunner().invoke(app, ["gateway-key", "new", "ci-bot"])
    assert result.exit_code == 0
    key = re.search(r"keep it secret\): (amm-\S+)", result.output).group(1)  # type: ignore[union-attr]
    assert result.output.count(key) == 1
    entry = json.loads(result.output.strip().splitlines()[-1])
    assert entry["name"] == "ci-bot" and entry["key_sha256"] == key_hash(key)
    GatewayKey(**entry)  # the entry is valid as printed
    refused = CliRunner().invoke(app, ["gateway-key", "new", "bad name!"])
    assert refused.exit_code == 2 and "letters, digits" in refused.output


@pytest.mark.parametrize("args, gateway, message", [
    ([], None, "give --config PATH, or --demo"),
    (["--demo", "--config", "x.json"], None, "give --config PATH, or --demo"),
    (["--ray", "--workers", "2"], {"keys": [{"name": "a", "key_env": "K"}]}, "--ray serves from one process"),
    ([], {"keys": []}, "no virtual keys"),
    ([], {"keys": [{"name": "a", "key_env": "AMM_TEST_UNSET_KEY"}]},
     "settings.gateway.keys[0].key_env: the variable AMM_TEST_UNSET_KEY is not set"),
    ([], {"keys": [{"name": "a", "key_sha256": "sk-pasted-key"}]}, "settings.gateway.keys[0].key_sha256"),
])
def test_amm_serve_refuses_bad_input_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 args: list[str], gateway: dict | None,
                                                 message: str) -> None:
    monkeypatch.delenv("AMM_TEST_UNSET_KEY", raising=False)
    config = ["--config", str(registry_file(tmp_path, gateway))] if gateway is not None else []
    result = CliRunner().invoke(app, ["serve", *config, *args, "--port", "0"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "sk-pasted-key" not in result.output


def test_a_workers_app_comes_from_its_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = demo_config().model_copy(update={"settings": demo_config().settings.model_copy(
        update={"data_dir": str(tmp_path / "data")})})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": config.model_dump(mode="json"), "workers": 4,
                                "probe": False, "run_dir": str(tmp_path / "run")}))
    monkeypatch.setenv(SPEC_ENV, str(spec))
    asgi = worker_app()
    assert callable(asgi)
    gateway = build_gateway(config, _Idle(), share=0.25, env={})
    assert gateway.limits._share == pytest.approx(0.25)  # noqa: SLF001 - the share it was given
    assert key_spend_path(config) == tmp_path / "data" / "state" / "gateway-key-spend.jsonl"


class _Idle:
    mode = "test"


def test_new_key_command_writes_to_the_console_given() -> None:
    from api_model_management.cli._serve import new_key_command

    console = Console(record=True, width=200)
    assert new_key_command("team.a", console) == 0
    assert "sha256: " in console.export_text()
