"""The worst-case bound covers images (issue 13): each provider's documented image rule
(``_images.image_token_bound``), the request's total (text, tools and images), and the router
reserving and settling on the bound of the provider and model it calls."""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management._images import (
    ANTHROPIC_MAX_IMAGE_TOKENS,
    GEMINI_3_IMAGE_TOKENS,
    OLLAMA_MIN_IMAGE_TOKENS,
    image_token_bound,
)
from api_model_management.events import PerformanceAlert

from _fakes import make_router, of_type, ok

pytestmark = pytest.mark.unit


def png_url(width: int, height: int) -> str:
    raw = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def with_images(*urls: str, detail: str = "auto", **fields) -> ModelRequest:
    parts = [{"type": "text", "text": "Describe."}]
    parts += [{"type": "image_url", "image_url": {"url": u, "detail": detail}} for u in urls]
    return ModelRequest(messages=[{"role": "user", "content": parts}], **fields)


@pytest.mark.parametrize(("model", "size", "detail", "tokens"), [
    ("gpt-4o", (1024, 1024), "high", 85 + 170 * 4),   # 768x768: 4 tiles (OpenAI's example)
    ("gpt-4o", (2048, 4096), "high", 85 + 170 * 6),   # 1024x2048 -> 768x1536: 2 x 3 tiles
    ("gpt-4o", (4096, 8192), "low", 85),
    ("gpt-4.1", (100, 100), "auto", 85 + 170),
    ("gpt-5", (512, 512), "auto", 70 + 140),
    ("gpt-4o-mini", (512, 512), "auto", 2833 + 5667),
    ("gpt-4.1-mini", (1024, 1024), "auto", 1659),          # 1024 patches x 1.62
    ("gpt-4.1-mini", (2048, 100), "auto", 85 + 170 * 4),   # the tile rule is larger here
    ("gpt-4.1-mini", (2048, 2048), "auto", 2489),          # 1536 patches x 1.62
    ("gpt-4.1-nano", (2048, 2048), "auto", 3779),          # 1536 patches x 2.46
    ("gpt-4.1", None, "auto", 85 + 170 * 8),               # unknown size: 8 tiles
    ("o4-mini", None, "auto", 2642),                       # unknown size: 1536 patches x 1.72
    ("some-new-model", None, "auto", 2833 + 5667 * 8),     # unknown model: the largest constants
])
def test_openai_image_rule(model, size, detail, tokens):
    assert image_token_bound("openai", model, size, detail) == tokens


def test_anthropic_gemini_and_ollama_image_rules():
    assert image_token_bound("anthropic", "claude-haiku-4-5", (200, 200), "auto") == 54
    assert image_token_bound("anthropic", "claude-x", (1092, 1092), "auto") == 1590
    assert image_token_bound("anthropic", "claude-x", (4000, 3000), "auto") == (
        ANTHROPIC_MAX_IMAGE_TOKENS)
    assert image_token_bound("anthropic", None, None) == ANTHROPIC_MAX_IMAGE_TOKENS
    assert image_token_bound("google", "gemini-2.5-flash", (384, 384)) == 258
    assert image_token_bound("google", "gemini-2.5-flash", (385, 100)) == 258
    assert image_token_bound("google", "gemini-2.5-flash", (1000, 800)) == 258 * 4
    assert image_token_bound("google", "gemini-2.5-pro", None) == 258 * 16
    assert image_token_bound("google", "gemini-3-pro", (5000, 5000)) == GEMINI_3_IMAGE_TOKENS
    assert image_token_bound("ollama", "llava", (336, 336)) == OLLAMA_MIN_IMAGE_TOKENS
    assert image_token_bound("ollama", "qwen2.5vl", (2800, 2800)) == 10000
    assert image_token_bound("ollama", "x", None) == 16384
    # no provider: the largest of every rule
    assert image_token_bound(None, "gpt-4.1", (800, 600)) == OLLAMA_MIN_IMAGE_TOKENS
    assert image_token_bound(None, None, None) == 2833 + 5667 * 8


def test_the_request_bound_adds_its_images_by_provider_and_model():
    request = with_images(png_url(800, 600), "https://img.test/x.png")
    text = request.text_token_bound()
    assert text == ModelRequest(messages=[{"role": "user", "content": "Describe."}]
                                ).text_token_bound()
    anthropic = request.input_token_bound("claude-haiku-4-5", "anthropic")
    assert anthropic == text + 640 + ANTHROPIC_MAX_IMAGE_TOKENS  # the URL's size is unknown
    assert request.image_token_bound("claude-haiku-4-5", "anthropic") == anthropic - text
    assert request.input_token_bound("gemini-2.5-flash", "google") == text + 258 * 2 + 258 * 16
    assert request.input_token_bound() == text + request.image_token_bound(None, None)
    assert request.input_token_bound() >= max(anthropic, request.input_token_bound("gpt-4.1",
                                                                                   "openai"))
    plain = ModelRequest(prompt="Describe.")
    assert plain.input_token_bound("gpt-4.1", "openai") == plain.input_token_bound()


@pytest.mark.parametrize(("model_id", "provider_type"), [
    ("gpt-4.1-mini", "openai"), ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-flash", "google")])
def test_the_router_bounds_a_call_by_its_providers_image_rule(model_id, provider_type):
    request = with_images(png_url(1600, 1200), cacheable=False,
                          constraints=SelectionConstraints(allowed_models=(model_id,)))
    router, _, _, events = make_router()
    wire = router.config.model(model_id).wire_name
    bound = request.input_token_bound(wire, provider_type)
    assert router.config.providers[router.config.model(model_id).provider].type == provider_type
    adapter = router.adapters[router.config.model(model_id).provider]
    adapter.script(model_id, ok(input_tokens=bound, output_tokens=5),
                   ok(input_tokens=bound + 1, output_tokens=5))
    asyncio.run(router.complete(request))  # exactly the bound: no anomaly
    assert of_type(events.events, PerformanceAlert) == []
    asyncio.run(router.complete(request))  # one token above it: the bound the router used
    [alert] = of_type(events.events, PerformanceAlert)
    assert (alert.metric, alert.threshold) == ("input_tokens", bound)
    assert bound < request.input_token_bound()  # tighter than any-provider
