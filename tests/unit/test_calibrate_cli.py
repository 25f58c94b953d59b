"""``amm calibrate`` through the real typer app: from a JSONL of labelled answers and from judge
feedback in the event log; one-line errors (exit 2) on bad input and too few labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api_model_management import ModelRequest
from api_model_management.cli import app
from api_model_management.config import QualitySettings
from api_model_management.evaluation import ResponseEvaluator, load_calibration
from api_model_management.events import (
    EventLog,
    FeedbackRecorded,
    RequestCompleted,
    ResponseEvaluated,
)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 1, tzinfo=UTC)
TOPICS = ["photosynthesis", "inflation", "vaccines", "volcanoes", "compilers", "tides", "glaciers",
          "earthquakes"]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is written to the working directory


def _answers(topic: str) -> list[tuple[str, float, str | None]]:
    """Answers of several kinds to "Explain how <topic> works", with the rating a judge gave."""
    good = (f"{topic.capitalize()} works through a chain of causes. First, energy or pressure "
            f"builds up; then {topic} releases it in a way we can measure. Scientists study "
            f"{topic} because it shapes daily life, and the details explain why it matters.")
    return [
        (good, 0.9, "stop"),
        (good + f" In short, {topic} is well understood and keeps being studied.", 1.0, "stop"),
        (f"{topic} is a thing. " + f"The {topic} is a thing that is a thing. " * 8, 0.2, "stop"),
        ("Preheat the oven, whisk the eggs with sugar and fold in the flour gently.", 0.1, "stop"),
        (good[:90], 0.3, "length"),
    ]


def _rows() -> list[dict]:
    return [{"question_id": i, "question": f"Explain how {topic} works and why it matters.",
             "answer": answer, "score": label * 10, "finish_reason": finish}
            for i, topic in enumerate(TOPICS) for answer, label, finish in _answers(topic)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["calibrate", *args])


def test_fits_a_jsonl_of_labels_and_writes_a_model_the_evaluator_loads(tmp_path: Path) -> None:
    labels = _write_jsonl(tmp_path / "labels.jsonl", _rows())
    out = tmp_path / "model.json"
    result = run("--labels", str(labels), "--out", str(out), "--name", "test-v1")
    assert result.exit_code == 0, result.output
    assert "held-out questions" in result.stdout and "40 (8 questions)" in result.stdout
    model = load_calibration(str(out))
    assert model is not None and model.name == "test-v1" and model.info["rows"] == 40
    evaluator = ResponseEvaluator(QualitySettings(calibration_path=str(out)))
    request_text = "Explain how tides works and why it matters."
    good, bad = (evaluator.evaluate(ModelRequest(prompt=request_text, max_tokens=4096), text, finish)
                 for text, _, finish in (_answers("tides")[1], _answers("tides")[2]))
    assert good.quality_score > bad.quality_score and good.calibration == "test-v1"


def test_json_summary(tmp_path: Path) -> None:
    labels = _write_jsonl(tmp_path / "labels.jsonl", _rows())
    result = run("--labels", str(labels), "--out", str(tmp_path / "m.json"), "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == 40 and summary["questions"] == 8
    assert set(summary["spearman"]) == {"held_out", "in_sample", "uncalibrated"}
    assert summary["name"].startswith("calibrated-")


@pytest.mark.parametrize(("rows", "message"), [
    (_rows()[:20], "20 usable labelled answers over 4 questions"),
    ([dict(row, question_id=1) for row in _rows()], "over 1 questions"),
])
def test_too_few_labels_is_one_line_and_exit_2(tmp_path: Path, rows: list[dict], message: str) -> None:
    labels = _write_jsonl(tmp_path / "labels.jsonl", rows)
    result = run("--labels", str(labels), "--out", str(tmp_path / "m.json"))
    assert result.exit_code == 2
    assert message in result.stderr and "at least 30" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "q", "answer": "a", "score": 7}\nnot json\n', "line 2 is not JSON"),
    ('{"question": "q", "score": 7}\n', "line 1 has no answer / response / text field"),
    ('{"question": "q", "answer": "a", "score": 12}\n', "must be a number in [0, 10]"),
    ('[1, 2]\n', "line 1 is not a JSON object"),
])
def test_bad_label_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(content)
    result = run("--labels", str(labels), "--out", str(tmp_path / "m.json"))
    assert result.exit_code == 2 and message in result.stderr


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path) -> None:
    labels = _write_jsonl(tmp_path / "labels.jsonl", _rows())
    both = run("--labels", str(labels), "--data-dir", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.stderr
    missing = run("--labels", str(tmp_path / "absent.jsonl"))
    assert missing.exit_code == 2 and "is not a file" in missing.stderr
    no_log = run("--data-dir", str(tmp_path / "empty"))
    assert no_log.exit_code == 2 and "no event log under" in no_log.stderr
    fmt = run("--labels", str(labels), "--format", "yaml")
    assert fmt.exit_code == 2 and "--format" in fmt.stderr


def _log(data_dir: Path, *, with_text: bool) -> None:
    events = []
    n = 0
    for topic in TOPICS:
        prompt = f"Explain how {topic} works and why it matters."
        for answer, label, finish in _answers(topic):
            rid = f"r{n}"
            n += 1
            common = {"occurred_at": T0, "request_id": rid, "model_id": "m", "provider": "p"}
            events.append(ResponseEvaluated(**common, completeness=1.0, relevance=1.0, coherence=1.0,
                                            quality_score=0.9, low_quality=False))
            events.append(RequestCompleted(
                **common, latency_ms=10.0, finish_reason=finish, prompt_hash=f"h-{topic}",
                prompt_text=prompt if with_text else None, response_text=answer if with_text else None))
            events.append(FeedbackRecorded(**common, score=label, source="judge", judge_model_id="j"))
    EventLog(data_dir, fsync="never").append(events)


def test_fits_judge_feedback_in_the_log(tmp_path: Path) -> None:
    _log(tmp_path, with_text=True)
    result = run("--data-dir", str(tmp_path), "--out", str(tmp_path / "m.json"), "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == 40 and summary["by_source"] == {"judge": 40}
    assert summary["spearman"]["logged_quality"] == 0.0  # the log's score was flat: no agreement
    assert summary["spearman"]["held_out"] > 0.5
    assert load_calibration(str(tmp_path / "m.json")) is not None


def test_a_log_without_the_answers_text_says_to_store_prompts(tmp_path: Path) -> None:
    _log(tmp_path, with_text=False)
    result = run("--data-dir", str(tmp_path), "--out", str(tmp_path / "m.json"))
    assert result.exit_code == 2
    assert "0 usable labelled answers" in result.stderr and "store_prompts" in result.stderr
    user_only = run("--data-dir", str(tmp_path), "--sources", "user")
    assert user_only.exit_code == 2 and "0 usable labelled answers" in user_only.stderr
    bad = run("--data-dir", str(tmp_path), "--sources", "crowd")
    assert bad.exit_code == 2 and "--sources takes" in bad.stderr
