"""Selection that learns, end to end through the real system, on real per-prompt correctness.

    # hold out an eval split of the routellm data (by prompt hash; the same split every time)
    python benchmarks/selection_quality.py split --source ../shared/data/routellm --out /tmp/rl

    python benchmarks/selection_quality.py --train /tmp/rl/train --eval /tmp/rl/eval \\
        [--log-requests 3000] [--eval-requests 1500] [--epsilon 0.3] [--max-cost-share 0.5] \\
        [--format json]

What it does (issue 11), all through ``ModelManagement`` on local Ray and the emulator:

1. The emulator serves an *answer world*: for every prompt of the train and eval files, a strong
   model (``gpt-4-1106-preview``, $10 / $30 per million input / output tokens) and a weak one
   (``mixtral-8x7b``, $0.60 / $0.60) answer right or wrong as the real models did (the routellm
   data), the answer marked ``[correct]`` / ``[incorrect]``.
2. Logging: ``--log-requests`` train prompts (agent type = subject) go through the system with
   exploration ``--epsilon``; the marker of each answer is fed back with
   ``mm.feedback(request_id, 1.0 or 0.0, source="ground_truth")`` (the selector learns quality per
   model and subject from it as it goes).
3. ``amm tune --per-agent-type --objective max-quality --max-cost-share X --batch N
   --cross-fit R`` on that log writes a weights file (per subject: the best estimated quality
   whose cost stays within X of always-strong's on a batch of N = the eval requests, not only on
   average; ``--no-batch``: on average), X first lowered by the optimism the tuner shows when it
   chooses on one half of the log and is checked on the other (R random splits; ``--cross-fit
   0``: off).
4. A second system on the same log (its selector rebuilds what was learnt from the log: no cold
   start) loads the weights with ``mm.load_weights`` and serves ``--eval-requests`` eval prompts
   (prompts not in the log) without exploration; then the same prompts pinned to the strong model
   and to the weak one. Accuracy is read from the answers' markers, cost from the responses.

The last line with ``--format json`` is one object: ``tuned``, ``always_strong``, ``always_weak``
(each ``{"accuracy", "cost_usd", "requests"}``), ``random_mix_same_cost`` (the accuracy of a random
strong/weak mix that costs what ``tuned`` cost), the targets, and ``serve_reliability``: how many
tuned decisions met a reliability state (the success-rate and latency part of each candidate's
performance) other than the one the log ended in. The emulator answers in 5-30 ms, under the
selector's first 100 ms latency step, so on a quiet machine that count is 0; on a loaded one the
answers slow past it, near-tied subjects move between the models, and the served cost is not the
one the tuner estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b"
COLUMNS = {STRONG: "gpt-4-1106-preview", WEAK: "mistralai/Mixtral-8x7B-Instruct-v0.1"}
PRICES = {STRONG: ("0.01", "0.03"), WEAK: ("0.0006", "0.0006")}  # USD per 1k tokens (data README)
KEY_ENV = "AMM_BENCH_OPENAI_KEY"


@dataclass(frozen=True)
class Prompt:
    agent_type: str
    text: str
    max_tokens: int


# ---------------------------------------------------------------------------------------------
# data


def _csv_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.csv"))


def _agent_type(path: Path) -> str:
    name = path.stem
    return "gsm8k" if name.startswith("gsm8k") else name.removeprefix("mmlu_")


def load_prompts(root: Path) -> list[Prompt]:
    csv.field_size_limit(16 * 1024 * 1024)
    prompts = []
    for path in _csv_files(root):
        agent = _agent_type(path)
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("prompt"):
                    # a letter answer needs few tokens; a worked answer many (the marker is last)
                    prompts.append(Prompt(agent, row["prompt"], 1024 if agent == "gsm8k" else 24))
    return prompts


def split(source: Path, out: Path, eval_fraction: float) -> None:
    """Write ``out/train`` and ``out/eval`` with the layout of ``source``, each prompt in one of
    them by its hash (stable, independent of order)."""
    csv.field_size_limit(16 * 1024 * 1024)
    counts = {"train": 0, "eval": 0}
    for path in _csv_files(source):
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            fields = reader.fieldnames or []
        parts: dict[str, list[dict[str, str]]] = {"train": [], "eval": []}
        for row in rows:
            digest = hashlib.sha256(row.get("prompt", "").encode()).digest()
            share = int.from_bytes(digest[:8], "big") / 2**64
            parts["eval" if share < eval_fraction else "train"].append(row)
        for part, part_rows in parts.items():
            target = out / part / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(part_rows)
            counts[part] += len(part_rows)
    print(f"split {source} -> {out}: {counts['train']} train, {counts['eval']} eval prompts")


# ---------------------------------------------------------------------------------------------
# the system


def make_config(data_dir: Path, emulator_url: str, epsilon: float):
    from api_model_management.config import config_from_dict

    return config_from_dict(make_registry(data_dir, emulator_url, epsilon),
                            source="selection_quality")


def make_registry(data_dir: Path, emulator_url: str, epsilon: float) -> dict:
    """The registry of both phases (as plain data; ``amm tune --config`` reads its priors)."""

    def model(model_id: str) -> dict:
        price_in, price_out = PRICES[model_id]
        return {
            "id": model_id, "provider": "openai", "name": model_id,
            "capabilities": ["text-generation"], "cost_per_1k_input_tokens": price_in,
            "cost_per_1k_output_tokens": price_out, "context_window": 32000,
            "rate_limits": {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000},
            "average_response_time_ms": 500, "quality_prior": 0.7,
        }

    return {
        "models": [model(STRONG), model(WEAK)],
        "providers": {"openai": {"type": "openai", "base_url": emulator_url, "api_key_env": KEY_ENV}},
        "settings": {
            "data_dir": str(data_dir),
            "routers": {"replicas": 1},
            "selection": {"exploration_epsilon": epsilon, "assignment_cache_ttl_s": 1.0},
            "cache": {"enabled": False},
            "quality": {"reroute_on_low_quality": False},
            "concurrency": {"max_in_flight": 64},
        },
    }


def world_dir(train: Path, eval_: Path, into: Path) -> Path:
    """One folder with both splits' files (the emulator's answer world)."""
    for name, root in (("train", train), ("eval", eval_)):
        for path in _csv_files(root):
            target = into / name / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return into


def marker_score(text: str) -> float | None:
    if "[correct]" in text:
        return 1.0
    if "[incorrect]" in text:
        return 0.0
    return None


async def serve(mm, prompts: list[Prompt], *, pin: str | None = None, feedback: bool,
                concurrency: int = 16, label: str = "") -> dict:
    """Send ``prompts`` through the system; accuracy from the answers' markers, cost from the
    responses; feedback of each marker when asked."""
    from api_model_management import AMMError, ModelRequest

    right, cost, served, failed, unmarked = 0, Decimal(0), 0, 0, 0
    chosen: dict[str, int] = {}
    queue = list(prompts)
    started = time.monotonic()

    async def worker() -> None:
        nonlocal right, cost, served, failed, unmarked
        while queue:
            prompt = queue.pop()
            request = ModelRequest(prompt=prompt.text, agent_type=prompt.agent_type,
                                   max_tokens=prompt.max_tokens, model_id=pin,
                                   parameters={"temperature": 0.7}, cacheable=False)
            try:
                response = await mm.complete(request)
            except AMMError:
                failed += 1
                continue
            score = marker_score(response.text)
            if score is None:
                unmarked += 1
                continue
            served += 1
            right += int(score)
            cost += response.cost_usd
            chosen[response.model_id] = chosen.get(response.model_id, 0) + 1
            if feedback:
                await mm.feedback(response.request_id, score, source="ground_truth")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.monotonic() - started
    if label:
        print(f"  {label}: {served} answered, {failed} failed, {unmarked} unmarked, "
              f"{right / max(served, 1):.3f} accuracy, ${cost:.4f}, chose {chosen}, {took:.0f} s",
              file=sys.stderr)
    return {"accuracy": right / served if served else 0.0, "cost_usd": float(cost),
            "requests": served, "failed": failed, "unmarked": unmarked, "chosen": chosen}


def reliability_states(data_dir: Path, version: str | None = None) -> list[dict[str, float]]:
    """Per ``ModelSelected`` among several candidates (of weights ``version`` when given), in
    time order: each candidate's reliability part (its performance sub-score − 0.4 × the learnt
    quality in it), rounded to 4 places."""
    from api_model_management.events._ingest import read_all_events
    from api_model_management.selection import QUALITY_IN_PERFORMANCE

    out = []
    for e in read_all_events(data_dir, ("ModelSelected",)):
        if len(e.candidates) < 2 or e.candidate_quality is None:
            continue
        if version is not None and e.weights_version != version:
            continue
        out.append({c.model_id: round(c.performance - QUALITY_IN_PERFORMANCE * q, 4)
                    for c, q in zip(e.candidates, e.candidate_quality, strict=True)})
    return out


def state_moved(log_end: dict[str, float], served: list[dict[str, float]]) -> dict:
    """How many served decisions met a reliability state other than the log's last one: a
    machine under load slows the emulator's answers past the selector's 100 ms latency steps,
    which moves near-tied subjects between the models whatever the tuner estimated."""
    moved = sum(1 for state in served if state != log_end)
    counts = Counter(tuple(sorted(state.items())) for state in served)
    return {"decisions": len(served), "at_another_state": moved, "log_end_state": log_end,
            "states": [[dict(state), n] for state, n in counts.most_common(5)]}


def run(args: argparse.Namespace) -> dict:
    from api_model_management import ModelManagement
    from api_model_management.emulator import Profile
    from api_model_management.emulator.testing import EmulatorServer

    rng = random.Random(args.seed)
    train = load_prompts(Path(args.train))
    eval_prompts = load_prompts(Path(args.eval))
    train_ids = {p.text for p in train}
    eval_prompts = [p for p in eval_prompts if p.text not in train_ids]
    log_prompts = rng.sample(train, min(args.log_requests, len(train)))
    eval_sample = rng.sample(eval_prompts, min(args.eval_requests, len(eval_prompts)))
    work = Path(tempfile.mkdtemp(prefix="amm-selq-"))
    data_dir = work / "data"
    os.environ[KEY_ENV] = "bench-key-0000000000"
    profile = Profile.model_validate({
        "seed": args.seed,
        "catalog": {"openai": [STRONG, WEAK]},
        "world_dir": str(world_dir(Path(args.train), Path(args.eval), work / "world")),
        "world_models": {m: {"column": c} for m, c in COLUMNS.items()},
    })
    print(f"{len(log_prompts)} logged train prompts, {len(eval_sample)} eval prompts, "
          f"data in {work}", file=sys.stderr)
    with EmulatorServer(profile=profile) as emulator:
        url = emulator.url_for("openai")
        if args.from_log:  # a kept log of the same seed: the same prompts, tuned again
            shutil.copytree(args.from_log, data_dir)
            print(f"  logging: skipped, the log is a copy of {args.from_log}", file=sys.stderr)
        else:
            with ModelManagement.start(make_config(data_dir, url, args.epsilon),
                                       num_cpus=args.num_cpus) as mm:
                asyncio.run(serve(mm, log_prompts, feedback=True, label="logging (exploring)"))
                mm.flush()
        logged_states = reliability_states(data_dir)
        log_end = logged_states[-1] if logged_states else {}
        if args.keep:  # the log as tuned, before the eval runs add to it
            shutil.copytree(data_dir, work / "logged")
        weights = work / "weights.json"
        registry = work / "registry.json"  # the serve's: its quality priors are the replay's
        registry.write_text(json.dumps(make_registry(data_dir, url, 0.0)))
        tune = [sys.executable, "-c", "from api_model_management.cli import main; main()",
                "tune", "--data-dir",
                str(data_dir), "--out", str(weights), "--per-agent-type",
                "--objective", "max-quality", "--max-cost-share", str(args.max_cost_share),
                "--min-decisions", str(args.min_decisions), "--config", str(registry),
                "--format", "json"]
        if args.batch:  # the cap is checked on the served batch's bill, not only on the mean
            tune += ["--batch", str(len(eval_sample))]
        if args.cross_fit:  # less the optimism of choosing on the same log it is checked on
            tune += ["--cross-fit", str(args.cross_fit)]
        done = subprocess.run(tune, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"amm tune refused: {done.stderr.strip() or done.stdout.strip()}")
        with ModelManagement.start(make_config(data_dir, url, 0.0), num_cpus=args.num_cpus) as mm:
            version = mm.load_weights(weights)
            tuned = asyncio.run(serve(mm, eval_sample, feedback=False, label=f"tuned ({version})"))
            strong = asyncio.run(serve(mm, eval_sample, pin=STRONG, feedback=False,
                                       label="always strong"))
            weak = asyncio.run(serve(mm, eval_sample, pin=WEAK, feedback=False,
                                     label="always weak"))
            if args.in_sample:  # the same weights on the logged prompts: the tuner's own sample
                own = asyncio.run(serve(mm, log_prompts, feedback=False,
                                        label="tuned, logged prompts"))
                own_strong = asyncio.run(serve(mm, log_prompts, pin=STRONG, feedback=False,
                                               label="always strong, logged prompts"))
    moved = state_moved(log_end, reliability_states(data_dir, version))
    print(f"  served: {moved['at_another_state']} of {moved['decisions']} tuned decisions met a "
          "reliability state other than the log's last (latency past the selector's 100 ms "
          "steps: a loaded machine)", file=sys.stderr)
    share = ((tuned["cost_usd"] - weak["cost_usd"]) / (strong["cost_usd"] - weak["cost_usd"])
             if strong["cost_usd"] > weak["cost_usd"] else 0.0)
    share = min(1.0, max(0.0, share))
    mix = share * strong["accuracy"] + (1 - share) * weak["accuracy"]
    result = {
        "tuned": {k: tuned[k] for k in ("accuracy", "cost_usd", "requests")},
        "always_strong": {k: strong[k] for k in ("accuracy", "cost_usd", "requests")},
        "always_weak": {k: weak[k] for k in ("accuracy", "cost_usd", "requests")},
        "random_mix_same_cost": {"accuracy": mix, "strong_share": share},
        "targets": {
            "accuracy_vs_strong": tuned["accuracy"] / strong["accuracy"] if strong["accuracy"] else 0.0,
            "cost_vs_strong": tuned["cost_usd"] / strong["cost_usd"] if strong["cost_usd"] else 0.0,
            "points_over_random_mix": 100 * (tuned["accuracy"] - mix),
        },
        "weights_version": version,
        "serve_reliability": moved,
        "log_requests": len(log_prompts),
        "epsilon": args.epsilon,
        "max_cost_share": args.max_cost_share,
        "cross_fit": args.cross_fit,
        "tuner_estimate": _tuner_estimate(weights),
    }
    if args.in_sample:
        result["in_sample"] = {
            "accuracy_vs_strong": (own["accuracy"] / own_strong["accuracy"]
                                   if own_strong["accuracy"] else 0.0),
            "cost_vs_strong": (own["cost_usd"] / own_strong["cost_usd"]
                               if own_strong["cost_usd"] else 0.0),
            "requests": own["requests"]}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _tuner_estimate(weights: Path) -> dict:
    """What ``amm tune`` estimated for the weights it wrote, as shares of always-strong's (the
    cost share's checked bound and the share it was checked against included)."""
    estimated = json.loads(weights.read_text()).get("estimated", {})
    relative = estimated.get("relative", {})
    constraint = estimated.get("constraint") or {}
    strong_cost = (estimated.get("references", {}).get("always-strongest", {})
                   .get("intervals", {}).get("cost_usd", {}).get("estimate"))
    bound = constraint.get("bound_value")
    return {"accuracy_vs_strong": relative.get("quality_share_of_strongest"),
            "cost_vs_strong": relative.get("cost_share_of_strongest"),
            "cost_bound_vs_strong": (bound / strong_cost if bound is not None and strong_cost
                                     else None),
            "share_applied": constraint.get("share_applied", constraint.get("share"))}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "split":
        parser = argparse.ArgumentParser(prog="selection_quality.py split")
        parser.add_argument("split")
        parser.add_argument("--source", required=True)
        parser.add_argument("--out", required=True)
        parser.add_argument("--eval-fraction", type=float, default=0.3)
        args = parser.parse_args()
        split(Path(args.source), Path(args.out), args.eval_fraction)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--log-requests", type=int, default=3000)
    parser.add_argument("--eval-requests", type=int, default=1500)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--max-cost-share", type=float, default=0.5)
    parser.add_argument("--min-decisions", type=int, default=20)
    parser.add_argument("--no-batch", dest="batch", action="store_false",
                        help="tune the cap on the mean cost only, not on a batch of the eval size "
                             "(amm tune --batch)")
    parser.add_argument("--cross-fit", type=int, default=2,
                        help="amm tune --cross-fit: random halvings of the log that measure the "
                             "tuner's optimism about the cap (0: off)")
    parser.add_argument("--in-sample", action="store_true",
                        help="also serve the tuned weights and always-strong on the logged "
                             "prompts: what the tuner's estimate was about (in_sample in the JSON)")
    parser.add_argument("--from-log", metavar="DIR",
                        help="skip logging and tune a copy of DIR instead: the logged/ folder "
                             "a --keep run of the same --seed and split left (so that two tuner "
                             "versions can be compared on one log)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (the log, a copy of it as tuned in logged/, "
                             "the weights)")
    args = parser.parse_args()
    if args.from_log and not Path(args.from_log).is_dir():
        parser.error(f"--from-log {args.from_log}: no such folder (a --keep run's logged/)")
    result = run(args)
    if args.format == "json":
        print(json.dumps(result))
        return
    print(f"{'policy':<24}{'accuracy':>10}{'cost USD':>12}{'requests':>10}")
    for name in ("tuned", "always_strong", "always_weak"):
        row = result[name]
        print(f"{name:<24}{row['accuracy']:>10.3f}{row['cost_usd']:>12.4f}{row['requests']:>10}")
    mix = result["random_mix_same_cost"]
    print(f"{'random mix, same cost':<24}{mix['accuracy']:>10.3f}")
    t = result["targets"]
    print(f"tuned: {t['accuracy_vs_strong']:.1%} of always-strong's accuracy at "
          f"{t['cost_vs_strong']:.1%} of its cost; {t['points_over_random_mix']:+.1f} points over "
          f"a random mix of the same cost")


if __name__ == "__main__":
    main()
