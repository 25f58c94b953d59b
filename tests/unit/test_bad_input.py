"""Bad input found while checking the original system item by item (issue 12, item 9): each
becomes one clear line (exit 2 on the command line). ``amm tune --out`` and ``amm replay`` with
several bad weights are in test_replay.py, ``amm --version`` in test_logging_levels.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management import ModelRequest
from api_model_management._clock import SYSTEM_CLOCK
from api_model_management.cli import app
from api_model_management.cli._errors import error_line
from api_model_management.config import config_from_dict, load_config
from api_model_management.errors import ConfigError, InvalidInput, NoEligibleModel
from api_model_management.selection._core import SelectorCore

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "config" / "model_registry.json"
DEMO = ROOT / "config" / "demo_registry.json"


def issues_for(changes: dict[str, object]) -> dict[str, str]:
    """The hint of each problem of the demo registry with ``changes`` (``model index.field`` or
    ``model index.rate_limits.field`` -> value), by path."""
    data = json.loads(DEMO.read_text())
    for where, value in changes.items():
        index, *path = where.split(".")
        target = data["models"][int(index)]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return {issue.path: issue.hint for issue in info.value.issues}


# -- a wrong type gets the hint of its field -----------------------------------------------------


def test_a_wrong_type_for_a_rate_limit_gets_no_price_hint() -> None:
    hints = issues_for({"0.rate_limits.requests_per_minute": "lots",
                        "1.rate_limits.tokens_per_minute": 1.5,
                        "2.cost_per_1k_input_tokens": "cheap"})
    assert hints["models[0].rate_limits.requests_per_minute"] == "use a whole number such as 60"
    assert hints["models[1].rate_limits.tokens_per_minute"] == "use a whole number such as 60"
    assert "prices are USD per 1k tokens" in hints["models[2].cost_per_1k_input_tokens"]


def test_other_numbers_get_a_plain_number_hint() -> None:
    data = json.loads(DEMO.read_text())
    data["settings"]["cache"] = {"ttl_s": "an hour"}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    [issue] = info.value.issues
    assert issue.path == "settings.cache.ttl_s" and issue.hint == "use a plain number such as 0.5"


# -- amm report --config names the problem -------------------------------------------------------


def report(tmp_path: Path, registry: str):
    path = tmp_path / "registry.json"
    path.write_text(registry)
    (tmp_path / "data" / "events").mkdir(parents=True, exist_ok=True)
    return CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path / "data"),
                                    "--config", str(path)]), path


def test_report_with_a_malformed_config_says_which_problem(tmp_path) -> None:
    result, path = report(tmp_path, '{"models": [,]}')
    assert result.exit_code == 2
    assert result.stderr == (f"error: invalid configuration {path}: $: invalid JSON at line 1, "
                             "column 13: Expecting value (hint: check the JSON syntax near that "
                             "position)\n")


def test_report_names_up_to_three_problems_and_counts_the_rest(tmp_path) -> None:
    data = json.loads(DEMO.read_text())
    for model in data["models"][:5]:
        model["cost_per_1k_input_tokens"] = -1
    result, path = report(tmp_path, json.dumps(data))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    line = result.stderr
    assert line.startswith(f"error: invalid configuration {path}: 5 problems: models[0]."
                           "cost_per_1k_input_tokens: Input should be greater than or equal to 0")
    assert "models[2].cost_per_1k_input_tokens" in line and "models[3]" not in line
    assert f"; and 2 more (`amm config validate {path}` lists them all)" in line


def test_error_line_of_other_errors() -> None:
    assert error_line(InvalidInput("bad thing\nsecond line")) == "bad thing"
    assert error_line(PermissionError(13, "Permission denied", "/x/y")) == "Permission denied: /x/y"
    assert error_line(ValueError()) == "ValueError"


# -- a prompt of only whitespace -----------------------------------------------------------------


@pytest.mark.parametrize("prompt", [" ", "   \n\t  "])
def test_a_prompt_of_only_whitespace_is_refused(prompt) -> None:
    with pytest.raises(InvalidInput) as info:
        ModelRequest(prompt=prompt)
    assert str(info.value) == "invalid ModelRequest: prompt: only whitespace (give the text to answer)"
    assert info.value.field == "prompt"


def test_a_bad_request_is_invalid_input_without_its_text() -> None:
    with pytest.raises(InvalidInput) as info:
        ModelRequest(prompt="the secret plan", system="more secret text", max_tokens=0,
                     messages=[{"role": "narrator", "content": "secret content"}])
    message = str(info.value)
    assert message == ("invalid ModelRequest: messages[0].role: Input should be 'system', 'user', "
                       "'assistant' or 'tool'; max_tokens: Input should be greater than 0")
    assert info.value.field == "messages[0].role"
    with pytest.raises(InvalidInput, match="a request needs a prompt or messages"):
        ModelRequest(system="the secret plan")
    assert ModelRequest(prompt=" padded ").prompt == " padded "  # text with spaces is kept


# -- NoEligibleModel: a short message, the reasons in a field ------------------------------------


def test_an_impossible_max_tokens_gives_a_short_message_and_every_reason() -> None:
    config = load_config(REAL)
    selector = SelectorCore(config, clock=SYSTEM_CLOCK)
    with pytest.raises(NoEligibleModel) as info:
        selector.select(ModelRequest(prompt="hi", max_tokens=10_000_000))
    message = str(info.value)
    assert "\n" not in message and len(message) < 200, message
    assert message.startswith(f"no eligible model among {len(config.models)}: ")
    assert message.endswith("; each model's reason is in .filtered")
    assert set(info.value.filtered) == {m.id for m in config.models}
    assert pickle.loads(pickle.dumps(info.value)).filtered == info.value.filtered


def test_the_message_names_the_most_common_reason() -> None:
    error = NoEligibleModel.from_reasons({"a": "disabled", "b": "max_tokens 900 > max output 100",
                                          "c": "max_tokens 900 > max output 200"})
    assert str(error) == ("no eligible model among 3: 2 like b (max_tokens 900 > max output 100), "
                          "1 for other reasons; each model's reason is in .filtered")
    assert str(NoEligibleModel.from_reasons({"a": "disabled"})) == "no eligible model (a: disabled)"
    assert str(NoEligibleModel.from_reasons({"a": "disabled", "b": "disabled"})) == (
        "no eligible model among 2: 2 like a (disabled); each model's reason is in .filtered")
