"""Loading the registry file, with every problem reported by its JSON path and a hint.

``load_config(path)`` reads and validates a registry file; ``config_from_dict(data)`` validates data
already in memory. Both raise one :class:`~api_model_management.errors.ConfigError` whose ``issues``
list holds a :class:`ConfigIssue` per problem, e.g. ``models[2].cost_per_1k_input_tokens: Input
should be greater than or equal to 0 (hint: ...)``. Field errors come from pydantic; cross-field
problems (unknown provider, duplicate id, unknown fallback, budget naming an unknown model, ...) are
found by :func:`cross_field_issues`, each as its own issue with its exact path. A model naming one
of the four built-in providers that the file does not define gets that provider's defaults
(``_defaults.py``); :func:`read_config` says which were added.

Configuration models are frozen. To get a modified copy use :func:`override` (re-validates) or, for
an unchecked copy of one model, ``model.model_copy(update={...})``.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ._defaults import BUILTIN_PROVIDERS, ProviderDefault, provider_defaults, with_defaults
from ._schema import ENV_NAME as _ENV_NAME
from ._schema import RegistryConfig

#: The capability names the shipped registries and the selector use (see config/README.md).
CAPABILITIES: frozenset[str] = frozenset(
    {
        "text-generation",
        "code-generation",
        "analysis",
        "reasoning",
        "vision",
        "long-context",
        "function-calling",
        "structured-output",
        "summarization",
    }
)

#: Context passed to pydantic so that ``RegistryConfig`` leaves cross-field checks to this module.
DEFER_CROSS_CHECKS = {"amm_defer_cross_checks": True}

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_SCHEMA_HINT = "see config/README.md or `amm config schema`"


class ConfigIssue(NamedTuple):
    """One configuration problem: where (a JSON path such as ``models[2].provider``), what, and how
    to fix it. ``$`` is the whole file."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


# --------------------------------------------------------------------------------------------
# public API


class LoadedConfig(NamedTuple):
    """A validated configuration and the built-in providers the loader added to it (see
    ``config/_defaults.py``), in the order the models first name them."""

    config: RegistryConfig
    provider_defaults: list[ProviderDefault]


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None,
                dotenv_path: str | Path | None = None) -> RegistryConfig:
    """Read and validate a registry file. Raises ``ConfigError`` listing every problem found.

    A provider that a model names and the file does not define (the original system's files
    define none) is one of the four built-in providers, located by the variables the official
    SDKs read (``OPENAI_BASE_URL``, ...) from ``env`` (default ``os.environ``) or ``.env``."""
    return read_config(path, env=env, dotenv_path=dotenv_path).config


def read_config(path: str | Path, *, env: Mapping[str, str] | None = None,
                dotenv_path: str | Path | None = None) -> LoadedConfig:
    """As :func:`load_config`, also saying which built-in providers were added."""
    source = str(path)
    data = _parse_json(_read_text(Path(path)), source)
    return _validate(data, source, env, dotenv_path)


def config_from_dict(data: Any, *, source: str = "<dict>", env: Mapping[str, str] | None = None,
                     dotenv_path: str | Path | None = None) -> RegistryConfig:
    """Validate registry data already in memory (as parsed from JSON), adding the built-in
    providers its models name and it does not define (as :func:`load_config`)."""
    return _validate(data, source, env, dotenv_path).config


def _validate(data: Any, source: str, env: Mapping[str, str] | None,
              dotenv_path: str | Path | None) -> LoadedConfig:
    if not isinstance(data, Mapping):
        _raise(source, [ConfigIssue("$", "the top level must be a JSON object", 'use {"models": [...]}')])
    defaults, problems = provider_defaults(data, env=env, dotenv_path=dotenv_path)
    if defaults:
        data = with_defaults(data, defaults)
    issues = [ConfigIssue(p.path, p.message, p.hint) for p in problems]
    config: RegistryConfig | None = None
    try:
        config = RegistryConfig.model_validate(data, context=DEFER_CROSS_CHECKS)
    except ValidationError as exc:
        issues.extend(issues_from_validation_error(exc))
    issues.extend(cross_field_issues(data))
    issues.extend(_undefined_provider_issues(data))
    if issues:
        _raise(source, issues)
    assert config is not None
    return LoadedConfig(config, defaults)


def demo_config() -> RegistryConfig:
    """The demo registry shipped inside the package (providers point at the local emulator)."""
    text = resources.files("api_model_management").joinpath("_data/demo_registry.json").read_text("utf-8")
    return config_from_dict(_parse_json(text, "<package>/_data/demo_registry.json"), source="demo registry")


def override(config: RegistryConfig, **changes: Any) -> RegistryConfig:
    """A validated copy of ``config`` with top-level fields changed.

    Mapping values are merged into the existing section recursively (lists are replaced), so
    ``override(cfg, settings={"store_prompts": True})`` changes one setting and keeps the rest.
    Values may be plain data or config models. Raises ``ConfigError`` if the result is invalid.
    """
    data = _deep_merge(config.model_dump(mode="python"), _plain(changes))
    return config_from_dict(data, source="<override>")


def with_provider_base_urls(config: RegistryConfig, base_urls: Mapping[str, str]) -> RegistryConfig:
    """A copy whose named providers use new base URLs (e.g. the emulator's). Unknown names fail."""
    unknown = [name for name in base_urls if name not in config.providers]
    if unknown:
        _raise(
            "<with_provider_base_urls>",
            [
                ConfigIssue(_join(("providers", name)), "no such provider", _known(config.providers))
                for name in unknown
            ],
        )
    return override(config, providers={name: {"base_url": url} for name, url in base_urls.items()})


def with_emulator_port(config: RegistryConfig, port: int, host: str = "127.0.0.1") -> RegistryConfig:
    """A copy whose every provider keeps its URL path but talks to ``http://host:port``."""
    urls = {}
    for name, provider in config.providers.items():
        parts = urlsplit(provider.base_url)
        urls[name] = urlunsplit(("http", f"{host}:{port}", parts.path, "", ""))
    return with_provider_base_urls(config, urls)


def config_warnings(config: RegistryConfig) -> list[ConfigIssue]:
    """Problems that do not stop the system but are probably mistakes (unknown capability names,
    nothing enabled)."""
    warnings: list[ConfigIssue] = []
    for i, model in enumerate(config.models):
        for j, capability in enumerate(model.capabilities):
            if capability not in CAPABILITIES:
                warnings.append(
                    ConfigIssue(
                        f"models[{i}].capabilities[{j}]",
                        f"capability {capability!r} is not in the shared vocabulary",
                        _did_you_mean(capability, CAPABILITIES) or ", ".join(sorted(CAPABILITIES)),
                    )
                )
    if not any(model.enabled for model in config.models):
        warnings.append(ConfigIssue("models", "no model is enabled", 'set "enabled": true on at least one'))
    return warnings


# --------------------------------------------------------------------------------------------
# reading and parsing


def _read_text(path: Path) -> str:
    source = str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        reason, hint = "file not found", "check the path, e.g. config/model_registry.json"
    except IsADirectoryError:
        reason, hint = "is a directory, not a file", "pass the JSON file itself"
    except PermissionError:
        reason, hint = "permission denied", "make the file readable by this user"
    except UnicodeDecodeError as exc:
        reason, hint = f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8 JSON"
    except OSError as exc:
        reason, hint = exc.strerror or type(exc).__name__, "check the path and the file system"
    _raise(source, [ConfigIssue("$", f"cannot read {source}: {reason}", hint)])


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        _raise(source, [ConfigIssue("$", message, _json_hint(exc.msg))])


def _json_hint(msg: str) -> str:
    if "delimiter" in msg:
        return "a comma or colon is missing, or there is a trailing comma (JSON allows none)"
    if "property name" in msg:
        return "keys need double quotes, and JSON allows no trailing comma or comments"
    return "check the JSON syntax near that position"


def _raise(source: str, issues: Sequence[ConfigIssue]) -> typing.NoReturn:
    count = len(issues)
    lines = "\n".join(f"  {issue}" for issue in issues)
    noun = "problem" if count == 1 else "problems"
    raise ConfigError(f"invalid configuration {source}: {count} {noun}\n{lines}", issues=list(issues), source=source)


# --------------------------------------------------------------------------------------------
# pydantic errors → issues


def issues_from_validation_error(exc: ValidationError, model: type[BaseModel] = RegistryConfig) -> list[ConfigIssue]:
    """One issue per pydantic error, its ``loc`` turned into a JSON path (no input values)."""
    issues = []
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        issues.append(ConfigIssue(_join(loc), message, _hint_for(error, loc, model)))
    return issues


def _join(loc: Iterable[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path or "$"


def _hint_for(error: Mapping[str, Any], loc: tuple, model: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return _did_you_mean(str(loc[-1]), allowed) or (
            f"remove it; allowed here: {', '.join(sorted(allowed))}" if allowed else "remove it"
        )
    if kind == "missing":
        return "add this required field"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return _bound_hint(kind, ctx)
    if kind in _NUMBER_KINDS:
        return _number_hint(kind, loc)
    if kind == "finite_number":
        return "use a finite number"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("too_short", "string_too_short"):
        return "it must not be empty"
    if "sum to 1" in str(error["msg"]):
        return "scale the weights so they add up to exactly 1.0"
    if "ascending" in str(error["msg"]):
        return "list thresholds from smallest to largest, e.g. [0.5, 0.8, 1.0]"
    return _SCHEMA_HINT


_INT_KINDS = frozenset({"int_parsing", "int_type", "int_from_float"})
_NUMBER_KINDS = _INT_KINDS | {"decimal_parsing", "decimal_type", "float_parsing", "float_type"}


def _number_hint(kind: str, loc: tuple) -> str:
    """What a number at ``loc`` looks like: the price hint only for prices."""
    name = str(loc[-1]) if loc else ""
    if name.startswith("cost_per_1k"):
        return "use a plain number such as 0.0025 (prices are USD per 1k tokens)"
    if kind in _INT_KINDS:
        return "use a whole number such as 60"
    if name.endswith("_usd"):
        return "use a plain number of US dollars such as 25.0"
    return "use a plain number such as 0.5"


def _bound_hint(kind: str, ctx: Mapping[str, Any]) -> str:
    words = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    bound = next(iter(ctx.values()), "the limit")
    return f"use a value {words[kind]} {bound}"


def _fields_at(model: type[BaseModel], loc: tuple) -> set[str]:
    """The field names allowed at ``loc`` inside ``model`` (empty if the path cannot be followed)."""
    annotation: Any = model
    for part in loc:
        annotation = _strip_optional(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return set()
            annotation = field.annotation
        elif origin in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return set()
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(annotation.model_fields)
    return set()


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _known(names: Iterable[str]) -> str:
    names = sorted(names)
    return f"known: {', '.join(names)}" if names else "none is defined"


# --------------------------------------------------------------------------------------------
# cross-field checks (on raw data, so they run even when some fields are invalid)


def cross_field_issues(data: Mapping[str, Any]) -> list[ConfigIssue]:
    """Problems that involve more than one field, each with its exact path. Works on raw data
    (as parsed from JSON or dumped from a model) and skips parts that are malformed, which the
    field validation reports on its own."""
    models = data.get("models")
    models = models if isinstance(models, list) else []
    providers = data.get("providers")
    providers = providers if isinstance(providers, Mapping) else {}
    settings = _section(data, "settings")
    model_ids: set[str] = {
        m["id"] for m in models if isinstance(m, Mapping) and isinstance(m.get("id"), str)
    }
    return [
        *_model_issues(models, providers),
        *_fallback_issues(models, model_ids),
        *_provider_issues(providers),
        *_judge_issues(settings, model_ids),
        *_budget_issues(settings, providers, model_ids),
        *_concurrency_issues(settings, providers, model_ids),
        *_gateway_issues(settings, model_ids),
    ]


def _section(data: Any, *keys: str) -> Mapping[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _undefined_provider_issues(data: Mapping[str, Any]) -> Iterable[ConfigIssue]:
    """Models naming a provider that is neither defined nor built in, when no provider is
    defined at all (otherwise :func:`_model_issues` reports them)."""
    if data.get("providers"):
        return
    models = data.get("models")
    for i, model in enumerate(models if isinstance(models, list) else []):
        provider = model.get("provider") if isinstance(model, Mapping) else None
        if isinstance(provider, str) and provider not in BUILTIN_PROVIDERS:
            yield ConfigIssue(
                f"models[{i}].provider", f"unknown provider {provider!r}",
                _did_you_mean(provider, BUILTIN_PROVIDERS)
                or f"define it under providers, or use one of {', '.join(BUILTIN_PROVIDERS)}",
            )


def _model_issues(models: list, providers: Mapping[str, Any]) -> Iterable[ConfigIssue]:
    seen: dict[str, int] = {}
    for i, model in enumerate(models):
        if not isinstance(model, Mapping):
            continue
        model_id, provider = model.get("id"), model.get("provider")
        if isinstance(model_id, str):
            if model_id in seen:
                yield ConfigIssue(
                    f"models[{i}].id",
                    f"duplicate model id {model_id!r} (first at models[{seen[model_id]}])",
                    "model ids must be unique; rename or remove one",
                )
            seen.setdefault(model_id, i)
        if providers and isinstance(provider, str) and provider not in providers:
            yield ConfigIssue(
                f"models[{i}].provider",
                f"unknown provider {provider!r}",
                _did_you_mean(provider, providers) or _known(providers),
            )


def _fallback_issues(models: list, model_ids: set[str]) -> Iterable[ConfigIssue]:
    for i, model in enumerate(models):
        fallbacks = model.get("fallbacks") if isinstance(model, Mapping) else None
        for j, fallback in enumerate(fallbacks if isinstance(fallbacks, list) else []):
            if isinstance(fallback, str) and fallback not in model_ids:
                yield ConfigIssue(
                    f"models[{i}].fallbacks[{j}]",
                    f"fallback names unknown model {fallback!r}",
                    _did_you_mean(fallback, model_ids) or "use the id of a model in this file",
                )
            elif isinstance(model, Mapping) and fallback == model.get("id"):
                yield ConfigIssue(f"models[{i}].fallbacks[{j}]", "a model cannot fall back to itself", "remove it")


def _provider_issues(providers: Mapping[str, Any]) -> Iterable[ConfigIssue]:
    for name, provider in providers.items():
        env_name = provider.get("api_key_env") if isinstance(provider, Mapping) else None
        if isinstance(env_name, str) and not _ENV_NAME.match(env_name):
            # The value is not echoed: a key pasted here by mistake must not reach a message.
            yield ConfigIssue(
                _join(("providers", name, "api_key_env")),
                "api_key_env must be the NAME of an environment variable (letters, digits, _)",
                "put the key itself in the environment or .env, e.g. OPENAI_API_KEY=...",
            )


def _judge_issues(settings: Mapping[str, Any], model_ids: set[str]) -> Iterable[ConfigIssue]:
    judge = _section(settings, "quality", "judge")
    if judge.get("enabled") is True and judge.get("model_id") not in model_ids:
        model_id = judge.get("model_id")
        yield ConfigIssue(
            "settings.quality.judge.model_id",
            f"judge model {model_id!r} is not a known model",
            _did_you_mean(str(model_id), model_ids) or "name a model id from models[]",
        )


def _budget_issues(settings: Mapping[str, Any], providers: Mapping, model_ids: set[str]) -> Iterable[ConfigIssue]:
    from ..budget._limits import per_key

    limits = _section(settings, "budgets").get("limits")
    for i, limit in enumerate(limits if isinstance(limits, list) else []):
        if not isinstance(limit, Mapping):
            continue
        scope, key = limit.get("scope", "global"), limit.get("key", "*")
        path = f"settings.budgets.limits[{i}].key"
        if isinstance(scope, str) and isinstance(key, str) and per_key(scope, key):
            continue  # one limit for each key of the scope (budget.applicable_limits)
        if scope == "provider" and providers and key not in providers:
            yield ConfigIssue(path, f"budget names unknown provider {key!r}", _did_you_mean(str(key), providers) or _known(providers))
        elif scope == "model" and key not in model_ids:
            yield ConfigIssue(path, f"budget names unknown model {key!r}", _did_you_mean(str(key), model_ids) or "use a model id from models[]")


def _concurrency_issues(settings: Mapping[str, Any], providers: Mapping, model_ids: set[str]) -> Iterable[ConfigIssue]:
    concurrency = _section(settings, "concurrency")
    per_provider, per_model = concurrency.get("per_provider"), concurrency.get("per_model")
    for name in per_provider if isinstance(per_provider, Mapping) and providers else ():
        if name not in providers:
            yield ConfigIssue(_join(("settings", "concurrency", "per_provider", name)), f"unknown provider {name!r}", _known(providers))
    for name in per_model if isinstance(per_model, Mapping) else ():
        if name not in model_ids:
            yield ConfigIssue(_join(("settings", "concurrency", "per_model", name)), f"unknown model {name!r}", "use a model id from models[]")


def _gateway_issues(settings: Mapping[str, Any], model_ids: set[str]) -> Iterable[ConfigIssue]:
    """Models a virtual key or an alias names must exist; an alias must not hide a model id."""
    gateway = _section(settings, "gateway")
    keys = gateway.get("keys")
    for i, key in enumerate(keys if isinstance(keys, list) else []):
        allowed = key.get("allowed_models") if isinstance(key, Mapping) else None
        yield from _unknown_models(allowed, f"settings.gateway.keys[{i}].allowed_models", model_ids)
    aliases = gateway.get("aliases")
    for name, alias in (aliases.items() if isinstance(aliases, Mapping) else ()):
        path = _join(("settings", "gateway", "aliases", name))
        if name in model_ids or name == "auto":
            yield ConfigIssue(path, f"alias {name!r} is a model id or 'auto' (built in)",
                              "give the alias another name, e.g. auto:cheap")
        models = alias.get("models") if isinstance(alias, Mapping) else None
        yield from _unknown_models(models, f"{path}.models", model_ids)


def _unknown_models(models: Any, path: str, model_ids: set[str]) -> Iterable[ConfigIssue]:
    for j, model_id in enumerate(models if isinstance(models, list) else []):
        if isinstance(model_id, str) and model_id not in model_ids:
            yield ConfigIssue(f"{path}[{j}]", f"unknown model {model_id!r}",
                              _did_you_mean(model_id, model_ids) or "use a model id from models[]")


# --------------------------------------------------------------------------------------------
# copies


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _deep_merge(base: Any, changes: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(changes, Mapping):
        merged = dict(base)
        for key, value in changes.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return changes
