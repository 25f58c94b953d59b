"""Start-up fails loudly when an actor cannot come up, and a corrupt log file does not stop one
(issue 10, item 6): real Ray, the actors of design §3 (no provider calls are made)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from api_model_management.config._load import demo_config, override
from api_model_management.errors import ComponentUnavailable
from api_model_management.events import EventLog, PerformanceAlert, RequestCompleted
from api_model_management.events._log import QUARANTINE_ALERT

pytestmark = pytest.mark.integration

KEYS = {
    "AMM_DEMO_OPENAI_KEY": "sk-test-OPENAI-0123456789abcdefSECRET",
    "AMM_DEMO_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdefSECRET",
    "AMM_DEMO_GOOGLE_KEY": "AIzaTEST0123456789abcdefSECRET",
}


def _config(data_dir):
    return override(demo_config(), settings={"data_dir": str(data_dir), "routers": {"replicas": 1}})


def _named_actors(ray, prefix: str, timeout_s: float = 10.0) -> list[str]:
    """The live named actors of this prefix, once none are left (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [n for n in ray.util.list_named_actors() if n.startswith(f"{prefix}:")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_start_raises_naming_the_actor_that_cannot_start_and_leaves_no_actor(ray_session, tmp_path):
    from api_model_management.runtime._system import ModelManagement

    # where the ledger journals its holds is a directory: its constructor raises
    (tmp_path / "state" / "ledger-holds.jsonl").mkdir(parents=True)
    prefix = f"fail-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ComponentUnavailable) as caught:
        ModelManagement.start(_config(tmp_path), env=KEYS, name_prefix=prefix)
    message = str(caught.value)
    assert message.startswith("the CostLedger could not start: IsADirectoryError"), message
    assert "ledger-holds.jsonl" in message and "\n" not in message
    assert caught.value.component == "CostLedger"
    assert _named_actors(ray_session, prefix) == []


def test_a_corrupt_log_file_is_quarantined_and_the_system_starts(ray_session, tmp_path):
    from api_model_management.runtime._system import ModelManagement

    log = EventLog(tmp_path, fsync="never")
    log.append([RequestCompleted(request_id="r1", latency_ms=1.0, cost_usd=Decimal("0.01"),
                                 provider="openai", model_id="gpt-4o-mini", agent_type="research")])
    [good] = log.snapshot("RequestCompleted")
    bad = good.path.rsplit("/", 1)[0] + "/0195f000-0000-7000-8000-000000000000-1.parquet"
    with open(bad, "wb") as out:
        out.write(b"PAR1 not a parquet file at all")
    prefix = f"ok-{uuid.uuid4().hex[:8]}"
    mm = ModelManagement.start(_config(tmp_path), env=KEYS, name_prefix=prefix)
    try:
        assert mm.budget_status() is not None  # the CostLedger is up
        assert (tmp_path / "quarantine" / "RequestCompleted" / good.date
                / "0195f000-0000-7000-8000-000000000000-1.parquet").exists()
        mm.flush()  # the ledger spooled the alert; the sink writes it to the log
        alerts = [e for e in EventLog(tmp_path).read("PerformanceAlert")
                  if isinstance(e, PerformanceAlert) and e.kind == QUARANTINE_ALERT]
        assert len(alerts) == 1 and "0195f000" in alerts[0].message
    finally:
        mm.shutdown()
