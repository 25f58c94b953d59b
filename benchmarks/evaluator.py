"""Benchmark: does the evaluator's quality score agree with a judge, tell right answers from wrong,
and stay fast? Real answers only, from ``../shared/data`` (see its README).

    python benchmarks/evaluator.py [--data ../shared/data] [--folds 10] [--repeats 3]

Prints markdown tables:

1. MT-Bench (``mtbench/judged_turn1_dev.jsonl``: 667 answers of 16 models to 42 questions, rated
   1-10 by GPT-4): Spearman ρ between the score and the judge's rating, overall and per category,
   for the calibrated score **held out by question** (each answer scored by a calibration fitted
   by ``amm calibrate``'s recipe on the other folds' questions: the figure to trust), the
   uncalibrated weighted sum, the packaged calibration (fitted on all of these rows: in sample),
   and answer length (the yardstick). An empty answer scores 0, as the evaluator scores it.
2. GSM8K (``routellm/gsm8k``): each model's real answers; AUC of the quality score for right vs
   wrong answers (0.5 = no separation), and the mean score of each.
3. MMLU (``routellm/mmlu``): the files record whether a model was right, not which letter it
   chose, so right vs wrong letters cannot be told apart by any text-only score (every valid
   letter scores the same: AUC 0.5 by construction). Measured instead: the score of a valid
   letter answer (it should not be flagged low quality) and the AUC of valid letters against
   answers that name no option or one that does not exist.
4. Speed: microseconds per answer (p50, p99) on the MT-Bench answers (whole, and cut to their
   first 400 characters), with the prompt caches cleared before each call (the router scores a
   new prompt almost every time), and on GSM8K answers.
"""

from __future__ import annotations

import argparse
import csv
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, percentile  # noqa: E402

from api_model_management import ModelRequest  # noqa: E402
from api_model_management.config import QualitySettings  # noqa: E402
from api_model_management.evaluation import ResponseEvaluator, _requirements, _scores  # noqa: E402
from api_model_management.evaluation._calibration import auc, grouped_cv, spearman  # noqa: E402
from api_model_management.evaluation._labels import (  # noqa: E402
    LabelledAnswer,
    features_of,
    labels_from_jsonl,
)

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
GSM8K_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
INVALID_LETTER_ANSWERS = ("E", "F.", "Hmm.", "", "I'm sorry, but I can't answer that.")


def category(question_id: str) -> str:
    """MT-Bench's categories come by tens of question ids from 81."""
    return CATEGORIES[(int(question_id) - 81) // 10]


def cold(evaluate: Callable[[], object]) -> float:
    """Seconds for one call with the prompt caches cleared (a prompt the router has not seen)."""
    _requirements._extract_cached.cache_clear()
    _scores._term_weights_cached.cache_clear()
    start = time.perf_counter()
    evaluate()
    return time.perf_counter() - start


def rho_row(name: str, scores: Sequence[float], labels: Sequence[LabelledAnswer]) -> list[str]:
    judge = [item.label for item in labels]
    cells = [name, f"{spearman(scores, judge):+.3f}"]
    for cat in CATEGORIES:
        rows = [i for i, item in enumerate(labels) if category(item.group) == cat]
        cells.append(f"{spearman([scores[i] for i in rows], [judge[i] for i in rows]):+.2f}")
    return cells


def mtbench(data: Path, folds: int) -> list[LabelledAnswer]:
    labels = labels_from_jsonl(data / "mtbench" / "judged_turn1_dev.jsonl")
    raw = ResponseEvaluator(QualitySettings(calibration_path=None))
    features = features_of(labels, raw)
    held = {}
    for k in (folds, len(set(features.groups))):
        predictions, used = grouped_cv(features.x, features.y, features.groups, folds=k)
        by_item = dict(zip(map(id, features.kept), predictions, strict=True))
        held[used] = [by_item.get(id(item), 0.0) for item in labels]  # empty answers score 0
    packaged = ResponseEvaluator()
    rows = [rho_row(f"calibrated, held out by question ({k} folds)", scores, labels)
            for k, scores in held.items()]
    for name, evaluator in (("uncalibrated weighted sum", raw),
                            ("packaged calibration (in sample)", packaged)):
        scores = [evaluator.evaluate(_request(i), i.answer, None).quality_score for i in labels]
        rows.append(rho_row(name, scores, labels))
    rows.append(rho_row("answer length (characters)", [float(len(i.answer)) for i in labels], labels))
    print(f"\n## MT-Bench judged answers: Spearman ρ with the GPT-4 judge ({len(labels)} answers, "
          f"{len(set(i.group for i in labels))} questions)\n")
    print(markdown_table(["score", "overall", *CATEGORIES], rows))
    return labels


def _request(item: LabelledAnswer) -> ModelRequest:
    return ModelRequest(prompt=item.prompt, max_tokens=item.max_tokens)


def _csv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def gsm8k(data: Path) -> list[tuple[ModelRequest, str]]:
    rows = _csv(data / "routellm" / "gsm8k" / "gsm8k_responses.csv")
    evaluators = {"calibrated": ResponseEvaluator(),
                  "uncalibrated": ResponseEvaluator(QualitySettings(calibration_path=None))}
    answers = [(ModelRequest(prompt=row["prompt"], max_tokens=1024), row[f"{model}_response"])
               for model in GSM8K_MODELS for row in rows]
    table = []
    for m, model in enumerate(GSM8K_MODELS):
        right = [row[model] == "True" for row in rows]
        cells = [model.split("/")[-1], f"{sum(right)} / {len(rows)}"]
        for evaluator in evaluators.values():
            scores = [evaluator.evaluate(request, text, "stop").quality_score
                      for request, text in answers[m * len(rows):(m + 1) * len(rows)]]
            good = [s for s, r in zip(scores, right, strict=True) if r]
            bad = [s for s, r in zip(scores, right, strict=True) if not r]
            cells += [f"{auc(scores, right):.3f}", f"{sum(good) / len(good):.3f} / {sum(bad) / len(bad):.3f}"]
        table.append(cells)
    print(f"\n## GSM8K: right vs wrong answers ({len(rows)} prompts)\n")
    print(markdown_table(["model", "right", "AUC calibrated", "mean right / wrong",
                          "AUC uncalibrated", "mean right / wrong"], table))
    return answers


def mmlu(data: Path) -> None:
    prompts = [row["prompt"] for path in sorted((data / "routellm" / "mmlu").glob("*.csv"))
               for row in _csv(path)]
    evaluator = ResponseEvaluator()
    valid, invalid = [], []
    low = 0
    for prompt in prompts:
        request = ModelRequest(prompt=prompt, max_tokens=16)
        for letter in "ABCD":
            result = evaluator.evaluate(request, letter, "stop")
            valid.append(result.quality_score)
            low += result.low_quality
        invalid += [evaluator.evaluate(request, text, "stop").quality_score
                    for text in INVALID_LETTER_ANSWERS]
    scores = valid + invalid
    is_valid = [True] * len(valid) + [False] * len(invalid)
    print(f"\n## MMLU letter answers ({len(prompts)} prompts × A-D, and {len(INVALID_LETTER_ANSWERS)} "
          "non-answers each)\n")
    print(markdown_table(["measure", "value"], [
        ["right vs wrong letter", "AUC 0.500 by construction (no answer key in the data)"],
        ["mean score of a valid letter", f"{sum(valid) / len(valid):.3f}"],
        ["valid letters flagged low quality", f"{low / len(valid):.1%}"],
        ["mean score of a non-answer", f"{sum(invalid) / len(invalid):.3f}"],
        ["AUC valid letter vs non-answer", f"{auc(scores, is_valid):.3f}"],
    ]))


def speed(labels: Sequence[LabelledAnswer], gsm: Sequence[tuple[ModelRequest, str]], repeats: int) -> None:
    evaluator = ResponseEvaluator()
    cases = {
        "MT-Bench answers (mean 1.4 KB)": [(_request(i), i.answer) for i in labels],
        "MT-Bench answers, first 400 characters": [(_request(i), i.answer[:400]) for i in labels],
        "GSM8K answers": list(gsm),
    }
    rows = []
    for name, pairs in cases.items():
        for request, text in pairs[:50]:
            evaluator.evaluate(request, text, "stop")  # warm the stemmer and regex caches
        timings = []
        gc.disable()
        try:
            for _ in range(repeats):
                for request, text in pairs:
                    timings.append(cold(lambda r=request, t=text: evaluator.evaluate(r, t, "stop")))
        finally:
            gc.enable()
        micros = [t * 1e6 for t in timings]
        rows.append([name, len(pairs), f"{percentile(micros, 50):.0f}", f"{percentile(micros, 99):.0f}"])
    print("\n## Speed: µs per answer (calibrated, prompt caches cleared before each call)\n")
    print(markdown_table(["answers", "n", "p50 µs", "p99 µs"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (args.data / "mtbench").is_dir():
        sys.exit(f"no MT-Bench data under {args.data} (see ../shared/data/README.md)")
    print(f"# Evaluator benchmark\n\n{machine_line()}")
    labels = mtbench(args.data, args.folds)
    gsm = gsm8k(args.data)
    mmlu(args.data)
    speed(labels, gsm, args.repeats)


if __name__ == "__main__":
    main()
