"""Translating a tool conversation to a provider's protocol and back preserves it (issue 13):
OpenAI → Anthropic → OpenAI and OpenAI → Gemini → OpenAI keep every message's role and text, each
call's id, name and arguments (as parsed JSON) and order, each result's call id, and images. Ids
are drawn from a wide alphabet (Anthropic's escaping must undo itself), arguments from any JSON
object, results answered in any order, a user message sometimes right after the results (it
shares their turn on both providers)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from api_model_management._request import Message, ModelRequest
from api_model_management.config import ModelConfig, ProviderConfig
from api_model_management.providers import make_adapter
from api_model_management.providers.anthropic import messages_from_anthropic
from api_model_management.providers.gemini import messages_from_gemini

pytestmark = pytest.mark.property

NAMES = ("get_weather", "search", "lookup_user", "_private", "run-query")
IMAGES = ("https://img.test/a.png", "data:image/png;base64,iVBORw0KGgo=",
          "data:image/jpeg;base64,/9j/4AAQ")
text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
call_ids = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                                 exclude_characters="\x85\xa0\u1680\u180e\u2028\u2029"),
                   min_size=1, max_size=30).filter(lambda s: not any(c.isspace() for c in s))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(text, json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An OpenAI-shaped conversation: user turns (some with images), assistant turns with 0-3
    calls, each call answered in a drawn order, sometimes a user message right after."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        if not messages or messages[-1]["role"] != "tool" or draw(st.booleans()):
            messages.append(draw(user_messages()))
        n_calls = draw(st.integers(0, 3))
        ids = draw(st.lists(call_ids.filter(lambda i: i not in used), min_size=n_calls,
                            max_size=n_calls, unique=True))
        used.update(ids)
        calls = [{"id": i, "type": "function",
                  "function": {"name": draw(st.sampled_from(NAMES)),
                               "arguments": orjson.dumps(draw(arguments)).decode()}}
                 for i in ids]
        content = draw(st.none() | text) if calls else draw(text)
        messages.append({"role": "assistant", "content": content,
                         **({"tool_calls": calls} if calls else {})})
        for i in draw(st.permutations(ids)):
            messages.append({"role": "tool", "tool_call_id": i, "content": draw(text)})
    return messages


@st.composite
def user_messages(draw: st.DrawFn) -> dict[str, Any]:
    if not draw(st.booleans()):
        return {"role": "user", "content": draw(text)}
    parts: list[dict[str, Any]] = [{"type": "text", "text": draw(text)}]
    parts += [{"type": "image_url", "image_url": {"url": url}}
              for url in draw(st.lists(st.sampled_from(IMAGES), max_size=2))]
    return {"role": "user", "content": parts}


def shape(messages: list[Message]) -> list[tuple]:
    """What must survive: roles and texts in order, calls (id, name, parsed arguments) in
    order, the call each result answers, image URLs."""
    return [(m.role, m.text, [(c.id, c.name, c.parsed_arguments()) for c in m.tool_calls],
             m.tool_call_id, [i.url for i in m.images]) for m in messages]


ADAPTERS = {kind: make_adapter(kind, ProviderConfig(type=kind, base_url="https://x.test",
                                                    http_client="httpx"), SecretStr("k"))
            for kind in ("anthropic", "google")}  # never sends: only builds bodies


def body(kind: str, request: ModelRequest) -> dict[str, Any]:
    """The body the adapter would send (built without sending)."""
    model = ModelConfig(id="m", provider=kind, name="m", capabilities=["text-generation"],
                        cost_per_1k_input_tokens=Decimal(0), cost_per_1k_output_tokens=Decimal(0),
                        rate_limits={"requests_per_minute": 1, "tokens_per_minute": 1},
                        context_window=1000, average_response_time_ms=1)
    built = ADAPTERS[kind]._body(request, model, stream=False)
    return orjson.loads(orjson.dumps(built))  # as it goes on the wire


@pytest.mark.parametrize(("kind", "back"), [("anthropic", messages_from_anthropic),
                                            ("google", messages_from_gemini)])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations())
def test_openai_to_provider_to_openai_preserves_the_conversation(kind, back, conversation):
    request = ModelRequest(messages=conversation)
    translated = back(body(kind, request))
    assert shape(translated) == shape(list(request.messages or ()))
    # and the translation back is itself a valid request of the same conversation
    again = ModelRequest(messages=translated)
    assert again.cache_key() == ModelRequest(messages=translated).cache_key()
    assert [c.id for m in again.messages or () for c in m.tool_calls] == [
        c.id for m in request.messages or () for c in m.tool_calls]
