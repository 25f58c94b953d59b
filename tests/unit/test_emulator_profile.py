"""Emulator profiles and decisions without sockets: validation, cascade, windows, outages, text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api_model_management._clock import ManualClock
from api_model_management.emulator import Engine, Profile, ProfileError, load_profile, parse_profile
from api_model_management.emulator._data import ENV_VAR, shared_data_dir
from api_model_management.emulator._engine import HeaderFaultError, plan_from_header
from api_model_management.emulator._profile import effective_spec
from api_model_management.emulator._text import (
    compose_answer,
    count_tokens,
    make_answer,
    split_for_stream,
)
from api_model_management.emulator._wire import go_duration, rfc3339

pytestmark = pytest.mark.unit

PROFILES = sorted((Path(__file__).resolve().parents[2] / "config" / "profiles").glob("*.json"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_shipped_profiles_validate(path: Path) -> None:
    assert isinstance(load_profile(path), Profile)


def test_demo_profile_is_shipped() -> None:
    assert any(p.name == "demo.json" for p in PROFILES)


@pytest.mark.parametrize(("data", "fragment"), [
    ({"defaults": {"error_rates": {"abc": 0.1}}}, "defaults.error_rates"),
    ({"defaults": {"error_rates": {"500": 1.5}}}, "not a probability"),
    ({"defaults": {"error_rates": {"500": 0.7, "503": 0.6}}}, "sum to more than 1"),
    ({"models": {"m": {"outages": [{"start_s": 5, "end_s": 2}]}}}, "end after it starts"),
    ({"providers": {"azure": {}}}, "providers.azure"),
    ({"defaults": {"latency": {"kind": "gaussian"}}}, "defaults.latency"),
    ({"world_models": {"m": {"column": "c"}}}, "world_dir"),
    ({"seeds": 1}, "seeds"),
])
def test_bad_profiles_name_the_problem(data: dict, fragment: str) -> None:
    with pytest.raises(ProfileError, match="invalid profile") as caught:
        parse_profile(data)
    assert fragment in str(caught.value)


def test_load_profile_reports_bad_json_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"seed": 1,,}')
    with pytest.raises(ProfileError, match=r"not JSON \(line 1"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "absent.json")


def test_settings_cascade_field_by_field() -> None:
    profile = parse_profile({
        "defaults": {"error_rates": {"500": 0.1}, "drop_rate": 0.2},
        "providers": {"anthropic": {"error_rates": {"529": 0.3}}},
        "models": {"claude": {"drop_rate": 0.0}},
    })
    spec = effective_spec(profile, "anthropic", "claude")
    assert spec.error_rates == {"529": 0.3} and spec.drop_rate == 0.0
    assert effective_spec(profile, "openai", "gpt").error_rates == {"500": 0.1}


def _engine(data: dict) -> tuple[Engine, ManualClock]:
    clock = ManualClock()
    return Engine(parse_profile(data), clock), clock


def test_rpm_window_slides_with_the_clock() -> None:
    engine, clock = _engine({"models": {"m": {"rate_limits": {"requests_per_minute": 2}}}})
    assert engine.plan("openai", "m", 10).kind == "ok"
    clock.advance(20)
    assert engine.plan("openai", "m", 10).kind == "ok"
    limited = engine.plan("openai", "m", 10)
    assert limited.status == 429 and limited.retry_after_s == pytest.approx(40)
    clock.advance(40)
    assert engine.plan("openai", "m", 10).kind == "ok"
    info = engine.rate_info("openai", "m")
    assert info.remaining_requests == 0 and info.limit_requests == 2


def test_tpm_window_counts_tokens() -> None:
    engine, clock = _engine({"models": {"m": {"rate_limits": {"tokens_per_minute": 100}}}})
    assert engine.plan("anthropic", "m", 60).kind == "ok"
    assert engine.plan("anthropic", "m", 60).status == 429
    assert engine.plan("anthropic", "m", 40).kind == "ok"
    assert engine.rate_info("anthropic", "m").remaining_tokens == 0
    clock.advance(60)
    assert engine.rate_info("anthropic", "m").remaining_tokens == 100


def test_outage_window_is_relative_to_the_profile_start() -> None:
    engine, clock = _engine({"providers": {"anthropic": {"outages": [{"start_s": 5, "end_s": 20}]},
                                           "gemini": {"outages": [{"start_s": 0, "end_s": 9, "mode": "drop"}]}}})
    assert engine.plan("anthropic", "c", 1).kind == "ok"
    clock.advance(5)
    assert engine.plan("anthropic", "c", 1).status == 529
    assert engine.provider_outage("anthropic").status == 529
    assert engine.plan("gemini", "g", 1).kind == "drop"
    clock.advance(15)
    assert engine.plan("anthropic", "c", 1).kind == "ok" and engine.provider_outage("anthropic") is None


def test_fault_draws_are_seeded_and_near_their_rates() -> None:
    data = {"seed": 11, "defaults": {"error_rates": {"500": 0.2}, "drop_rate": 0.1}}
    first = [_engine(data)[0] for _ in range(2)]
    runs = [[e.plan("openai", "m", 1).kind for _ in range(2000)] for e in first]
    assert runs[0] == runs[1]
    assert 0.16 < runs[0].count("error") / 2000 < 0.24 and 0.07 < runs[0].count("drop") / 2000 < 0.13


def test_fault_free_profile_always_succeeds() -> None:
    engine, _ = _engine({})
    assert {engine.plan(p, "m", 100).kind for p in ("openai", "anthropic", "gemini", "ollama")
            for _ in range(50)} == {"ok"}


@pytest.mark.parametrize(("header", "kind", "status"), [
    ("status=503", "error", 503), ("timeout", "hang", 200), ("drop", "drop", 200),
    ("midstream-error", "midstream", 200), ("malformed", "malformed", 200), ("STATUS=429", "error", 429),
    ("oversized", "oversized", 200), ("inflated-usage", "inflated_usage", 200),
])
def test_header_faults(header: str, kind: str, status: int) -> None:
    plan = plan_from_header(header)
    assert (plan.kind, plan.status) == (kind, status)


def test_oversized_rate_in_a_profile() -> None:
    engine, _ = _engine({"models": {"big": {"oversized_rate": 1.0, "oversized_bytes": 4096}}})
    plan = engine.plan("openai", "big", 1)
    assert (plan.kind, plan.size_bytes) == ("oversized", 4096)
    assert engine.plan("openai", "small", 1).kind == "ok"


def test_oversized_header_fault_sizes() -> None:
    assert plan_from_header("oversized=65536").size_bytes == 65536
    assert plan_from_header("oversized").size_bytes == 20 * 1024 * 1024


@pytest.mark.parametrize("header", ["status=200", "status=abc", "explode", "oversized=0",
                                    "oversized=big"])
def test_bad_header_faults(header: str) -> None:
    with pytest.raises(HeaderFaultError):
        plan_from_header(header)


def test_auth_keys() -> None:
    engine, _ = _engine({"valid_keys": ["good"]})
    assert engine.key_problem(None) == "missing" and engine.key_problem("") == "missing"
    assert engine.key_problem("invalid") == "invalid" and engine.key_problem("other") == "invalid"
    assert engine.key_problem("good") is None
    assert Engine().key_problem("anything") is None


def test_stats_and_reset() -> None:
    engine, _ = _engine({})
    engine.record("openai", "m", "200")
    engine.record("openai", "m", "429")
    engine.record("ollama", "l", "drop")
    stats = engine.stats()
    assert stats["total"] == 3 and stats["models"]["m"] == {"200": 1, "429": 1}
    engine.reset()
    assert engine.stats()["total"] == 0


def test_trace_needs_the_shared_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    profile = parse_profile({"defaults": {"latency": {"kind": "trace", "file": "groq_70b.json"}}})
    with pytest.raises(ProfileError, match=ENV_VAR):
        Engine(profile)


def test_trace_from_a_custom_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = [{"end_to_end_latency_s": 2.0, "ttft_s": 0.5, "error_code": None},
            {"end_to_end_latency_s": 1.0, "ttft_s": 0.2, "error_code": 429}]
    (tmp_path / "llmperf").mkdir()
    (tmp_path / "llmperf" / "t.json").write_text(json.dumps(rows))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert shared_data_dir() == tmp_path
    engine = Engine(parse_profile({"defaults": {"latency": {"kind": "trace", "file": "t.json", "scale": 0.5}}}))
    plans = [engine.plan("openai", "m", 1) for _ in range(200)]
    assert {(p.kind, p.status, p.latency_s) for p in plans} == {("ok", 200, 1.0), ("error", 429, 0.5)}
    assert {p.ttft_s for p in plans if p.kind == "ok"} == {0.25}


@pytest.mark.parametrize(("seconds", "text"), [
    (0.012, "12ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (59.9999, "1m0s"), (3723, "1h2m3s"), (0, "0ms"),
])
def test_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_rfc3339() -> None:
    clock = ManualClock()
    assert rfc3339(clock.now(), 61) == "2026-01-01T00:01:01Z"


def test_answers_restate_the_prompt_and_respect_max_tokens() -> None:
    prompt = "Compare binary search trees with hash tables for lookups"
    text = compose_answer("m", prompt, prompt)
    assert text == compose_answer("m", prompt, prompt) != compose_answer("n", prompt, prompt)
    assert sum(w in text for w in ("binary", "search", "trees", "hash", "tables", "lookups")) >= 3
    full = make_answer(text, len(prompt), None)
    assert not full.truncated and full.output_tokens == count_tokens(text)
    cut = make_answer(text, len(prompt), 8)
    assert cut.truncated and cut.output_tokens <= 8 and text.startswith(cut.text)
    assert "".join(split_for_stream(text)) == text
