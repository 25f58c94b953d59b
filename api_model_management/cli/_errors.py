"""How the ``amm`` commands say what went wrong: one line on stderr, exit code 2 (bad input).

A configuration error names its problems (path, message and hint), not only how many there are;
an ``OSError`` names its reason and file; anything else gives the first line of its message.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ..errors import ConfigError

#: Problems of a configuration named on the line; the rest are counted (``amm config validate``
#: lists every one).
SHOWN_ISSUES = 3


def error_line(exc: BaseException) -> str:
    """``exc`` as one line of text (no newline)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0] if lines else type(exc).__name__
    if isinstance(exc, ConfigError) and exc.issues:
        return _config_line(exc, head)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return head


def _config_line(exc: ConfigError, head: str) -> str:
    issues = exc.issues
    source = getattr(exc, "source", None)
    if source is None:  # a single-issue error whose message is the issue's (e.g. a log level)
        hint = issues[0].hint if len(issues) == 1 and issues[0].message == head else ""
        return f"{head} (hint: {hint})" if hint else head
    shown = "; ".join(str(issue) for issue in issues[:SHOWN_ISSUES])
    count = len(issues)
    if count == 1:
        return f"invalid configuration {source}: {shown}"
    more = count - SHOWN_ISSUES
    tail = f"; and {more} more (`amm config validate {source}` lists them all)" if more > 0 else ""
    return f"invalid configuration {source}: {count} problems: {shown}{tail}"


def print_error(exc: BaseException | str) -> int:
    """Print ``error: <one line>`` to stderr; returns 2, the exit code of bad input."""
    text = exc if isinstance(exc, str) else error_line(exc)
    Console(stderr=True).print(f"[red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    return 2
