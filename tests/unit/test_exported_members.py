"""The package's public surface: ``__all__`` is exact and sorted, and the original system's names
exist (in the manner of httpx's ``test_exported_members``)."""

from __future__ import annotations

import inspect
import types

import pytest

import api_model_management as amm

pytestmark = pytest.mark.unit

#: The component names users of the original system know (design §9), plus the entry point.
ORIGINAL_NAMES = (
    "ModelRegistry", "ModelSelector", "HealthChecker", "RateLimiter", "PerformanceMonitor",
    "FailoverManager", "ResponseEvaluator", "CacheManager", "CostTracker", "ModelRequest",
    "ModelManagement",
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
