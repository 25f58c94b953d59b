"""The official SDKs call tools, read structured output and send images to the emulator (issue 13):
each SDK's own helpers build the request and parse the answer (pydantic models validate the tool
arguments and the structured output), plain and streamed, then a tool result is answered in text.
SDK retries are off. Loopback HTTP to the session's emulator."""

from __future__ import annotations

import importlib.util
import io
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from api_model_management.emulator.testing import EmulatorServer

pytestmark = pytest.mark.integration

KEY = "sk-emulator-test"
PROMPT = "What is the weather in Lisbon for the next days, in celsius?"
RESULT = "18 degrees and light rain"


def _sdk(module: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(module.split(".")[0]) is None
    return pytest.mark.skipif(missing, reason=f"the {module} SDK is not installed (pip install it)")


class Weather(BaseModel):
    """Get the forecast for a city."""

    city: str
    days: int = Field(ge=1, le=14)
    unit: Literal["celsius", "fahrenheit"]


class Forecast(BaseModel):
    """Weather without bounds: ollama-python's ``Tool`` type keeps only each property's type, items,
    description and enum, so bounds never reach the server."""

    city: str
    days: int
    unit: Literal["celsius", "fahrenheit"]


class Finding(BaseModel):
    label: Literal["good", "bad", "ugly"]
    note: str


class Report(BaseModel):
    title: str
    findings: list[Finding]
    final: bool


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (600, 400), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def _lisbon(text: str) -> bool:
    return "lisbon" in text.lower()


@_sdk("openai")
def test_openai_sdk_tools_structured_output_and_images(emulator: EmulatorServer) -> None:
    import base64

    import openai

    with openai.OpenAI(base_url=emulator.url_for("openai"), api_key=KEY, max_retries=0) as client:
        messages: list = [{"role": "user", "content": PROMPT}]
        tools = [openai.pydantic_function_tool(Weather, name="get_weather")]  # strict: the emulator checks it
        reply = client.chat.completions.parse(model="gpt-4o-mini", messages=messages, tools=tools)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert isinstance(call.function.parsed_arguments, Weather) and call.id.startswith("call_")
        with client.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=tools) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.tool_calls[0].function.parsed_arguments == call.function.parsed_arguments

        messages += [{"role": "assistant", "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in choice.message.tool_calls]}]
        messages += [{"role": "tool", "tool_call_id": c.id, "content": RESULT} for c in choice.message.tool_calls]
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
        assert answer.choices[0].finish_reason == "stop" and _lisbon(answer.choices[0].message.content)

        report = client.chat.completions.parse(model="gpt-4o-mini", response_format=Report,
                                               messages=[{"role": "user", "content": "Review the trip"}])
        assert isinstance(report.choices[0].message.parsed, Report)

        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(_png()).decode()}}
        seen = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": [{"type": "text", "text": "Describe this picture"}, image]}])
        plain = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "Describe this picture"}])
        assert seen.usage.prompt_tokens - plain.usage.prompt_tokens == 425


@_sdk("anthropic")
def test_anthropic_sdk_tools_structured_output_and_images(emulator: EmulatorServer) -> None:
    import base64

    import anthropic

    with anthropic.Anthropic(base_url=emulator.url_for("anthropic"), api_key=KEY, max_retries=0) as client:
        tools = [{"name": "get_weather", "description": "Forecast", "input_schema": Weather.model_json_schema()}]
        messages: list = [{"role": "user", "content": PROMPT}]
        reply = client.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages, tools=tools)
        assert reply.stop_reason == "tool_use"
        uses = [b for b in reply.content if b.type == "tool_use"]
        assert uses and uses[0].id.startswith("toolu_") and Weather.model_validate(uses[0].input)
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=512, messages=messages,
                                    tools=tools) as stream:
            final = stream.get_final_message()
        assert [b.input for b in final.content if b.type == "tool_use"] == [u.input for u in uses]

        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": RESULT}
                                                  for u in uses]}]
        answer = client.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=messages, tools=tools)
        assert answer.stop_reason == "end_turn" and _lisbon(answer.content[0].text)

        report = client.messages.parse(model="claude-haiku-4-5", max_tokens=1024, output_format=Report,
                                       messages=[{"role": "user", "content": "Review the trip"}])
        assert isinstance(report.parsed_output, Report)

        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": base64.b64encode(_png()).decode()}}
        seen = client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "Describe this picture"}]}])
        plain = client.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=[
            {"role": "user", "content": "Describe this picture"}])
        assert seen.usage.input_tokens - plain.usage.input_tokens == 320


@_sdk("google.genai")
def test_google_genai_sdk_tools_structured_output_and_images(emulator: EmulatorServer) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emulator.url_for("gemini")))
    try:
        declaration = types.FunctionDeclaration(name="get_weather", description="Forecast",
                                                parameters_json_schema=Weather.model_json_schema())
        config = types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[declaration])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
        reply = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT, config=config)
        calls = reply.function_calls
        assert calls and calls[0].name == "get_weather" and Weather.model_validate(calls[0].args)
        assert reply.candidates[0].finish_reason == types.FinishReason.STOP
        streamed = [c for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents=PROMPT, config=config) for c in chunk.function_calls or []]
        assert [c.args for c in streamed] == [c.args for c in calls]

        contents = [types.Content(role="user", parts=[types.Part.from_text(text=PROMPT)]),
                    reply.candidates[0].content,
                    types.Content(role="user", parts=[types.Part.from_function_response(
                        name=c.name, response={"result": RESULT}) for c in calls])]
        answer = client.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
        assert not answer.function_calls and _lisbon(answer.text)

        report = client.models.generate_content(
            model="gemini-2.5-flash", contents="Review the trip",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Report))
        assert isinstance(report.parsed, Report)

        seen = client.models.generate_content(model="gemini-2.5-flash", contents=[
            types.Part.from_bytes(data=_png(), mime_type="image/png"), "Describe this picture"])
        plain = client.models.generate_content(model="gemini-2.5-flash", contents="Describe this picture")
        assert seen.usage_metadata.prompt_token_count - plain.usage_metadata.prompt_token_count == 258
    finally:
        client.close()


@_sdk("ollama")
def test_ollama_sdk_tools_structured_output_and_images(emulator: EmulatorServer) -> None:
    import ollama

    client = ollama.Client(host=emulator.url_for("ollama"))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Forecast",
                                               "parameters": Forecast.model_json_schema()}}]
    messages: list = [{"role": "user", "content": PROMPT}]
    reply = client.chat(model="llama3.2", messages=messages, tools=tools)
    calls = reply.message.tool_calls
    assert calls and reply.done_reason == "stop" and Forecast.model_validate(calls[0].function.arguments)
    streamed = [c for part in client.chat(model="llama3.2", messages=messages, tools=tools, stream=True)
                for c in part.message.tool_calls or []]
    assert [c.function.arguments for c in streamed] == [c.function.arguments for c in calls]

    messages += [{"role": "assistant", "content": "", "tool_calls": calls},
                 *({"role": "tool", "tool_name": c.function.name, "content": RESULT} for c in calls)]
    answer = client.chat(model="llama3.2", messages=messages, tools=tools)
    assert not answer.message.tool_calls and _lisbon(answer.message.content)

    report = client.chat(model="llama3.2", messages=[{"role": "user", "content": "Review the trip"}],
                         format=Report.model_json_schema())
    assert Report.model_validate_json(report.message.content)

    seen = client.chat(model="llama3.2", messages=[{"role": "user", "content": "Describe this picture",
                                                    "images": [_png()]}])
    plain = client.chat(model="llama3.2", messages=[{"role": "user", "content": "Describe this picture"}])
    assert seen.prompt_eval_count - plain.prompt_eval_count == 576
