"""Start-up never joins a dead cluster and fails fast on one it cannot reach (issue 10, item 12).

Each case runs in its own interpreter (the test session already runs Ray), with Ray's temp dir
pointed at a fresh folder (``RAY_TMPDIR``) so that a stale ``ray_current_cluster`` file can be
planted there: the address a Ray that died uncleanly leaves behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, timeout_s: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
    ray_tmp = Path(tempfile.mkdtemp(prefix="amm-", dir="/tmp"))
    (ray_tmp / "ray").mkdir(exist_ok=True)
    # what `ray start` leaves when its cluster later dies: an address nobody answers on
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return done, time.monotonic() - started


def test_without_an_address_a_fresh_local_ray_starts_despite_a_stale_cluster_file():
    code = (
        "import ray\n"
        "from api_model_management.runtime import _ray\n"
        "owns = _ray.start_or_join(None, num_cpus=1)\n"
        "print('owns', owns, 'gcs', ray.get_runtime_context().gcs_address)\n"
        "_ray.shutdown()\n"
    )
    done, elapsed = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "owns True" in done.stdout
    assert "127.0.0.1:1\n" not in done.stdout and ":1\n" not in done.stdout.split("gcs ")[1]
    assert elapsed < 90


def test_an_unreachable_address_fails_fast_with_one_clear_line():
    code = (
        "from api_model_management import ModelManagement, ComponentUnavailable\n"
        "try:\n"
        "    ModelManagement.start('config/demo_registry.json', address='127.0.0.1:1')\n"
        "except ComponentUnavailable as exc:\n"
        "    print('refused:', exc)\n"
    )
    done, elapsed = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("refused:")]
    assert "127.0.0.1:1" in line and "cannot reach" in line
    assert elapsed < 20
