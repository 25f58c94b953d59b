"""The gateway's settings block (``settings.gateway``): virtual keys and aliases are checked
once, with paths, and never echo what was written where a hash or a variable's name belongs."""

from __future__ import annotations

import pytest

from api_model_management.config import GatewayKey, demo_config, override
from api_model_management.errors import ConfigError

pytestmark = pytest.mark.unit

HASH = "a" * 64


def issues(gateway: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        override(demo_config(), settings={"gateway": gateway})
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_a_key_names_its_source_once() -> None:
    assert GatewayKey(name="ci", key_env="CI_KEY").key_env == "CI_KEY"
    assert GatewayKey(name="ci", key_sha256=HASH).key_sha256 == HASH
    for fields in ({}, {"key_env": "X", "key_sha256": HASH}):
        with pytest.raises(ValueError, match="exactly one of key_sha256"):
            GatewayKey(name="ci", **fields)


def test_a_pasted_key_is_refused_without_echoing_it() -> None:
    secret = "sk-live-0123456789abcdef"
    found = issues({"keys": [{"name": "a", "key_sha256": secret},
                             {"name": "b", "key_env": secret}]})
    assert any(p.startswith("settings.gateway.keys[0].key_sha256") for p in found)
    assert any(p.startswith("settings.gateway.keys[1].key_env") for p in found)
    assert all(secret not in p for p in found)


def test_models_named_by_keys_and_aliases_must_exist() -> None:
    found = issues({"keys": [{"name": "a", "key_sha256": HASH, "allowed_models": ["gpt-4.1", "gtp-4"]}],
                    "aliases": {"auto:cheap": {"models": ["nope"]}, "gpt-4.1": {}, "auto": {}}})
    assert "settings.gateway.keys[0].allowed_models[1]: unknown model 'gtp-4'" in found
    assert "settings.gateway.aliases[\"auto:cheap\"].models[0]: unknown model 'nope'" in found
    assert sum("is a model id or 'auto'" in p for p in found) == 2


def test_names_and_hashes_are_unique() -> None:
    found = issues({"keys": [{"name": "a", "key_sha256": HASH}, {"name": "a", "key_env": "X"}]})
    assert any("names must be unique (a repeats)" in p for p in found)
    found = issues({"keys": [{"name": "a", "key_sha256": HASH}, {"name": "b", "key_sha256": HASH}]})
    assert any("same key_sha256" in p for p in found)


def test_defaults() -> None:
    gateway = demo_config().settings.gateway
    assert gateway.keys == [] and gateway.aliases == {}
    assert gateway.max_body_bytes == 8 * 1024 * 1024 and gateway.default_max_tokens == 4096
