"""``amm config validate`` and ``amm config schema``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import RegistryConfig
from ..config._load import config_warnings, read_config
from ..config._secrets import Secrets, load_secrets
from ..errors import ConfigError

EXIT_OK = 0
EXIT_INVALID = 2


def validate_command(path: Path, *, dotenv_path: Path | None = None) -> int:
    """Print a summary of a valid registry (exit 0) or every problem, one per line (exit 2)."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        config, defaults = read_config(path, dotenv_path=dotenv_path)
        secrets = load_secrets(config, dotenv_path=dotenv_path)
    except ConfigError as exc:
        issues = exc.issues
        noun = "problem" if len(issues) == 1 else "problems"
        err.print(f"error: {path} is invalid ({len(issues)} {noun}):", markup=False, style="red")
        for issue in issues:
            err.print(f"  {issue}", markup=False)
        return EXIT_INVALID
    out.print(f"{path}: valid (version {config.version}, updated {config.updated or 'unknown'})", markup=False)
    out.print(_providers_table(config))
    for default in defaults:
        out.print(f"default provider applied (not defined in the file): {default}", markup=False)
    _print_keys(out, secrets)
    out.print(_budgets_table(config))
    for warning in config_warnings(config):
        err.print(f"warning: {warning}", markup=False, style="yellow")
    return EXIT_OK


def schema_command() -> int:
    """Print the registry file's JSON Schema."""
    sys.stdout.write(json.dumps(RegistryConfig.model_json_schema(), indent=2) + "\n")
    return EXIT_OK


def _providers_table(config: RegistryConfig) -> Table:
    total = Counter(model.provider for model in config.models)
    enabled = Counter(model.provider for model in config.models if model.enabled)
    table = Table(title=f"{len(config.models)} models, {sum(enabled.values())} enabled")
    for column in ("provider", "type", "enabled/total", "base_url"):
        table.add_column(column, overflow="fold")
    for name in sorted(set(config.providers) | set(total)):
        provider = config.providers.get(name)
        table.add_row(
            escape(name),
            provider.type if provider else "-",
            f"{enabled[name]}/{total[name]}",
            provider.base_url if provider else "-",
        )
    return table


def _print_keys(out: Console, secrets: Secrets) -> None:
    out.print("API keys:")
    for name in secrets.providers:
        available, reason = secrets.availability(name)
        state = "[green]available[/]" if available else "[red]unavailable[/]"
        out.print(f"  {escape(name)}: {state} ({escape(reason)})")


def _budgets_table(config: RegistryConfig) -> Table:
    budgets = config.settings.budgets
    table = Table(title=f"budgets ({budgets.enforcement}, {budgets.timezone}, alerts at {budgets.alert_thresholds})")
    for column in ("scope", "key", "window", "limit_usd"):
        table.add_column(column)
    for limit in budgets.limits:
        table.add_row(limit.scope, limit.key, limit.window, str(limit.limit_usd))
    if not budgets.limits:
        table.add_row("-", "-", "-", "none (no budget enforced)")
    return table
