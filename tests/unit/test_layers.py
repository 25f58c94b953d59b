"""The layers hold: Ray only in ``api_model_management/runtime/``; unit and property tests cannot
import Ray or open a network socket (the guard in ``tests/conftest.py``)."""

from __future__ import annotations

import ast
import asyncio
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "api_model_management"


def _imports_ray(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ray":
            lines.append(node.lineno)
    return lines


def test_only_the_runtime_package_imports_ray():
    offenders = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if "runtime" not in path.relative_to(PACKAGE).parts and (lines := _imports_ray(path))
    }
    assert offenders == {}


def test_inside_the_runtime_only_the_wrapper_imports_ray():
    """Every Ray call goes through ``runtime/_ray.py``."""
    offenders = [p.name for p in (PACKAGE / "runtime").glob("*.py")
                 if p.name != "_ray.py" and _imports_ray(p)]
    assert offenders == []


def test_a_unit_test_cannot_import_ray():
    with pytest.raises(AssertionError, match="must not import Ray"):
        import ray  # noqa: F401


def test_a_unit_test_cannot_open_a_network_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(AssertionError, match="network sockets"):
            sock.connect(("127.0.0.1", 9))
        with pytest.raises(AssertionError, match="network sockets"):
            sock.bind(("127.0.0.1", 0))
    finally:
        sock.close()


def test_event_loops_still_work_under_the_guard():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42
