"""Minimal raw requests for each protocol (used by tests, the benchmark and demos).

These are plain descriptions of a request, not an adapter: the real adapters live in
``api_model_management.providers``.
"""

from __future__ import annotations

DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5",
                  "gemini": "gemini-2.5-flash", "ollama": "llama3.2"}


def chat_request(provider: str, prompt: str, *, model: str | None = None, stream: bool = False,
                 max_tokens: int | None = None, key: str | None = "sk-test",
                 include_usage: bool = False) -> tuple[str, dict[str, str], dict]:
    """``(path, headers, json_body)`` of a one-message chat request in ``provider``'s format."""
    model = model or DEFAULT_MODELS[provider]
    if provider == "openai":
        body: dict = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            if include_usage:
                body["stream_options"] = {"include_usage": True}
        return "/v1/chat/completions", ({"authorization": f"Bearer {key}"} if key else {}), body
    if provider == "anthropic":
        body = {"model": model, "max_tokens": max_tokens or 1024,
                "messages": [{"role": "user", "content": prompt}], "stream": stream}
        headers = {"anthropic-version": "2023-06-01"}
        if key:
            headers["x-api-key"] = key
        return "/v1/messages", headers, body
    if provider == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/v1beta/models/{model}:{method}", ({"x-goog-api-key": key} if key else {}), body
    if provider == "ollama":
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        if max_tokens is not None:
            body["options"] = {"num_predict": max_tokens}
        return "/api/chat", {}, body
    raise ValueError(f"unknown provider {provider!r}")
