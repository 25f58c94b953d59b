"""Agents as Ray tasks sharing one model-management system.

Run it with ``python examples/ray_agents.py``. It starts everything it needs on this machine:

1. the provider emulator (OpenAI, Anthropic, Gemini and Ollama wire protocols on 127.0.0.1),
2. a local Ray (2 CPUs) and the model-management actors, configured with the demo registry,
3. four agents (research, coder, reviewer, planner), each a Ray task that receives the Router
   actor handles and sends its requests concurrently; one more task streams a reply.

It then prints which models served which agent and what it cost, and shuts everything down.
No real provider is called and no real API key is needed.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from decimal import Decimal

import ray

from api_model_management import ModelManagement, ModelRequest, SelectionConstraints
from api_model_management.config import demo_config, override, with_provider_base_urls
from api_model_management.emulator.testing import EmulatorServer
from api_model_management.errors import AMMError

# The demo registry reads its (fake) keys from these variables; the emulator accepts any key.
DEMO_KEYS = {
    "AMM_DEMO_OPENAI_KEY": "demo-openai-key",
    "AMM_DEMO_ANTHROPIC_KEY": "demo-anthropic-key",
    "AMM_DEMO_GOOGLE_KEY": "demo-google-key",
}

# What each agent asks for. Besides the prompt, a request can state the capabilities it needs,
# a priority and constraints; the selector picks the best model that satisfies them.
TASKS = {
    "research": {"prompts": ["Explain how consistent hashing works.", "Summarise the CAP theorem."]},
    "coder": {"prompts": ["Write a Python function that merges two sorted lists.",
                          "Write a Python LRU cache class with a docstring."],
              "options": {"required_capabilities": ("code-generation",)}},
    "reviewer": {"prompts": ["Review this idea: retry every failed HTTP call immediately, forever."],
                 "options": {"constraints": SelectionConstraints(allowed_providers=("anthropic",))}},
    "planner": {"prompts": ["Plan the steps to move a service from cron jobs to a message queue."],
                "options": {"priority": "high"}},
}


# Agents spend their time waiting for models, not computing: num_cpus=0 lets them all run at once
# on a small machine (the system's actors also reserve almost no CPU).
@ray.remote(num_cpus=0)
def agent(agent_type: str, task: dict, routers: list) -> list[dict]:
    """One agent: sends all its prompts at once, spread over the routers, and waits for them.

    A Router handle works from any task or actor: ``complete.remote(request)`` returns an
    ObjectRef that resolves to a ``ModelResponse`` (or raises the typed error, e.g.
    ``BudgetExceeded`` or ``AllCandidatesFailed``, both ``AMMError``).
    """
    async def run() -> list[dict]:
        async def one(i: int, prompt: str) -> dict:
            request = ModelRequest(prompt=prompt, agent_type=agent_type, task_id=f"{agent_type}-{i}",
                                   max_tokens=200, **task.get("options", {}))
            router = routers[i % len(routers)]  # any router will do; spread the load
            try:
                response = await router.complete.remote(request)
            except AMMError as exc:
                return {"agent": agent_type, "error": type(exc).__name__}
            return {"agent": agent_type, "model": response.model_id, "cost_usd": response.cost_usd,
                    "attempts": response.attempts, "quality": response.quality_score}

        return await asyncio.gather(*(one(i, p) for i, p in enumerate(task["prompts"])))

    return asyncio.run(run())


@ray.remote(num_cpus=0)
def streaming_agent(router) -> dict:
    """Streams one reply: each item of the generator is a ``StreamChunk`` (text ``delta``s, then a
    final chunk with ``done=True`` carrying the ``ProviderResult`` and the serving ``model_id``)."""
    request = ModelRequest(prompt="Describe the actor model in three sentences.",
                           agent_type="research", max_tokens=120)
    text, final = [], None
    for ref in router.stream.options(num_returns="streaming").remote(request):
        chunk = ray.get(ref)
        text.append(chunk.delta)
        if chunk.done:
            final = chunk
    return {"model": final.model_id if final else None, "chars": len("".join(text)),
            "chunks": len(text)}


def main() -> None:
    with EmulatorServer() as emulator, tempfile.TemporaryDirectory() as data_dir:
        # The demo registry, with every provider pointed at the emulator's port and the event
        # log written to a temporary directory.
        config = demo_config()
        config = with_provider_base_urls(
            config, {name: emulator.url_for(p.type) for name, p in config.providers.items()})
        config = override(config, settings={"data_dir": data_dir, "routers": {"replicas": 2}})

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        mm = ModelManagement.start(config, env=DEMO_KEYS)
        try:
            routers = mm.handles.routers  # plain Ray actor handles: pass them to tasks
            agent_refs = [agent.remote(kind, task, routers) for kind, task in TASKS.items()]
            stream_ref = streaming_agent.remote(routers[0])
            results = [row for rows in ray.get(agent_refs) for row in rows]
            streamed = ray.get(stream_ref)
            print_summary(results, streamed)
        finally:
            mm.shutdown()  # flushes the events into the Parquet log and stops the actors
            ray.shutdown()


def print_summary(results: list[dict], streamed: dict) -> None:
    served: dict[str, set[str]] = defaultdict(set)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for row in results:
        if "error" in row:
            print(f"{row['agent']}: failed with {row['error']}")
            continue
        served[row["agent"]].add(row["model"])
        cost[row["agent"]] += row["cost_usd"]
    for kind in TASKS:
        models = ", ".join(sorted(served[kind])) or "-"
        print(f"agent {kind:<9} served by {models:<40} cost ${cost[kind]:.6f}")
    print(f"streamed {streamed['chunks']} chunks ({streamed['chars']} chars) from {streamed['model']}")
    print(f"requests {len(results)}, failed {sum('error' in r for r in results)}, "
          f"total cost ${sum(cost.values(), Decimal(0)):.6f}")


if __name__ == "__main__":
    main()
