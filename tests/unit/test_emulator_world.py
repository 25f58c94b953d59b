"""The emulator's answer world in its catalogs, and the emulator as a judge that follows the world.

In process: the emulator app behind ``httpx.ASGITransport``, reached by the real provider adapters
(every wire) and, end to end, by a local router in judge mode. No Ray, no sockets.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from pydantic import SecretStr

from api_model_management import ModelRequest
from api_model_management._judge_format import JUDGE_TEMPLATE, split_judge_message
from api_model_management.config import ModelConfig, RegistryConfig, demo_config
from api_model_management.emulator import Engine, ProfileError, create_app, parse_profile
from api_model_management.emulator._engine import DEFAULT_CATALOG
from api_model_management.emulator._judge import SCORE_BANDS, judge_score
from api_model_management.emulator._text import compose_answer, count_tokens
from api_model_management.errors import ModelNotFound
from api_model_management.evaluation import JudgePrompt, build_judge_prompt, parse_judge_score
from api_model_management.events import FeedbackRecorded
from api_model_management.providers import ProviderAdapter, make_adapter

from _fakes import config_with, make_router, of_type

pytestmark = pytest.mark.unit

T = TypeVar("T")
MULTIPLE_CHOICE = "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
OPEN = "Name the capital of France."
#: One demo model per provider type (the emulator's name for the protocol in brackets).
JUDGES = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5",
          "google": "gemini-2.5-flash", "ollama": "llama3.2"}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> str:
    """A two-prompt routellm-format world: ``strong`` right on both, ``weak`` wrong on both."""
    path = tmp_path / "world.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "strong", "weak", "strong_response"])
        writer.writerow([MULTIPLE_CHOICE, "True", "False", ""])
        writer.writerow([OPEN, "True", "False", "Paris is the capital of France."])
    return str(tmp_path)


def world_engine(world: str, **profile: object) -> Engine:
    return Engine(parse_profile({"world_dir": world, **profile}))


def run_on(engine: Engine, scenario: Callable[[Callable[[str], ProviderAdapter]], Awaitable[T]]) -> T:
    """Run ``scenario(adapter_for)``, where ``adapter_for(provider)`` is the real adapter of a demo
    provider talking to ``engine``'s app in process; every adapter is closed afterwards."""
    config = demo_config()
    transport = httpx.ASGITransport(app=create_app(engine))
    opened: list[ProviderAdapter] = []

    def adapter_for(provider: str) -> ProviderAdapter:
        settings = config.providers[provider]
        key = None if settings.type == "ollama" else SecretStr("emulator-key")
        opened.append(make_adapter(provider, settings, key, transport=transport))
        return opened[-1]

    async def go() -> T:
        try:
            return await scenario(adapter_for)
        finally:
            for adapter in opened:
                await adapter.aclose()

    return asyncio.run(go())


def demo_model(model_id: str, wire_name: str | None = None) -> ModelConfig:
    """A demo model, sent to the emulator as ``wire_name`` when given."""
    model = demo_config().model(model_id)
    return model.model_copy(update={"provider_model": wire_name}) if wire_name else model


# -- the catalog ----------------------------------------------------------------------------------


def test_every_models_endpoint_lists_the_world_models_after_its_own(world: str) -> None:
    engine = world_engine(world, world_models={
        "gpt-4o": {"column": "strong"},  # already in OpenAI's default catalog: listed once
        "mixtral": {"column": "weak"},
        "local-weak": {"column": "weak", "provider": "ollama"},
    })
    headers = {"authorization": "Bearer k", "x-goog-api-key": "k"}

    async def listed() -> dict[str, list[str]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)),
                                     base_url="http://emulator") as client:
            openai = (await client.get("/v1/models", headers={"authorization": "Bearer k"})).json()
            anthropic = (await client.get("/v1/models", headers={
                "x-api-key": "k", "anthropic-version": "2023-06-01"})).json()
            gemini = (await client.get("/v1beta/models", headers=headers)).json()
            ollama = (await client.get("/api/tags")).json()
        return {
            "openai": [m["id"] for m in openai["data"]],
            "anthropic": [m["id"] for m in anthropic["data"]],
            "gemini": [m["name"].removeprefix("models/") for m in gemini["models"]],
            "ollama": [m["name"].removesuffix(":latest") for m in ollama["models"]],
        }

    assert asyncio.run(listed()) == {
        "openai": [*DEFAULT_CATALOG["openai"], "mixtral"],
        "anthropic": [*DEFAULT_CATALOG["anthropic"], "gpt-4o", "mixtral"],
        "gemini": [*DEFAULT_CATALOG["gemini"], "gpt-4o", "mixtral"],
        "ollama": [*DEFAULT_CATALOG["ollama"], "gpt-4o", "mixtral", "local-weak"],
    }


def test_a_configured_catalog_comes_first_and_lists_each_model_once(world: str) -> None:
    engine = world_engine(world, catalog={"openai": ["own", "mixtral"]},
                          world_models={"mixtral": {"column": "weak"}, "gpt-4o": {"column": "strong"}})
    assert engine.catalog("openai") == ["own", "mixtral", "gpt-4o"]
    assert engine.catalog("anthropic") == [*DEFAULT_CATALOG["anthropic"], "mixtral", "gpt-4o"]


def test_strict_models_serves_world_models_on_the_providers_that_list_them(world: str) -> None:
    engine = world_engine(world, strict_models=True, world_models={
        "mixtral": {"column": "weak"}, "local-strong": {"column": "strong", "provider": "ollama"}})

    async def scenario(adapter_for: Callable[[str], ProviderAdapter]) -> None:
        for provider, model_id in JUDGES.items():
            adapter = adapter_for(provider)
            result = await adapter.complete(ModelRequest(prompt=MULTIPLE_CHOICE),
                                            demo_model(model_id, "mixtral"))
            assert result.text.endswith("[incorrect]"), provider
            tied = demo_model(model_id, "local-strong")
            if provider == "ollama":
                result = await adapter.complete(ModelRequest(prompt=OPEN), tied)
                assert result.text == "Paris is the capital of France.\n[correct]"
            else:
                with pytest.raises(ModelNotFound):
                    await adapter.complete(ModelRequest(prompt=OPEN), tied)
            with pytest.raises(ModelNotFound):
                await adapter.complete(ModelRequest(prompt=OPEN), demo_model(model_id, "unlisted"))

    run_on(engine, scenario)


def test_world_model_provider_is_optional_and_validated(world: str) -> None:
    profile = parse_profile({"world_dir": world, "world_models": {"m": {"column": "strong"}}})
    assert profile.world_models["m"].provider is None
    with pytest.raises(ProfileError, match=r"world_models\.m\.provider"):
        parse_profile({"world_dir": world,
                       "world_models": {"m": {"column": "strong", "provider": "azure"}}})


# -- the judge ------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    build_judge_prompt("Sum 2 and 2.", "Answer: B [correct]"),
    JUDGE_TEMPLATE.format(request="Sum 2 and 2.", answer="Answer: B [correct]") + "\n",
])
def test_a_judge_message_splits_into_request_and_answer(message: str) -> None:
    assert split_judge_message(message) == ("Sum 2 and 2.", "Answer: B [correct]")


def test_the_answer_end_is_exact_even_when_the_texts_hold_the_delimiters() -> None:
    tricky = JUDGE_TEMPLATE.format(request="x", answer="y")  # a whole judge request as text
    request, answer = split_judge_message(build_judge_prompt(tricky, "A.\n[incorrect]")) or ("", "")
    assert request == tricky and answer == "A.\n[incorrect]"
    _, answer = split_judge_message(build_judge_prompt("q", f"{tricky}\n[correct]")) or ("", "")
    assert answer.endswith("y\n>>>\n\nScore (0-10):\n[correct]")
    clipped = build_judge_prompt("q", "word " * 5000 + "[correct]", max_chars=200)
    assert (split_judge_message(clipped) or ("", ""))[1].endswith("word [correct]")


@pytest.mark.parametrize("message", [
    "Score (0-10):",
    "Rate this answer. Score (0-10):",
    "REQUEST:\n<<<\nq\n>>>\n\nScore (0-10):",
    "ANSWER:\n<<<\na\n>>>\n\nScore (0-10):",
    JUDGE_TEMPLATE.format(request="q", answer="a") + " Please explain.",
])
def test_other_messages_are_not_judge_requests(message: str) -> None:
    assert split_judge_message(message) is None
    answer = Engine().answer_text("m", message, message)
    assert answer == compose_answer("m", message, message) and not answer.startswith("Score:")


@pytest.mark.parametrize(("marker", "correct"), [("[correct]", True), ("[incorrect]", False),
                                                 ("", None)])
def test_the_score_follows_the_marker_and_varies_within_its_band(marker: str, correct: bool | None) -> None:
    answers = [f"Answer {i}: the reasoning goes here.\n{marker}" for i in range(40)]
    scores = [parse_judge_score(f"Score: {judge_score(a)}") for a in answers]
    lowest, highest = SCORE_BANDS[correct]
    assert {round(s * 10) for s in scores if s is not None} == set(range(lowest, highest + 1))
    if correct is True:
        assert min(s for s in scores if s is not None) >= 0.8
    elif correct is False:
        assert max(s for s in scores if s is not None) <= 0.3
    else:
        assert all(s is not None and 0.3 < s < 0.8 for s in scores)


def test_the_score_is_deterministic_whatever_the_judge_model() -> None:
    message = build_judge_prompt("Sum 2 and 2.", "Answer: B [correct]")
    first = Engine().answer_text("judge-a", message, message)
    assert first.startswith("Score: ")
    assert Engine(parse_profile({"seed": 9})).answer_text("judge-b", message, message) == first


@pytest.mark.parametrize("form", ["system prompt", "inline instructions"])
@pytest.mark.parametrize("provider", list(JUDGES))
def test_every_wire_judges_the_world_answers(world: str, provider: str, form: str) -> None:
    engine = world_engine(world, world_models={"strong": {"column": "strong"},
                                               "weak": {"column": "weak"}})

    def judge_request(prompt: str, answer: str) -> ModelRequest:
        if form == "system prompt":
            return JudgePrompt().build(ModelRequest(prompt=prompt), answer)
        return ModelRequest(prompt=build_judge_prompt(prompt, answer), max_tokens=64)

    async def scenario(adapter_for: Callable[[str], ProviderAdapter]) -> list[tuple[str, str, object]]:
        adapter, verdicts = adapter_for(provider), []
        for prompt in (MULTIPLE_CHOICE, OPEN, "Not a prompt of the world."):
            for graded in ("strong", "weak"):
                answer = (await adapter.complete(ModelRequest(prompt=prompt),
                                                 demo_model(JUDGES[provider], graded))).text
                request = judge_request(prompt, answer)
                verdict = await adapter.complete(request, demo_model(JUDGES[provider]))
                assert verdict.output_tokens == count_tokens(verdict.text)
                assert verdict.input_tokens >= count_tokens(request.prompt_text())
                verdicts.append((answer, verdict.text, parse_judge_score(verdict.text)))
        return verdicts

    for answer, text, score in run_on(engine, scenario):
        assert text.startswith("Score: ") and score is not None
        if answer.endswith("[correct]"):
            assert score >= 0.8
        elif answer.endswith("[incorrect]"):
            assert score <= 0.3
        else:
            assert 0.3 < score < 0.8


def test_judge_mode_records_the_worlds_verdict_as_feedback(world: str) -> None:
    """The router's judge mode, with real adapters on every wire: the judge's FeedbackRecorded
    scores the world's right answers high and its wrong answers low."""
    judge = "gpt-4.1-mini"
    config: RegistryConfig = config_with(
        quality={"judge": {"enabled": True, "model_id": judge, "sample_rate": 1.0}})
    engine = world_engine(world, world_models={"claude-haiku-4-5": {"column": "strong"},
                                               "gemini-2.5-flash": {"column": "strong"},
                                               "llama3.2": {"column": "weak"}})
    graded = {"claude-haiku-4-5": True, "gemini-2.5-flash": True, "llama3.2": False}

    async def scenario(adapter_for: Callable[[str], ProviderAdapter]) -> tuple[dict, list]:
        adapters = {name: adapter_for(name) for name in config.providers}
        router, _, _, events = make_router(config, adapters=adapters)
        answered = {}
        for model_id in graded:
            for prompt in (MULTIPLE_CHOICE, OPEN):
                response = await router.complete(ModelRequest(prompt=prompt, model_id=model_id))
                answered[response.request_id] = (model_id, response.text)
        await asyncio.gather(*list(router._background))
        return answered, of_type(events.events, FeedbackRecorded)

    answered, feedback = run_on(engine, scenario)
    assert len(feedback) == len(answered) == 6
    for event in feedback:
        model_id, text = answered[event.request_id]
        assert (event.source, event.judge_model_id, event.model_id) == ("judge", judge, model_id)
        assert text.endswith("[correct]" if graded[model_id] else "[incorrect]")
        assert event.score >= 0.8 if graded[model_id] else event.score <= 0.3
