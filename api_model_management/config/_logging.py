"""Logging for the package: level from ``API_MODEL_LOG_LEVEL`` and redaction of API keys.

Redaction is done in place on each log record that passes through the package logger
``api_model_management`` (directly or propagated from a child logger), so every handler after it,
including the root logger's, sees only the redacted text. It removes anything that looks like an API
key (``sk-...``, ``sk-ant-...``, ``AIza...``, Bearer tokens, ``x-api-key`` / ``x-goog-api-key`` /
``authorization`` header values, ``key=`` query parameters) and every secret value registered with
:func:`register_secret` (``load_secrets`` registers the keys it reads).

The level: ``API_MODEL_LOG_LEVEL`` when set wins over ``settings.log_level``, which wins over INFO.
Every entry point applies it: ``ModelManagement.start`` (which passes the level in effect to the
actors in their configuration: :func:`with_effective_log_level`, :func:`configure_actor_logging`),
the in-process facades (:func:`configure_logging_for`) and every ``amm`` command.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError

if TYPE_CHECKING:
    from ._schema import RegistryConfig

PACKAGE_LOGGER = "api_model_management"
LEVEL_ENV = "API_MODEL_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDACTED = "[REDACTED]"
#: Registered secrets shorter than this are not redacted by value (they would mangle ordinary text).
MIN_SECRET_LENGTH = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{16,}"), REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    (
        re.compile(r"(?i)\b((?:x-api-key|x-goog-api-key|api-key|authorization)[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',;}]+"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)([?&]key=)[^&\s\"']+"), r"\1" + REDACTED),
)


def redact(text: str, secrets: frozenset[str] | set[str] = frozenset()) -> str:
    """``text`` with registered secrets and anything that looks like an API key replaced."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and formatted traceback) with secrets removed; never drops it."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add_secret(self, value: str) -> None:
        if len(value) >= MIN_SECRET_LENGTH:
            self._secrets.add(value)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_amm_redacted", False):
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._amm_redacted = True
        return True


class _RedactionHandler(logging.Handler):
    """Sits on the package logger so records from child loggers are redacted before they propagate
    to the root logger's handlers. Emits nothing itself."""

    def emit(self, record: logging.LogRecord) -> None:
        return None


def redaction_filter() -> RedactingFilter:
    """The redaction filter on the package logger, installed on first use (idempotent)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, RedactingFilter):
            return existing
    redactor = RedactingFilter()
    logger.addFilter(redactor)
    handler = _RedactionHandler(level=logging.NOTSET)
    handler.addFilter(redactor)
    logger.addHandler(handler)
    return redactor


def register_secret(value: str) -> None:
    """Redact ``value`` from every later log record of the package."""
    redaction_filter().add_secret(value)


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a secret registered in this process, or looks like a key."""
    if any(pattern.search(text) for pattern, _ in _PATTERNS):
        return True
    return any(secret in text for secret in redaction_filter().secrets)


def parse_level(value: str, source: str = LEVEL_ENV) -> int:
    """A level name (any case) as a ``logging`` level number; ``ConfigError`` if it is not one."""
    name = value.strip().upper()
    if name not in LEVELS:
        from ._load import ConfigIssue

        shown = value if len(value) <= 20 else value[:20] + "..."
        message = f"{source}={shown!r} is not a log level"
        raise ConfigError(message, issues=[ConfigIssue(f"${source}", message, f"use one of {', '.join(LEVELS)}")])
    return getattr(logging, name)


def effective_level(level: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The name of the level in effect: ``API_MODEL_LOG_LEVEL`` in ``env`` (default ``os.environ``)
    when set and not blank, else ``level`` (e.g. ``settings.log_level``), else INFO: the
    environment variable wins over the configuration. ``ConfigError`` naming the source when the
    chosen value is not a level name."""
    env = os.environ if env is None else env
    from_env = env.get(LEVEL_ENV, "").strip()
    value, source = (from_env, LEVEL_ENV) if from_env else (level or "INFO", "log_level")
    parse_level(value, source=source)
    return value.strip().upper()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as ``logging.lastResort``),
    so a handler installed while stderr was replaced (a test runner, rich's progress display)
    never writes to a stream that has since been closed."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Set up the package logger: redaction, a stderr handler and a level.

    The level is ``API_MODEL_LOG_LEVEL`` when set (it wins over the configuration, so operators
    can change it without editing the registry), else ``level`` (e.g. ``settings.log_level``),
    else INFO (:func:`effective_level`). Returns the level number. Calling it again replaces the
    handler it added before.
    """
    number = parse_level(effective_level(level, env=env))
    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_amm_console", False)]:
        logger.removeHandler(handler)
    console = _StderrHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console._amm_console = True  # type: ignore[attr-defined]  # our marker on a stdlib handler
    console.addFilter(redaction_filter())
    logger.addHandler(console)
    logger.setLevel(number)
    return number


def configure_logging_for(config: RegistryConfig | None, *,
                          env: Mapping[str, str] | None = None) -> int:
    """:func:`configure_logging` at ``config.settings.log_level`` (INFO without a configuration),
    ``API_MODEL_LOG_LEVEL`` winning. What the in-process facades and the ``amm`` commands call
    when they are given a configuration. Returns the level number."""
    return configure_logging(config.settings.log_level if config is not None else None, env=env)


def with_effective_log_level(config: RegistryConfig, *,
                             env: Mapping[str, str] | None = None) -> RegistryConfig:
    """A copy of ``config`` whose ``settings.log_level`` is the level in effect in this process
    (``API_MODEL_LOG_LEVEL`` winning): the configuration handed to the actors, so that they log
    at the driver's level whatever their own environment holds."""
    name = effective_level(config.settings.log_level, env=env)
    if name == config.settings.log_level:
        return config
    settings = config.settings.model_copy(update={"log_level": name})
    return config.model_copy(update={"settings": settings})


def configure_actor_logging(config: RegistryConfig) -> int:
    """:func:`configure_logging` in an actor's constructor, at ``config.settings.log_level``
    exactly: the driver already resolved ``API_MODEL_LOG_LEVEL`` into it
    (:func:`with_effective_log_level`), and the actor's own environment (a worker on another node
    may have a different one) is not consulted. Returns the level number."""
    return configure_logging(config.settings.log_level, env={})
