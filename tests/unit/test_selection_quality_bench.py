"""The reliability-state report of ``benchmarks/selection_quality.py`` (imported by path:
benchmarks are not a package): read from a real event log of real selections."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from api_model_management import ModelRequest, config
from api_model_management._clock import ManualClock
from api_model_management.events._log import EventLog
from api_model_management.selection import SelectorCore
from api_model_management.selection._quality import QualityFold
from api_model_management.selection._stats import ModelStatsSnapshot

pytestmark = pytest.mark.unit

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "selection_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("selection_quality_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["selection_quality_bench"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("selection_quality_bench", None)


def _model(mid: str, price: str) -> config.ModelConfig:
    return config.ModelConfig(
        id=mid, provider="openai", name=mid, capabilities=["text-generation"],
        cost_per_1k_input_tokens=Decimal(price), cost_per_1k_output_tokens=Decimal(price),
        rate_limits=config.RateLimits(requests_per_minute=60, tokens_per_minute=100_000),
        context_window=128_000, average_response_time_ms=500.0, quality_prior=0.7,
    )


def test_states_are_read_from_the_log_and_moves_counted(bench, tmp_path):
    cfg = config.RegistryConfig(models=[_model("strong", "0.01"), _model("weak", "0.0006")],
                                settings=config.Settings())
    sel = SelectorCore(cfg, clock=ManualClock())
    sel.update_quality(QualityFold({"strong": 0.7, "weak": 0.7}).snapshot())
    log = EventLog(tmp_path, fsync="never")

    def decide(strong_ms: float, version: str) -> None:
        sel.update_stats({"strong": ModelStatsSnapshot("strong", 500, 500, 0, strong_ms, 1.0, None, 0),
                          "weak": ModelStatsSnapshot("weak", 500, 500, 0, 20.0, 1.0, None, 0)})
        sel.set_weights(config.SelectionWeights(), version)
        sel.clear_assignment_cache()
        request = ModelRequest(prompt="What is 2 + 2?")
        log.append([sel.select(request).to_event(request)])

    decide(20.0, "logged")
    decide(30.0, "logged")  # the same 100 ms step: the same state
    states = bench.reliability_states(tmp_path)
    assert states == [{"strong": 0.6, "weak": 0.6}] * 2
    decide(40.0, "tuned")
    decide(250.0, "tuned")  # two steps slower
    served = bench.reliability_states(tmp_path, "tuned")
    assert len(served) == 2 and served[1]["strong"] == pytest.approx(0.3 + 0.3 / 1.2, abs=1e-4)
    moved = bench.state_moved(states[-1], served)
    assert moved["decisions"] == 2 and moved["at_another_state"] == 1
    assert moved["states"][0][1] == 1 and moved["log_end_state"] == {"strong": 0.6, "weak": 0.6}
