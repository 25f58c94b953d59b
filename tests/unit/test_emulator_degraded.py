"""The emulator's degraded answers (``degraded_rate``, ``x-emulator-fault: degraded``): a complete
200 on every wire, plain and streamed, whose text is the answer's first words in a loop, scored
near 0 by the evaluator; counted as ``degraded`` in the statistics. In process (ASGI transport)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from api_model_management import ModelRequest
from api_model_management.config import QualitySettings, demo_config
from api_model_management.emulator import Engine, create_app, parse_profile
from api_model_management.emulator._engine import HeaderFaultError, plan_from_header
from api_model_management.emulator._text import Answer, compose_answer, degraded_answer
from api_model_management.evaluation import ResponseEvaluator
from api_model_management.providers import make_adapter

pytestmark = pytest.mark.unit

PROMPT = "Explain how a hash map handles collisions, and compare chaining with open addressing."
#: One demo model per provider (the emulator serves any model name unless strict).
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "ollama": "llama3.2"}  # fmt: skip


def answers(engine: Engine, *, stream: bool) -> dict[str, str]:
    """Each provider's answer to PROMPT through its real adapter."""
    config = demo_config()
    transport = httpx.ASGITransport(app=create_app(engine))

    async def one(provider: str, model_id: str) -> str:
        settings = config.providers[provider]
        key = None if settings.type == "ollama" else SecretStr("emulator-key")
        adapter = make_adapter(provider, settings, key, transport=transport)
        request = ModelRequest(prompt=PROMPT, max_tokens=200)
        try:
            if not stream:
                return (await adapter.complete(request, config.model(model_id))).text
            parts = []
            async for chunk in adapter.stream(request, config.model(model_id)):
                if chunk.done:
                    assert chunk.result is not None
                    assert chunk.result.text == "".join(parts)
                else:
                    parts.append(chunk.delta)
            return "".join(parts)
        finally:
            await adapter.aclose()

    async def go() -> dict[str, str]:
        return {p: await one(p, m) for p, m in MODELS.items()}

    return asyncio.run(go())


def quality(text: str) -> float:
    evaluator = ResponseEvaluator(QualitySettings())
    return evaluator.evaluate(ModelRequest(prompt=PROMPT, max_tokens=200), text, "stop").quality_score


@pytest.mark.parametrize("stream", [False, True])
def test_every_wire_answers_degraded_text_that_scores_near_zero(stream):
    engine = Engine(parse_profile({"defaults": {"degraded_rate": 1.0}}))
    texts = answers(engine, stream=stream)
    for provider, text in texts.items():
        head = " ".join(text.split()[:4])
        assert text.startswith(f"{head} {head}"), provider
        assert quality(text) < 0.1, provider
    counts = engine.stats()["providers"]
    assert all(c == {"degraded": 1} for c in counts.values()), counts


def test_a_healthy_answer_scores_well_for_comparison():
    engine = Engine(parse_profile({}))
    assert all(quality(text) > 0.6 for text in answers(engine, stream=False).values())


def test_a_rate_below_one_degrades_some_answers_only():
    engine = Engine(parse_profile({"seed": 1, "models": {"gpt-4.1-mini": {"degraded_rate": 0.5}}}))
    outcomes = [engine.plan("openai", "gpt-4.1-mini", 10).kind for _ in range(400)]
    assert 150 < outcomes.count("degraded") < 250 and outcomes.count("ok") == 400 - outcomes.count("degraded")
    assert {engine.plan("openai", "gpt-4o", 10).kind for _ in range(50)} == {"ok"}  # other models


def test_the_header_asks_for_one_degraded_answer():
    assert plan_from_header("degraded").kind == "degraded"
    with pytest.raises(HeaderFaultError, match="inflated-usage or degraded"):
        plan_from_header("garbled")


def test_degraded_answer_repeats_the_first_words_to_about_the_length():
    text = compose_answer("m", PROMPT, PROMPT)
    answer = Answer(text, 20, (len(text) + 3) // 4, False)
    looped = degraded_answer(answer)
    head = " ".join(text.split()[:4])
    assert looped.text.startswith(f"{head} {head}") and looped.text.count(head) >= 2
    assert abs(len(looped.text) - len(text)) <= len(head) + 1
    assert looped.output_tokens == (len(looped.text) + 3) // 4 and looped.input_tokens == 20
    short = degraded_answer(Answer("", 1, 0, False))
    assert short.text == "the the"
