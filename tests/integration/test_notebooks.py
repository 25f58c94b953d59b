"""The analyst notebook runs top to bottom on a real event log and draws its plots.

The log is made here: 60 requests of four agent types through the in-process request path against
the emulator with faults (Ollama overloaded half the time, OpenAI with some 500s), some of them
repeated deterministic prompts (cache hits); the spool is then ingested into Parquet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from api_model_management import ModelRequest, SelectionConstraints
from api_model_management.config._load import demo_config, with_provider_base_urls
from api_model_management.emulator import Profile
from api_model_management.errors import AMMError
from api_model_management.events._ingest import SpoolIngestor, read_all_events
from api_model_management.projections import CHARTS
from api_model_management.routing._factory import build_local_router

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_event_log.ipynb"
KEYS = {"AMM_DEMO_OPENAI_KEY": "demo-openai", "AMM_DEMO_ANTHROPIC_KEY": "demo-anthropic",
        "AMM_DEMO_GOOGLE_KEY": "demo-google"}
AGENTS = ("research", "coder", "reviewer", "planner")
OPTIONS = {"coder": {"constraints": SelectionConstraints(allowed_providers=("openai", "google"))},
           "reviewer": {"constraints": SelectionConstraints(allowed_providers=("anthropic",))}}
FAULTS = {
    "seed": 5,
    "defaults": {"latency": {"kind": "lognormal", "median_s": 0.01, "sigma": 0.5}},
    "providers": {"ollama": {"error_rates": {"503": 0.6}}, "openai": {"error_rates": {"500": 0.2}}},
}
REQUESTS = 60


def _request(i: int) -> ModelRequest:
    agent = AGENTS[i % len(AGENTS)]
    deterministic = i % 3 == 0  # repeats every 12 requests: cache hits
    prompt = f"Define term {i % 4} precisely" if deterministic else f"Explain topic {i} for a {agent}"
    return ModelRequest(prompt=prompt, agent_type=agent, task_id=f"t-{i}", max_tokens=200,
                        parameters={"temperature": 0.0 if deterministic else 0.7},
                        **OPTIONS.get(agent, {}))


async def _run(router) -> list:
    results = []
    try:
        for i in range(REQUESTS):  # one after another, so repeated prompts find the cache filled
            try:
                results.append(await router.complete(_request(i)))
            except AMMError as exc:
                results.append(exc)
    finally:
        for adapter in router.adapters.values():
            await adapter.aclose()
    return results


def _make_log(data_dir: Path, emulator) -> list:
    config = demo_config()
    config = with_provider_base_urls(
        config, {name: emulator.url_for(p.type) for name, p in config.providers.items()})
    emulator.set_profile(Profile.model_validate(FAULTS))
    router = build_local_router(config, env=KEYS, data_dir=data_dir)
    try:
        results = asyncio.run(_run(router))
    finally:
        router.events.close()
    assert SpoolIngestor(data_dir).ingest() > REQUESTS
    return results


@contextlib.contextmanager
def _on_loopback_s3(data_dir: Path, monkeypatch) -> Iterator[str]:
    """The log under ``data_dir`` copied to an S3 server on loopback (moto); its s3:// URI, with
    the AWS_* variables set (the notebook's kernel inherits them)."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        for name, value in {"AWS_ACCESS_KEY_ID": "AKIDNOTEBOOK", "AWS_SECRET_ACCESS_KEY": "nb-secret",
                            "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_REGION": "us-east-1",
                            "AWS_EC2_METADATA_DISABLED": "true"}.items():
            monkeypatch.setenv(name, value)
        store = pafs.S3FileSystem(access_key="AKIDNOTEBOOK", secret_key="nb-secret", scheme="http",
                                  endpoint_override=f"{host}:{port}", region="us-east-1",
                                  allow_bucket_creation=True)
        store.create_dir("notebook-log")
        pafs.copy_files(str(data_dir / "events"), "notebook-log/prod/events",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store)
        yield "s3://notebook-log/prod"
    finally:
        server.stop()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_explore_event_log_notebook_runs_and_plots(tmp_path, fresh_emulator, monkeypatch, where):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient (test extra) runs the notebook")
    data_dir, figures = tmp_path / "data", tmp_path / "figures"
    results = _make_log(data_dir, fresh_emulator)
    events = read_all_events(data_dir)
    kinds = {type(e).__name__ for e in events}
    assert {"RequestCompleted", "AttemptFailed", "FailoverTriggered", "ResponseEvaluated"} <= kinds
    assert any(getattr(r, "cache_hit", False) for r in results)

    monkeypatch.setenv("AMM_FIGURES_DIR", str(figures))
    monkeypatch.delenv("AMM_CONFIG", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with contextlib.ExitStack() as stack:
        location = str(data_dir) if where == "local" else \
            stack.enter_context(_on_loopback_s3(data_dir, monkeypatch))
        monkeypatch.setenv("AMM_DATA_DIR", location)
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as exc:
            pytest.fail(f"a notebook cell failed:\n{exc}")

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(CHARTS)  # the charts of `amm report --plot`, from the same functions
    for name in CHARTS:
        png = (figures / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, name
        with Image.open(figures / f"{name}.png") as image:
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 24) or []) > 200, name

    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    total = Decimal(re.search(r"total cost \$(\d+\.\d+) over (\d+) requests", text).group(1))
    paid = sum((r.cost_usd for r in results if not isinstance(r, AMMError)), Decimal(0))
    assert total == paid.quantize(Decimal("1e-6"))
    assert f"over {REQUESTS} requests" in text
    for agent in AGENTS:
        assert re.search(rf"agent_type\s+{agent}\s+day\s+spent \$", text), agent
    served = {r.model_id for r in results if not isinstance(r, AMMError) and not r.cache_hit}
    for model_id in served:  # every model that served appears in the latency and quality tables
        assert re.search(rf"^{re.escape(model_id)}\s+p50", text, re.M), model_id
        assert re.search(rf"^{re.escape(model_id)}\s+quality", text, re.M), model_id
    assert re.search(r"\d+ of 60 requests served from the cache", text)
    buckets = re.search(r"(\d+) s buckets; budget series drawn: \[(.*)\]", text)
    assert buckets and "'global * (day)'" in buckets.group(2)
