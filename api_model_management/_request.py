"""The request and response types of the public API and of the provider adapters.

The request speaks OpenAI's Chat Completions shape, the lingua franca agents and SDKs already use:
``messages`` with roles ``system``/``user``/``assistant``/``tool``, content as a string or parts
(text, images by http(s) URL or base64 data URL), assistant ``tool_calls`` and tool results
(``tool_call_id``); ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``.
Every adapter translates it to its provider's protocol at the edge. It is validated once, here:
each problem is one :class:`~.errors.InvalidInput` naming the field, never its value.

Sampling parameters stay in the free-form ``parameters`` dict (as in the original system); its
known keys are validated: ``temperature`` (0 to 2), ``top_p`` (0 to 1), ``stop`` (a string or up
to 4 strings) and ``seed`` (an integer). :meth:`ModelRequest.sampling` gives them normalized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from ._images import InlineImage, check_http_url, image_token_bound, parse_data_url
from .errors import InvalidInput
from .ratelimit._state import RateLimitState

__all__ = [
    "ContentPart",
    "FinishReason",
    "ImagePart",
    "ImageURL",
    "JsonSchemaFormat",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "NamedToolChoice",
    "Priority",
    "ProviderResult",
    "RateLimitState",
    "ResponseFormat",
    "SelectionConstraints",
    "StreamChunk",
    "TextPart",
    "Tool",
    "ToolCall",
]

Priority = Literal["low", "normal", "medium", "high", "critical"]
#: Why a reply ended, normalized across providers (``error``: only in results the router builds).
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "error", "other"]
ToolChoiceMode = Literal["auto", "none", "required"]

#: Tokens a provider adds around each message (role marker, turn separators), generous: OpenAI's
#: chat format adds 3-4, Gemini's about 5.
FRAMING_TOKENS_PER_MESSAGE = 8
#: Tokens a provider adds once per request (reply priming, begin-of-text).
FRAMING_TOKENS_PER_REQUEST = 16
#: Tokens a provider adds around each tool definition, tool call and tool result (its wrappers:
#: OpenAI's ``namespace functions`` rendering, Anthropic's ``tool_use`` block, Gemini's parts).
FRAMING_TOKENS_PER_TOOL_ITEM = 32
#: Tokens of the system prompt a provider adds when tools (or a schema sent as a tool) are given:
#: Anthropic documents 346 (``auto``/``none``) and 313 (``any``/``tool``) for Claude 4 models,
#: the largest of the four; rounded up.
TOOL_USE_SYSTEM_PROMPT_TOKENS = 512
#: What adapters without a JSON mode of their own (Anthropic) add to the system prompt for
#: ``response_format: json_object``; counted in :meth:`ModelRequest.input_token_bound`.
JSON_OBJECT_INSTRUCTION = (
    "Reply with one JSON object and nothing else: no prose, no code fences."
)

#: A function name every provider accepts (the intersection of OpenAI's ``^[a-zA-Z0-9_-]{1,64}$``,
#: Anthropic's and Gemini's, which must begin with a letter or an underscore).
_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_FORMAT_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_MAX_STOP_SEQUENCES = 4


def _utf8_bytes(text: str) -> int:
    """UTF-8 bytes of ``text``: its length when ASCII (O(1)), else an encode (about 1 ms a MB)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _FieldProblem(ValueError):
    """A problem found by a validator across fields, with the path of the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _invalid(exc: ValidationError, what: str = "ModelRequest") -> InvalidInput:
    """A request's validation errors as one ``InvalidInput``: field paths and messages, no input.
    ``problems`` holds each (path, message); the first path is ``field``."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        where = _path(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        nested = getattr(cause, "problems", None) if isinstance(cause, InvalidInput) else None
        if nested:
            problems.extend((_join(where, inner), message) for inner, message in nested)
            continue  # a nested model's own problems, each under this path
        if isinstance(cause, _FieldProblem):
            where = _join(where, cause.field)
        problems.append((where, str(error["msg"]).removeprefix("Value error, ")))
    text = "; ".join(f"{where}: {message}" if where else message for where, message in problems)
    return InvalidInput(f"invalid {what}: {text}", field=problems[0][0] or "request",
                        problems=tuple(problems))


def _join(outer: str, inner: str) -> str:
    if not outer or not inner:
        return outer or inner
    return f"{outer}{inner}" if inner.startswith("[") else f"{outer}.{inner}"


#: Tags of this module's unions: pydantic puts them in error locations, which do not show them.
_TAGS = frozenset({"string", "parts", "text-part", "image-part", "mode", "named"})


def _path(loc: tuple[int | str, ...]) -> str:
    """``("messages", 2, "content")`` as ``messages[2].content``, union tags dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _TAGS:
            out = _join(out, part)
    return out


class _Validated(BaseModel):
    """A frozen, closed model whose bad input raises ``InvalidInput`` (field paths, no values)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    if not TYPE_CHECKING:  # the type checker keeps the signature pydantic's plugin derives

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _invalid(exc, type(self).__name__) from None


def _json_object_text(text: str) -> dict[str, Any]:
    """``text`` parsed, if it is one JSON object; ``ValueError`` (without the text) otherwise."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object")
    return value


def check_json_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema object valid against its metaschema (``$schema``, else
    draft 2020-12); ``ValueError`` naming the failed metaschema keyword, never the schema."""
    if not isinstance(schema, dict):
        raise ValueError("must be a JSON Schema object")
    try:
        orjson.dumps(schema)
    except TypeError:
        raise ValueError("is not JSON (a value JSON cannot hold)") from None
    from jsonschema import (  # only when schemas are used
        Draft202012Validator,
        SchemaError,
        validators,
    )

    validator = validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"is not a valid JSON Schema (the '{exc.validator}' rule of the "
                         "metaschema fails)") from None
    return schema


# -- content --------------------------------------------------------------------------------------
class TextPart(_Validated):
    """A text part of a message's content."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Validated):
    """An image: an ``http(s)`` URL or a ``data:image/<png|jpeg|gif|webp>;base64,...`` URL, checked
    whole once (a data URL's size is read from its header for the token bound)."""

    url: str
    detail: Literal["auto", "low", "high"] = "auto"
    _inline: InlineImage | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _image_reference(cls, url: str) -> str:
        if url[:5].lower() == "data:":
            parse_data_url(url)
        else:
            check_http_url(url)
        return url

    def model_post_init(self, context: Any) -> None:
        if self.is_inline:
            self._inline = parse_data_url(self.url)

    @property
    def is_inline(self) -> bool:
        """True for a base64 data URL, False for an http(s) URL."""
        return self.url[:5].lower() == "data:"

    @property
    def inline(self) -> InlineImage | None:
        """The decoded data URL (media type, base64 text, pixel size), None for an http(s) URL."""
        if self._inline is None and self.is_inline:
            self._inline = parse_data_url(self.url)
        return self._inline

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in pixels when an inline image's header says it, else None."""
        inline = self.inline
        return inline.size if inline is not None else None

    def digest(self) -> str:
        """A short stable name of the image (for cache keys; never the data itself)."""
        return "blake2b:" + hashlib.blake2b(self.url.encode(), digest_size=16).hexdigest()


class ImagePart(_Validated):
    """An image part of a user message's content (OpenAI's ``image_url`` part)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL

    @model_validator(mode="before")
    @classmethod
    def _url_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("image_url"), str):
            return {**data, "image_url": {"url": data["image_url"]}}
        return data


def _part_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return {"text": "text-part", "image_url": "image-part"}.get(kind) if isinstance(kind, str) else None


def _content_kind(value: Any) -> str:
    return "string" if isinstance(value, str) else "parts"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text-part")] | Annotated[ImagePart, Tag("image-part")],
    Discriminator(_part_kind, custom_error_type="content_part",
                  custom_error_message="must be a text or image_url part"),
]
_Content = Annotated[
    Annotated[str, Tag("string")] | Annotated[tuple[ContentPart, ...], Tag("parts")],
    Discriminator(_content_kind),
]


# -- tools ----------------------------------------------------------------------------------------
class ToolCall(_Validated):
    """A call of a tool by the model: its ``id`` (the provider's; where a provider gives none,
    the adapter's, derived from the reply), the function ``name`` and ``arguments``, one JSON
    object as a string. OpenAI's form (``{"id", "type": "function", "function": {"name",
    "arguments"}}``) is accepted too, and ``arguments`` as a dict (serialized)."""

    id: str = Field(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f\x7f]+$")
    name: str = Field(pattern=_NAME_PATTERN)
    arguments: str = "{}"

    @model_validator(mode="before")
    @classmethod
    def _openai_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "function" in data:
            if data.get("type", "function") != "function":
                raise ValueError("only tool calls of type function are supported")
            function = data["function"]
            if not isinstance(function, dict):
                raise _FieldProblem("function", "must be an object with name and arguments")
            data = {"id": data.get("id"), "name": function.get("name"),
                    "arguments": function.get("arguments", "{}")}
        if isinstance(data, dict) and isinstance(data.get("arguments"), dict):
            try:
                data = {**data, "arguments": orjson.dumps(data["arguments"]).decode()}
            except TypeError:
                raise _FieldProblem("arguments", "is not JSON (a value JSON cannot hold)") from None
        return data

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, arguments: str) -> str:
        _json_object_text(arguments)
        return arguments

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict."""
        return _json_object_text(self.arguments)

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's wire form."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


class Tool(_Validated):
    """A function the model may call: ``name``, ``description`` and ``parameters`` (a JSON Schema
    object; none: no arguments), ``strict`` as OpenAI's. OpenAI's form (``{"type": "function",
    "function": {...}}``) is accepted too."""

    name: str = Field(pattern=_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _openai_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "function" in data:
            if data.get("type", "function") != "function":
                raise ValueError("only tools of type function are supported")
            function = data["function"]
            if not isinstance(function, dict):
                raise _FieldProblem("function", "must be an object with a name")
            return function
        return data

    @field_validator("parameters")
    @classmethod
    def _schema(cls, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        if parameters is None:
            return None
        check_json_schema(parameters)
        if parameters.get("type", "object") != "object":
            raise ValueError("must be a JSON Schema of type object (a function's arguments)")
        return parameters

    def input_schema(self) -> dict[str, Any]:
        """``parameters``, or the schema of an empty object when there are none."""
        return self.parameters if self.parameters is not None else {"type": "object",
                                                                     "properties": {}}

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's wire form."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.input_schema()
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


class NamedToolChoice(_Validated):
    """``tool_choice`` naming the one function to call (OpenAI's ``{"type": "function",
    "function": {"name": ...}}`` is accepted)."""

    name: str = Field(pattern=_NAME_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _openai_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "function" in data:
            if data.get("type", "function") != "function":
                raise ValueError("only a function can be named")
            function = data["function"]
            return {"name": function.get("name") if isinstance(function, dict) else None}
        return data

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name}}


def _choice_kind(value: Any) -> str:
    return "mode" if isinstance(value, str) else "named"


_ToolChoice = Annotated[
    Annotated[ToolChoiceMode, Tag("mode")] | Annotated[NamedToolChoice, Tag("named")],
    Discriminator(_choice_kind),
]


class JsonSchemaFormat(_Validated):
    """The schema of a structured answer (OpenAI's ``response_format.json_schema``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True,
                              populate_by_name=True)

    name: str = Field(default="response", pattern=_FORMAT_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return check_json_schema(schema)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["schema"] = self.schema_
        if self.strict is not None:
            out["strict"] = self.strict
        return out


class ResponseFormat(_Validated):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema`` (an object
    valid against ``json_schema.schema``)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise _FieldProblem("json_schema", "type json_schema needs json_schema.schema")
        if self.type != "json_schema" and self.json_schema is not None:
            raise _FieldProblem("json_schema", "only type json_schema takes a schema")
        return self

    def to_openai(self) -> dict[str, Any]:
        if self.json_schema is None:
            return {"type": self.type}
        return {"type": self.type, "json_schema": self.json_schema.to_openai()}


# -- messages -------------------------------------------------------------------------------------
class Message(_Validated):
    """One message of a conversation, in OpenAI's shape.

    ``system`` and ``user`` messages have ``content`` (a user's may hold images); an ``assistant``
    message has text, ``tool_calls`` or both; a ``tool`` message is the result of the call with
    id ``tool_call_id``. Content is a string or a tuple of parts (text, image)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: _Content | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _null_tool_calls(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tool_calls" in data and data["tool_calls"] is None:
            return {k: v for k, v in data.items() if k != "tool_calls"}
        return data

    @model_validator(mode="after")
    def _shape(self) -> Message:
        role = self.role
        if self.tool_calls and role != "assistant":
            raise _FieldProblem("tool_calls", "only an assistant message has tool calls")
        if role == "tool" and self.tool_call_id is None:
            raise _FieldProblem("tool_call_id", "a tool message needs the id of the call it "
                                                "answers")
        if role != "tool" and self.tool_call_id is not None:
            raise _FieldProblem("tool_call_id", "only a tool message answers a tool call")
        if self.content == ():
            raise _FieldProblem("content", "has no parts")
        if self.content is None and not (role == "assistant" and self.tool_calls):
            needs = "content or tool_calls" if role == "assistant" else "content"
            raise _FieldProblem("content", f"a {role} message needs {needs}")
        if role != "user" and self.images:
            raise _FieldProblem("content", "only a user message may hold images")
        return self

    @property
    def text(self) -> str:
        """The message's text: the string content, or its text parts joined by newlines."""
        content = self.content
        if isinstance(content, str):
            return content
        if not content:
            return ""
        return "\n".join(p.text for p in content if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImageURL, ...]:
        content = self.content
        if isinstance(content, str) or not content:
            return ()
        return tuple(p.image_url for p in content if isinstance(p, ImagePart))

    @property
    def is_plain(self) -> bool:
        """A string content and nothing else (the original system's messages)."""
        return isinstance(self.content, str) and not self.tool_calls and self.tool_call_id is None

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's wire form."""
        out: dict[str, Any] = {"role": self.role}
        content = self.content
        if isinstance(content, tuple):
            out["content"] = [p.model_dump(exclude_defaults=False) for p in content]
        else:
            out["content"] = content
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    def _canonical(self) -> Any:
        if self.is_plain:
            return (self.role, self.content)  # the original key's form, kept for plain messages
        content: Any = self.content
        if isinstance(content, tuple):
            content = [p.text if isinstance(p, TextPart)
                       else {"image": p.image_url.digest(), "detail": p.image_url.detail}
                       for p in content]
        return {"role": self.role, "content": content, "tool_call_id": self.tool_call_id,
                "tool_calls": [[c.id, c.name, c.parsed_arguments()] for c in self.tool_calls]}


class SelectionConstraints(BaseModel):
    """Constraints a request puts on selection (the original system's ``constraints``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_providers: tuple[str, ...] | None = None
    excluded_providers: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] | None = None
    excluded_models: tuple[str, ...] = ()
    max_cost_per_request: Decimal | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_quality: float | None = Field(default=None, ge=0, le=1)


class ModelRequest(BaseModel):
    """A request for a completion, as in the original system, in OpenAI's shape for agents.

    Give ``prompt`` (a user message) or ``messages``; ``system`` is an optional system prompt.
    ``parameters`` holds sampling parameters (``temperature``, ``top_p``, ``stop``, ``seed``:
    checked, see the module docstring). ``tools``, ``tool_choice``, ``parallel_tool_calls`` and
    ``response_format`` are OpenAI's. ``model_id`` pins a model (selection then only checks it is
    usable); with ``use_fallbacks`` the pinned model's configured ``fallbacks`` serve it, in
    their order and each if usable, when the pinned model is not usable or its call fails.
    ``cacheable`` None means "by default": cacheable when temperature is 0.

    A conversation with tool calls is checked whole: each tool result answers an earlier call
    of the assistant message just before its run of results, each call is answered once, call ids
    are unique, and ``tool_choice`` names a tool of ``tools``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    system: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tools: tuple[Tool, ...] = ()
    tool_choice: _ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    task_id: str | None = None
    agent_type: str = "default"
    max_tokens: int = Field(default=512, gt=0)
    required_capabilities: tuple[str, ...] = ("text-generation",)
    priority: Priority = "normal"
    constraints: SelectionConstraints = SelectionConstraints()
    cacheable: bool | None = None
    model_id: str | None = None
    #: with ``model_id``: fail over to the pinned model's configured fallbacks (else only the pin)
    use_fallbacks: bool = False
    request_id: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    if not TYPE_CHECKING:  # the type checker keeps the signature pydantic's plugin derives

        def __init__(self, **data: Any) -> None:
            """Validates; bad input raises ``InvalidInput`` (a ``ValueError``) naming each field
            and problem on one line, never an input value (a prompt must not reach a message)."""
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _invalid(exc) from None

    @classmethod
    def from_openai(cls, body: Mapping[str, Any], **fields: Any) -> ModelRequest:
        """A request from an OpenAI Chat Completions body (``messages``, ``tools``,
        ``tool_choice``, ``parallel_tool_calls``, ``response_format``, ``temperature``,
        ``top_p``, ``stop``, ``seed``, ``max_completion_tokens`` or ``max_tokens``); ``fields``
        adds or overrides this package's own (``model_id``, ``agent_type``, ...). Other keys of
        the body are ignored."""
        data: dict[str, Any] = {}
        for key in ("messages", "tools", "tool_choice", "parallel_tool_calls", "response_format"):
            if body.get(key) is not None:
                data[key] = body[key]
        parameters = {k: body[k] for k in _SAMPLING_KEYS if body.get(k) is not None}
        if parameters:
            data["parameters"] = parameters
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None:
            data["max_tokens"] = max_tokens
        return cls(**{**data, **fields})

    @model_validator(mode="after")
    def _has_input(self) -> ModelRequest:
        if not self.prompt and not self.messages:
            raise ValueError("a request needs a prompt or messages")
        return self

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str | None) -> str | None:
        if prompt and not prompt.strip():
            raise ValueError("only whitespace (give the text to answer)")
        return prompt

    @field_validator("parameters")
    @classmethod
    def _known_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        for key, check in _SAMPLING_CHECKS.items():
            value = parameters.get(key)
            if value is not None and not check(value):
                raise _FieldProblem(key, _SAMPLING_RULES[key])
        return parameters

    @model_validator(mode="after")
    def _tools_consistent(self) -> ModelRequest:
        names = [t.name for t in self.tools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _FieldProblem(f"tools[{i}].name", "repeats the name of an earlier tool")
        choice = self.tool_choice
        if choice in ("required",) or isinstance(choice, NamedToolChoice):
            if not self.tools:
                raise _FieldProblem("tool_choice", "requires a tool call but tools is empty")
        if isinstance(choice, NamedToolChoice) and choice.name not in names:
            raise _FieldProblem("tool_choice", "names no tool of tools")
        if self.messages:
            _check_tool_turns(self.messages)
        return self

    # -- derived ----------------------------------------------------------------------------------
    def chat_messages(self) -> list[Message]:
        """The conversation as messages (without the system prompt)."""
        if self.messages:
            return [m for m in self.messages if m.role != "system"]
        return [Message.model_construct(role="user", content=self.prompt or "")]  # valid by construction

    def system_prompt(self) -> str | None:
        if self.system:
            return self.system
        if self.messages:
            parts = [m.text for m in self.messages if m.role == "system"]
            return "\n".join(parts) if parts else None
        return None

    def prompt_text(self) -> str:
        """All text sent, for estimates and hashing (never logged): the system prompt and each
        message's text (tool results included; tool-call arguments and images not)."""
        parts = [self.system_prompt() or "", *self._chat_contents()]
        return "\n".join(p for p in parts if p)

    def _chat_contents(self) -> list[str]:
        """The texts of :meth:`chat_messages`, without building Message objects (hot path)."""
        if self.messages:
            return [m.text for m in self.messages if m.role != "system"]
        return [self.prompt or ""]

    @property
    def temperature(self) -> float:
        return float(self.parameters.get("temperature", 1.0))

    def sampling(self) -> dict[str, Any]:
        """The known sampling parameters that are set: ``temperature`` and ``top_p`` (floats),
        ``stop`` (a list of strings), ``seed`` (an int)."""
        params = self.parameters
        out: dict[str, Any] = {}
        for key in ("temperature", "top_p"):
            if params.get(key) is not None:
                out[key] = float(params[key])
        stop = params.get("stop")
        if stop:
            out["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if params.get("seed") is not None:
            out["seed"] = int(params["seed"])
        return out

    # -- what the request needs -------------------------------------------------------------------
    def tool_names(self) -> tuple[str, ...]:
        """The names of the tools offered, in order."""
        return tuple(t.name for t in self.tools)

    def tool_count(self) -> int:
        return len(self.tools)

    def images(self) -> tuple[ImageURL, ...]:
        """Every image of the conversation, in order."""
        if not self.messages:
            return ()
        return tuple(part.image_url for m in self.messages if m.content.__class__ is tuple
                     for part in m.content if isinstance(part, ImagePart))

    def image_count(self) -> int:
        return len(self.images())

    def has_tool_history(self) -> bool:
        """True when the conversation holds tool calls or tool results."""
        return self.messages is not None and any(m.tool_calls or m.tool_call_id is not None
                                                 for m in self.messages)

    def _conversation_needs(self) -> tuple[bool, bool]:
        """(tool calls or results, images) in the conversation, in one pass (the selector asks
        on every request; a message of plain text costs two attribute reads)."""
        tools = images = False
        for m in self.messages or ():
            if m.tool_calls or m.tool_call_id is not None:
                tools = True
            content = m.content
            if content.__class__ is tuple and not images:
                images = any(isinstance(part, ImagePart) for part in content)
        return tools, images

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON Schema a structured answer must satisfy, if ``response_format`` gives one."""
        fmt = self.response_format
        return fmt.json_schema.schema_ if fmt is not None and fmt.json_schema is not None else None

    def wants_json(self) -> bool:
        """True when the answer must be a JSON object (``json_object`` or ``json_schema``)."""
        return self.response_format is not None and self.response_format.type != "text"

    def capabilities_needed(self) -> tuple[str, ...]:
        """``required_capabilities`` plus what the request itself needs: ``function-calling``
        for tools or a tool conversation, ``vision`` for images, ``structured-output`` for a
        ``json_schema`` response format (no duplicates, order kept)."""
        needed = list(self.required_capabilities)
        tool_history, images = self._conversation_needs()
        if self.tools or tool_history:
            needed.append("function-calling")
        if images:
            needed.append("vision")
        if self.output_schema() is not None:
            needed.append("structured-output")
        return tuple(dict.fromkeys(needed))

    # -- estimates and bounds ---------------------------------------------------------------------
    def estimated_input_tokens(self) -> int:
        """A token estimate for fitting a context window (about 3 characters a token, plus
        framing). Not a bound: budgets and rate limits use :meth:`input_token_bound`."""
        contents = self._chat_contents()
        lengths = [n for n in map(len, (self.system_prompt() or "", *contents)) if n]
        chars = sum(lengths) + max(0, len(lengths) - 1)  # len(prompt_text()), without joining
        if self.tools or self.response_format is not None or self.has_tool_history():
            chars += sum(map(_utf8_bytes, self._tool_texts()))
        return chars // 3 + 4 * len(contents) + 8

    def input_token_bound(self, model_name: str | None = None,
                          provider_type: str | None = None) -> int:
        """The most input tokens this request can be billed for on model ``model_name`` (its
        wire name) of a provider of type ``provider_type``; either None: on any. It is
        :meth:`text_token_bound` plus :meth:`image_token_bound` (the image rule depends on the
        provider and model; without them each image counts at the largest of every rule)."""
        bound = self.text_token_bound()
        if self.messages and any(m.images for m in self.messages):
            bound += self.image_token_bound(model_name, provider_type)
        return bound

    def image_token_bound(self, model_name: str | None = None,
                          provider_type: str | None = None) -> int:
        """The most input tokens the request's images can be billed for: each image by
        ``_images.image_token_bound`` (the provider's documented rule, from the size its data
        URL's header gives, else the largest size the provider keeps)."""
        return sum(image_token_bound(provider_type, model_name, image.size, image.detail)
                   for image in self.images())

    def text_token_bound(self) -> int:
        """The most input tokens this request's text can be billed for, on any provider (all
        but images).

        Every tokenizer in use (byte-level BPE, SentencePiece with byte fallback) makes each text
        token out of at least one byte of UTF-8, so the UTF-8 bytes of everything sent bound the
        text tokens: the system prompt, every message's text, each tool call's id, name and
        arguments, each tool result's call id and function name, each tool definition and the
        response schema as compact JSON, and :data:`JSON_OBJECT_INSTRUCTION` for ``json_object``
        (providers render schemas in forms no longer than their JSON). Framing is allowed for:
        :data:`FRAMING_TOKENS_PER_MESSAGE` per message (the system prompt counts as one),
        :data:`FRAMING_TOKENS_PER_TOOL_ITEM` per tool definition, call and result,
        :data:`TOOL_USE_SYSTEM_PROMPT_TOKENS` once when tools or a schema are sent, plus
        :data:`FRAMING_TOKENS_PER_REQUEST`. ASCII text is counted without encoding."""
        system = self.system_prompt()
        parts = self._chat_contents()
        total = sum(map(_utf8_bytes, parts)) + FRAMING_TOKENS_PER_REQUEST
        total += FRAMING_TOKENS_PER_MESSAGE * len(parts)
        if system:
            total += _utf8_bytes(system) + FRAMING_TOKENS_PER_MESSAGE
        if self.tools or self.response_format is not None or self.has_tool_history():
            texts = self._tool_texts()
            total += sum(map(_utf8_bytes, texts)) + FRAMING_TOKENS_PER_TOOL_ITEM * len(texts)
            if self.tools or self.output_schema() is not None:
                total += TOOL_USE_SYSTEM_PROMPT_TOKENS
        return total

    def _tool_texts(self) -> list[str]:
        """What is sent for tools besides message texts, one string per item: each tool's
        definition and the response schema as JSON, each call's id, name and arguments, each
        result's call id and the name of the function it answers, the JSON instruction."""
        texts = [orjson.dumps(t.to_openai()).decode() for t in self.tools]
        fmt = self.response_format
        if fmt is not None and fmt.json_schema is not None:
            texts.append(orjson.dumps(fmt.json_schema.to_openai()).decode())
        elif fmt is not None and fmt.type == "json_object":
            texts.append(JSON_OBJECT_INSTRUCTION)
        names: dict[str, str] = {}
        for m in self.messages or ():
            for call in m.tool_calls:
                names[call.id] = call.name
                texts.append(call.id + call.name + call.arguments)
            if m.tool_call_id is not None:
                texts.append(m.tool_call_id + names.get(m.tool_call_id, ""))
        return texts

    # -- caching ----------------------------------------------------------------------------------
    def is_cacheable(self, deterministic_only: bool = True) -> bool:
        if self.cacheable is not None:
            return self.cacheable
        return not deterministic_only or self.temperature == 0

    def canonical(self) -> dict[str, Any]:
        """The request as the cache key sees it, ready for JSON: system prompt, messages (plain
        ones as ``(role, content)``; tool calls with parsed arguments; images by digest),
        parameters, ``max_tokens``, the pinned model, and tools, tool choice, parallel tool
        calls and response format when given. Model-agnostic unless the request pins a model."""
        body: dict[str, Any] = {
            "system": self.system_prompt(),
            "messages": [m._canonical() for m in self.chat_messages()],
            "parameters": self.parameters,
            "max_tokens": self.max_tokens,
            "model": self.model_id,
        }
        if self.tools:
            body["tools"] = [t.to_openai() for t in self.tools]
        choice = self.tool_choice
        if choice is not None:
            body["tool_choice"] = choice.to_openai() if isinstance(choice, NamedToolChoice) else choice
        if self.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = self.parallel_tool_calls
        if self.response_format is not None:
            body["response_format"] = self.response_format.to_openai()
        return body

    def cache_key(self) -> str:
        """Exact-match key on :meth:`canonical` (keys sorted at every level)."""
        raw = orjson.dumps(self.canonical(), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def prompt_hash(self) -> str:
        return hashlib.sha256(self.prompt_text().encode()).hexdigest()[:32]


_SAMPLING_KEYS = ("temperature", "top_p", "stop", "seed")


def _number_in(low: float, high: float) -> Any:
    def check(value: Any) -> bool:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and low <= value <= high)
    return check


def _stop_sequences(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return (isinstance(value, list | tuple) and 0 < len(value) <= _MAX_STOP_SEQUENCES
            and all(isinstance(s, str) and s for s in value))


_SAMPLING_CHECKS = {
    "temperature": _number_in(0, 2),
    "top_p": _number_in(0, 1),
    "stop": _stop_sequences,
    "seed": lambda value: isinstance(value, int) and not isinstance(value, bool),
}
_SAMPLING_RULES = {
    "temperature": "must be a number from 0 to 2",
    "top_p": "must be a number from 0 to 1",
    "stop": f"must be a non-empty string or a list of 1 to {_MAX_STOP_SEQUENCES} of them",
    "seed": "must be an integer",
}


def _check_tool_turns(messages: tuple[Message, ...]) -> None:
    """Each tool result answers a call of the assistant message just before its run of results
    (system messages aside), each call is answered once before the next other message, and
    call ids are unique in the conversation."""
    pending: dict[str, int] = {}  # call id -> index of the assistant message that made it
    answered: set[str] = set()
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            if call_id not in pending:
                problem = ("answers a tool call already answered" if call_id in answered
                           else "answers no tool call of the assistant message before it")
                raise _FieldProblem(f"messages[{i}].tool_call_id", problem)
            del pending[call_id]
            answered.add(call_id)
            continue
        _no_unanswered(pending)
        for j, call in enumerate(message.tool_calls):
            if call.id in pending or call.id in answered:
                raise _FieldProblem(f"messages[{i}].tool_calls[{j}].id",
                                    "repeats the id of an earlier tool call")
            pending[call.id] = i
    _no_unanswered(pending)


def _no_unanswered(pending: dict[str, int]) -> None:
    if pending:
        index = min(pending.values())
        raise _FieldProblem(f"messages[{index}].tool_calls",
                            "a tool call has no tool result before the next message")


class ProviderResult(BaseModel):
    """A normalized provider response: text, the tool calls the model made (in order) and why
    it stopped (``tool_calls`` whenever it made any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    finish_reason: FinishReason
    raw_finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    provider_request_id: str | None = None
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    rate_limit: RateLimitState | None = None


class StreamChunk(BaseModel):
    """One piece of a stream: a text delta, a tool call (whole, once its arguments are complete)
    or (last) the final result with usage and every tool call. A router's stream gives the
    ``selection_reason`` on the first chunk a model sends (before it is known to the caller,
    e.g. in HTTP headers) and on the final chunk the request's ``cost_usd`` (every attempt)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delta: str = ""
    tool_call: ToolCall | None = None
    done: bool = False
    result: ProviderResult | None = None
    model_id: str | None = None
    selection_reason: str | None = None
    cost_usd: Decimal | None = None


class ModelResponse(BaseModel):
    """What ``complete()`` returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    model_id: str
    provider: str
    text: str
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    cache_hit: bool = False
    attempts: int = 1
    quality_score: float | None = None
    selection_reason: str = ""
