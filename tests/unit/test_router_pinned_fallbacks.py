"""A pinned model with its fallbacks (``ModelRequest.use_fallbacks``): the pin serves while it
can; when its call fails, or it is not eligible, its configured fallbacks do, in their order."""

from __future__ import annotations

import asyncio

import pytest

from api_model_management import ModelRequest
from api_model_management.config import RegistryConfig, config_from_dict, demo_config
from api_model_management.errors import AllCandidatesFailed, NoEligibleModel, ProviderServerError
from api_model_management.events import FailoverTriggered, ModelSelected, RequestCompleted

from _fakes import GOOD_PROMPT, make_router, names, of_type, ok

pytestmark = pytest.mark.unit

MINI, HAIKU, FLASH, GPT41 = "gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash", "gpt-4.1"


def with_fallbacks(model_id: str, fallbacks: list[str]) -> RegistryConfig:
    data = demo_config().model_dump(mode="python")
    for model in data["models"]:
        if model["id"] == model_id:
            model["fallbacks"] = fallbacks
    return config_from_dict(data, source="test")


def pinned(model_id: str = MINI, **fields: object) -> ModelRequest:
    return ModelRequest(prompt=GOOD_PROMPT, model_id=model_id, use_fallbacks=True, **fields)  # type: ignore[arg-type]


def adapter_of(router, model_id: str):
    return router.adapters[router.config.model(model_id).provider]


def test_the_pin_serves_while_it_answers_and_the_reason_names_it() -> None:
    router, _, _, events = make_router(with_fallbacks(MINI, [HAIKU, FLASH]))
    response = asyncio.run(router.complete(pinned()))
    assert response.model_id == MINI
    selected = of_type(events.events, ModelSelected)[0]
    assert selected.model_id == MINI
    assert selected.reason.startswith(f"pinned {MINI} (fallbacks: {HAIKU}, {FLASH}): ")
    assert response.selection_reason == selected.reason
    assert of_type(events.events, FailoverTriggered) == []


def test_a_failing_pin_fails_over_to_its_fallbacks_in_their_order() -> None:
    router, _, _, events = make_router(with_fallbacks(MINI, [FLASH, HAIKU]))
    adapter_of(router, MINI).script(MINI, ProviderServerError("502", http_status=502))
    adapter_of(router, FLASH).script(FLASH, ProviderServerError("503", http_status=503))
    adapter_of(router, HAIKU).script(HAIKU, ok())
    response = asyncio.run(router.complete(pinned()))
    assert response.model_id == HAIKU and response.attempts == 3
    hops = [(e.from_model_id, e.to_model_id, e.reason)
            for e in of_type(events.events, FailoverTriggered)]
    assert hops == [(MINI, FLASH, "server_error"), (FLASH, HAIKU, "server_error")]
    done = of_type(events.events, RequestCompleted)
    assert len(done) == 1 and done[0].model_id == HAIKU


def test_only_the_configured_fallbacks_are_tried() -> None:
    router, _, _, events = make_router(with_fallbacks(MINI, [HAIKU]))
    adapter_of(router, MINI).script(MINI, ProviderServerError("502", http_status=502))
    adapter_of(router, HAIKU).script(HAIKU, ProviderServerError("502", http_status=502))
    with pytest.raises(AllCandidatesFailed) as caught:
        asyncio.run(router.complete(pinned()))
    assert caught.value.models_tried == [MINI, HAIKU]
    assert sum(len(a.calls) for a in router.adapters.values()) == 2


def test_without_use_fallbacks_a_pin_is_never_swapped() -> None:
    router, _, _, events = make_router(with_fallbacks(MINI, [HAIKU]))
    adapter_of(router, MINI).script(MINI, ProviderServerError("502", http_status=502))
    with pytest.raises(AllCandidatesFailed):
        asyncio.run(router.complete(ModelRequest(prompt=GOOD_PROMPT, model_id=MINI)))
    assert names(events.events) == ["ModelSelected", "AttemptFailed", "RequestFailed"]


def test_an_unhealthy_pin_is_skipped_for_its_first_eligible_fallback() -> None:
    config = with_fallbacks(MINI, [GPT41, FLASH])  # GPT41 shares the pin's provider
    router, _, _, events = make_router(config)
    provider = config.model(MINI).provider
    router.selector.update_health(provider, "unhealthy")
    response = asyncio.run(router.complete(pinned()))
    assert response.model_id == FLASH
    selected = of_type(events.events, ModelSelected)[0]
    assert selected.model_id == FLASH
    assert selected.reason.startswith(f"pinned {MINI} not eligible (")
    assert f"its fallback {FLASH}: " in selected.reason
    assert adapter_of(router, MINI).calls == []


def test_a_pin_with_no_eligible_fallback_is_not_eligible() -> None:
    config = with_fallbacks(MINI, [GPT41])
    router, _, _, _ = make_router(config)
    router.selector.update_health(config.model(MINI).provider, "unhealthy")
    with pytest.raises(NoEligibleModel) as caught:
        asyncio.run(router.complete(pinned()))
    assert MINI in caught.value.filtered


def test_a_stream_fails_over_to_the_fallback_before_its_first_token() -> None:
    router, _, _, events = make_router(with_fallbacks(MINI, [HAIKU]))
    adapter_of(router, MINI).script(MINI, ProviderServerError("502", http_status=502))

    async def collect() -> list:
        return [c async for c in router.stream(pinned())]

    chunks = asyncio.run(collect())
    assert chunks[-1].done and chunks[-1].model_id == HAIKU
    assert [(e.from_model_id, e.to_model_id) for e in of_type(events.events, FailoverTriggered)] \
        == [(MINI, HAIKU)]
