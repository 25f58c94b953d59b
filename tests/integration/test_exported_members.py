"""The package's public surface: ``__all__`` is exact and sorted, derived from the one export list,
matched by the type checkers' imports, and the original system's names exist (in the manner of
httpx's ``test_exported_members``). Integration layer: resolving ``ModelManagement`` imports Ray
(nothing is started)."""

from __future__ import annotations

import inspect
import types

import pytest

import api_model_management as amm

pytestmark = pytest.mark.integration

#: The component names users of the original system know (design §9), plus the entry point.
ORIGINAL_NAMES = (
    "ModelRegistry", "ModelSelector", "HealthChecker", "RateLimiter", "PerformanceMonitor",
    "FailoverManager", "ResponseEvaluator", "CacheManager", "CostTracker", "ModelRequest",
    "ModelManagement", "ModelOptimizerIntegration", "APIModelAssignment", "AgentType",
)
INCLUDED_PRIVATE = {"__version__"}


def public_names() -> list[str]:
    """Names the package offers (``dir``: bound or lazily exported) that are not submodules and not
    private."""
    return [
        name for name in dir(amm)
        if (not name.startswith("_") or name in INCLUDED_PRIVATE)
        and not isinstance(getattr(amm, name), types.ModuleType)
    ]


def test_all_is_sorted_and_without_duplicates():
    assert amm.__all__ == sorted(amm.__all__)
    assert len(set(amm.__all__)) == len(amm.__all__)


def test_every_exported_name_exists():
    missing = [name for name in amm.__all__ if not hasattr(amm, name)]
    assert missing == []


def test_all_is_complete_for_public_names():
    assert sorted(public_names()) == amm.__all__


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from api_model_management import *", namespace)  # noqa: S102
    namespace.pop("__builtins__")
    assert sorted(namespace) == amm.__all__


@pytest.mark.parametrize("name", ORIGINAL_NAMES)
def test_the_original_systems_names_exist(name):
    assert name in amm.__all__
    member = getattr(amm, name)
    assert inspect.isclass(member)
    assert member.__doc__, f"{name} has no docstring"


def test_exported_errors_share_one_root():
    errors = [getattr(amm, n) for n in amm.__all__
              if inspect.isclass(getattr(amm, n)) and issubclass(getattr(amm, n), BaseException)]
    assert errors and all(issubclass(e, amm.AMMError) for e in errors)


def test_exported_classes_say_where_they_live():
    # public classes are defined inside the package (no third-party re-exports by accident)
    for name in amm.__all__:
        member = getattr(amm, name)
        if inspect.isclass(member):
            assert member.__module__.startswith("api_model_management"), name


def test_version_is_a_string():
    assert isinstance(amm.__version__, str) and amm.__version__.count(".") >= 1


def test_all_is_derived_from_the_one_export_list():
    assert amm.__all__ == sorted([*amm._EXPORTS, "__version__"])


def test_type_checking_imports_match_the_export_list():
    """The ``if TYPE_CHECKING:`` block imports exactly the exported names, each from the module
    the export list names (so IDEs and mypy see what users get)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(amm.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If)
                 and getattr(n.test, "id", "") == "_TYPE_CHECKING")
    imported = {alias.name: "." * node.level + (node.module or "")
                for node in block.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert imported == amm._EXPORTS
