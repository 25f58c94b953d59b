"""ResponseEvaluator on concrete answers, and the judge prompt / score parser."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from api_model_management import Message, ModelRequest
from api_model_management.config import QualitySettings, QualityWeights
from api_model_management.errors import ConfigError, InvalidInput
from api_model_management.evaluation import (
    FEATURE_NAMES,
    JUDGE_SYSTEM_PROMPT,
    Calibration,
    Evaluation,
    JudgePrompt,
    ResponseEvaluator,
    build_judge_prompt,
    extract,
    load_calibration,
    parse_judge_score,
)
from api_model_management.evaluation._checks import arithmetic, json_parses, template_leak
from api_model_management.events import ResponseEvaluated

pytestmark = pytest.mark.unit

ASYNC_REQUEST = ModelRequest(prompt="Explain how async/await works in Python", max_tokens=500)

GOOD_ASYNC = """In Python, async/await is syntax for writing coroutines. A function defined with \
`async def` returns a coroutine object when called. Inside it, `await` suspends the coroutine \
until the awaited object completes, handing control back to the event loop.

The asyncio event loop runs many coroutines concurrently on one thread: while one waits for I/O, \
the others run. For example:

```python
import asyncio

async def fetch(n):
    await asyncio.sleep(1)
    return n

async def main():
    print(await asyncio.gather(fetch(1), fetch(2)))

asyncio.run(main())
```

Both fetches wait at the same time, so this takes about one second instead of two."""

OFF_TOPIC = ("The French Revolution began in 1789 and led to profound political changes in Europe, "
             "including the end of the absolute monarchy and the rise of the bourgeoisie.")


@pytest.fixture
def evaluator() -> ResponseEvaluator:
    return ResponseEvaluator()


def test_good_beats_off_topic_beats_empty(evaluator: ResponseEvaluator) -> None:
    good = evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
    off = evaluator.evaluate(ASYNC_REQUEST, OFF_TOPIC, "stop")
    empty = evaluator.evaluate(ASYNC_REQUEST, "", "stop")
    assert good.quality_score > off.quality_score > empty.quality_score == 0.0
    assert good.quality_score >= 0.9 and not good.low_quality
    assert off.low_quality and empty.low_quality
    assert good.relevance > off.relevance
    assert "empty answer" in empty.explanation


def test_without_calibration_scores_use_the_configured_weights() -> None:
    settings = QualitySettings(weights=QualityWeights(completeness=0.0, relevance=1.0, coherence=0.0),
                               calibration_path=None)
    result = ResponseEvaluator(settings).evaluate(ASYNC_REQUEST, OFF_TOPIC, "stop")
    assert result.quality_score == result.relevance
    assert result.calibration is None and "calibrated" not in result.explanation


def test_the_packaged_calibration_decides_by_default_and_says_so() -> None:
    evaluator = ResponseEvaluator()
    assert evaluator.calibration is not None
    result = evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
    assert result.calibration == evaluator.calibration.name
    assert result.explanation.endswith(f"quality calibrated by {evaluator.calibration.name}")
    weighted = ResponseEvaluator(QualitySettings(calibration_path=None)).evaluate(
        ASYNC_REQUEST, GOOD_ASYNC, "stop")
    assert (result.completeness, result.relevance, result.coherence) == (
        weighted.completeness, weighted.relevance, weighted.coherence)


def test_threshold_decides_low_quality() -> None:
    answer = ResponseEvaluator().evaluate(ASYNC_REQUEST, OFF_TOPIC, "stop")
    strict = ResponseEvaluator(QualitySettings(threshold=answer.quality_score + 0.01))
    lenient = ResponseEvaluator(QualitySettings(threshold=answer.quality_score))
    assert strict.evaluate(ASYNC_REQUEST, OFF_TOPIC, "stop").low_quality
    assert not lenient.evaluate(ASYNC_REQUEST, OFF_TOPIC, "stop").low_quality


def test_length_finish_is_heavily_penalised(evaluator: ResponseEvaluator) -> None:
    full = evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
    cut = evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC[:300], "length")
    assert cut.completeness <= 0.35 < full.completeness
    assert cut.quality_score < full.quality_score
    assert "finish_reason=length" in cut.explanation


def test_unclosed_code_block_lowers_completeness(evaluator: ResponseEvaluator) -> None:
    open_fence = GOOD_ASYNC[: GOOD_ASYNC.index("asyncio.run")]
    result = evaluator.evaluate(ASYNC_REQUEST, open_fence, None)
    assert "unclosed code block" in result.explanation
    assert result.completeness < evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, None).completeness


def test_refusal_is_penalised(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="How do I reset a forgotten Linux root password?")
    helpful = "Reboot into single-user mode from GRUB, remount root read-write, then run passwd root."
    refusal = "I'm sorry, but I can't help with resetting a root password on Linux."
    assert evaluator.evaluate(request, refusal, "stop").relevance < 0.5 * evaluator.evaluate(
        request, helpful, "stop").relevance
    assert "refusal" in evaluator.evaluate(request, refusal, "stop").explanation


def test_requested_count_is_checked(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="List 3 benefits of unit testing")
    three = ("- Unit testing catches regressions early.\n- Unit tests document behaviour.\n"
             "- Testing small units makes refactoring safer.")
    one = "- Unit testing catches regressions early."
    assert evaluator.evaluate(request, three, "stop").completeness == 1.0
    partial = evaluator.evaluate(request, one, "stop")
    assert partial.completeness < 0.6
    assert "1 of 3 requested items" in partial.explanation


def test_each_question_must_be_answered(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="What is the capital of France? What currency does Japan use?")
    both = "The capital of France is Paris. Japan uses the yen as its currency."
    one = "The capital of France is Paris, a city on the Seine."
    assert evaluator.evaluate(request, both, "stop").completeness == 1.0
    half = evaluator.evaluate(request, one, "stop")
    assert half.completeness <= 0.5
    assert "misses 1 of 2 questions" in half.explanation


def test_explain_x_and_y_needs_both(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="Compare TCP and UDP.")
    both = ("TCP is a connection-oriented protocol with ordered, reliable delivery and congestion "
            "control. UDP is connectionless: datagrams may arrive out of order or not at all, but "
            "with less overhead, which suits games, DNS and streaming media where latency matters "
            "more than completeness. TCP retransmits lost segments; UDP leaves that to the "
            "application if it needs it at all.")
    only_tcp = both.split(" UDP is")[0]
    assert evaluator.evaluate(request, both, "stop").completeness > evaluator.evaluate(
        request, only_tcp, "stop").completeness


def test_code_asked_needs_code(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="Write a Python function that reverses a string")
    code = "```python\ndef reverse(text: str) -> str:\n    return text[::-1]\n```"
    prose = "You can reverse a string in Python by slicing it with a negative step on the string."
    assert evaluator.evaluate(request, code, "stop").completeness > evaluator.evaluate(
        request, prose, "stop").completeness
    assert "code asked, none given" in evaluator.evaluate(request, prose, "stop").explanation


def test_short_answer_to_explain_request(evaluator: ResponseEvaluator) -> None:
    terse = evaluator.evaluate(ASYNC_REQUEST, "Python async await uses coroutines.", "stop")
    assert terse.completeness < 0.75
    assert "short" in terse.explanation


def test_repetition_lowers_coherence(evaluator: ResponseEvaluator) -> None:
    looped = "\n".join([GOOD_ASYNC] * 3)
    assert evaluator.evaluate(ASYNC_REQUEST, looped, "stop").coherence < 0.3
    stutter = "Async is great. " + "the loop the loop the loop " * 30
    assert "repeated phrases" in evaluator.evaluate(ASYNC_REQUEST, stutter, "stop").explanation


def test_garbage_characters_lower_coherence(evaluator: ResponseEvaluator) -> None:
    noisy = "Async await coroutines \x00\x01\x02\ufffd\ufffd\ufffd\x7f\x03 python loop \x04\x05\x06"
    result = evaluator.evaluate(ASYNC_REQUEST, noisy, "stop")
    assert result.coherence < 0.5
    assert "garbage characters" in result.explanation


def test_unbalanced_brackets_lower_coherence(evaluator: ResponseEvaluator) -> None:
    balanced = "Call asyncio.run(main()) to start the loop."
    unbalanced = "Call asyncio.run(main(( to start the loop."
    assert evaluator.evaluate(ASYNC_REQUEST, unbalanced, "stop").coherence < evaluator.evaluate(
        ASYNC_REQUEST, balanced, "stop").coherence


def test_system_prompt_is_not_the_question(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(
        messages=(Message(role="system", content="You are a cheerful gardening expert."),
                  Message(role="user", content="Explain how async/await works in Python")),
    )
    with_system = evaluator.evaluate(request, GOOD_ASYNC, "stop")
    assert with_system.relevance == evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop").relevance


def test_explanation_never_contains_request_text(evaluator: ResponseEvaluator) -> None:
    request = ModelRequest(prompt="Explain zyxxyquux and plorbnak. Why zyxxyquux? How plorbnak?")
    result = evaluator.evaluate(request, "Nothing relevant here at all, sorry friend.", "stop")
    assert "zyxxyquux" not in result.explanation and "plorbnak" not in result.explanation
    assert "misses" in result.explanation


def test_to_event_carries_scores() -> None:
    result = ResponseEvaluator().evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
    event = result.to_event(request_id="r1", model_id="m", provider="p", agent_type="a")
    assert isinstance(event, ResponseEvaluated)
    assert (event.quality_score, event.completeness, event.request_id) == (
        result.quality_score, result.completeness, "r1")
    assert event.evaluator == "heuristic"


def test_evaluation_is_frozen() -> None:
    result = ResponseEvaluator().evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
    assert isinstance(result, Evaluation)
    with pytest.raises(ValueError):
        result.quality_score = 0.0  # type: ignore[misc]


def test_extract_reads_demands() -> None:
    req = extract("List 3 benefits of unit testing. What is a mock? Compare pytest and unittest.")
    assert req.count == 3 and req.wants_detail and not req.wants_code
    assert [kind for kind, _ in req.parts] == ["part", "part"]
    assert extract("Give me five reasons to learn Rust").count == 5
    assert extract("Write a SQL query that counts users").wants_code
    assert extract("1. install it\n2. configure the proxy\n3. run the tests").parts[0][0] == "item"


def test_fast_on_a_2kb_answer(evaluator: ResponseEvaluator) -> None:
    answer = (GOOD_ASYNC * 3)[:2048]
    evaluator.evaluate(ASYNC_REQUEST, answer, "stop")  # warm the stemmer's cache
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        evaluator.evaluate(ASYNC_REQUEST, answer, "stop")
    per_call_ms = (time.perf_counter() - start) / runs * 1000
    assert per_call_ms < 5.0  # target is < 1 ms; loose bound so a busy CI box does not flake


# -- instruction following, degenerate text, arithmetic ----------------------------------------

RAW = ResponseEvaluator(QualitySettings(calibration_path=None))


def _why(prompt: str, answer: str, finish: str | None = "stop") -> Evaluation:
    return RAW.evaluate(ModelRequest(prompt=prompt, max_tokens=4096), answer, finish)


def _sentences(n: int, topic: str = "smartphone") -> str:
    return " ".join(f"Point {i} about the {topic} camera, battery and screen is here." for i in range(n))


def test_a_word_limit_is_held_loosely() -> None:
    prompt = "Write an outline for a blog post comparing two smartphones in fewer than 200 words."
    within, far_over = _why(prompt, _sentences(25)), _why(prompt, _sentences(90))
    assert "asked" not in within.explanation
    assert far_over.completeness < within.completeness and "words, 200 asked" in far_over.explanation


def test_concise_asked_and_a_long_answer_given() -> None:
    prompt = "Write a persuasive email to a friend about volunteering. Please be concise."
    assert "not concise" in _why(prompt, _sentences(120, "volunteering")).explanation
    assert "not concise" not in _why(prompt, _sentences(20, "volunteering")).explanation


def test_json_asked_needs_json_that_parses() -> None:
    prompt = ("Identify the countries and capitals in the following sentences. Output in JSON "
              "format.\na) Copenhagen is the capital of Denmark and Danish is spoken there by "
              "most people who live in the city, in the suburbs and in the wider region around it "
              "as well. b) Buenos Aires is the capital of Argentina, where Spanish is spoken.")
    good = '```json\n{"Denmark": "Copenhagen", "Argentina": "Buenos Aires"}\n```'
    broken = '``[\n {"country": "Denmark", "capital": "Copenhagen"}\n }\n]\n``'
    assert "JSON" not in _why(prompt, good).explanation
    assert "JSON asked, none parses" in _why(prompt, broken).explanation
    assert json_parses("Here: [5, 1, 3]") and not json_parses("Here: [5, 1, 3")


def test_one_item_per_line_asked() -> None:
    prompt = ("Extract the book, the author and the year from the texts below, one book per line."
              "\n" + "a) The book Dune by Frank Herbert appeared in 1965 and is a classic of the "
              "genre that many readers still love to read again and again. b) Neuromancer by "
              "William Gibson appeared in 1984 and started a whole new genre of fiction.")
    on_lines = "Dune, Frank Herbert, 1965\nNeuromancer, William Gibson, 1984"
    one_line = "Dune, Frank Herbert, 1965; Neuromancer, William Gibson, 1984"
    assert "per line" not in _why(prompt, on_lines).explanation
    assert "one item per line asked" in _why(prompt, one_line).explanation


def test_an_answer_in_another_language_than_asked() -> None:
    prompt = 'Translate and refine my text in English, with eloquent expressions: "衣带渐宽终不悔"'
    english = "As the sash grows loose, I shall never regret it: for her I am worn and wan."
    chinese = "纵使衣带渐宽，终究无悔，为伊而消磨人心也是悲伤不已。"
    assert "another language" not in _why(prompt, english).explanation
    assert "in another language than the request's" in _why(prompt, chinese).explanation


def test_code_in_another_language_than_asked() -> None:
    prompt = "Write a C++ program to find the nth Fibonacci number using recursion."
    cpp = "```cpp\n#include <iostream>\nint fib(int n) { return n < 2 ? n : fib(n-1) + fib(n-2); }\n```"
    python = "```python\ndef fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n```"
    assert _why(prompt, cpp).completeness > _why(prompt, python).completeness
    assert "code in another language than asked" in _why(prompt, python).explanation


def test_an_answer_written_as_the_one_asking() -> None:
    prompt = "Develop a Python program that reads text files and returns the top-5 words."
    impostor = "I'm trying to implement this task using Python. Here's my code, can you fix it?"
    assert "answers as the one asking" in _why(prompt, impostor).explanation


def test_a_refusal_with_an_answer_after_it_is_not_a_refusal() -> None:
    prompt = "Suggest five award-winning documentary films for aspiring filmmakers."
    disclaimer = ("As an AI language model, I cannot watch films, but I can provide a list: 1. Man "
                  "on Wire. 2. Free Solo. 3. Citizenfour. 4. Searching for Sugar Man. 5. Bowling "
                  "for Columbine.")
    assert "refusal" not in _why(prompt, disclaimer).explanation
    assert "refusal" not in _why("Write to my friend", "I can't help but think of you.").explanation


def test_a_word_repeated_in_a_run_and_template_text_lower_coherence() -> None:
    prompt = "List 5 artworks and ideas to adapt them for children."
    run = "1. **Van " + "van " * 40 + "Gogh**"
    leak = ("The Starry Night can become a projection room.\n\nHuman: What are the three states of "
            "matter? Assistant: Solid, liquid and gas.")
    assert "a word repeated" in _why(prompt, run).explanation
    assert "chat-template text" in _why(prompt, leak).explanation
    assert not template_leak("A fine answer.<|im_end|>") and not template_leak("assistant\nHello there.")


def test_arithmetic_slips_are_found() -> None:
    right = "f(2) = 4(2)^3 - 9(2) - 14\nf(2) = 4(8) - 18 - 14\nf(2) = 32 - 18 - 14\nf(2) = 0"
    wrong = right.replace("f(2) = 0", "f(2) = 4")
    assert arithmetic(right) == (3, 0)
    assert arithmetic(wrong)[1] == 1
    assert arithmetic("She has 16 - 3 = 13 eggs, sells 13 * $2 = $<<13*2=26>>26.") == (3, 0)
    assert arithmetic("So 3S + 9 - 9 = 27 - 9 and x = 2 ** 9999999.")[1] == 0
    assert arithmetic("```python\nx = 2 + 2 == 5\n```") == (0, 0)
    prompt = "Given that f(x) = 4x^3 - 9x - 14, find the value of f(2)."
    assert "calculations wrong" in _why(prompt, wrong).explanation
    assert _why(prompt, wrong).coherence < _why(prompt, right).coherence


MMLU = ("What is true for a type-Ia supernova?\nA. This type occurs in binary systems.\nB. This "
        "type occurs in young galaxies.\nC. This type produces gamma-ray bursts.\nD. This type "
        "produces high amounts of X-rays.\nAnswer:")


@pytest.mark.parametrize("answer", ["A", "B.", "(c)", "**D**", "The answer is B",
                                    "C. This type produces gamma-ray bursts."])
def test_a_letter_answer_to_a_multiple_choice_question_is_complete(answer: str) -> None:
    request = ModelRequest(prompt=MMLU)
    result = ResponseEvaluator().evaluate(request, answer, "stop")
    assert not result.low_quality and result.relevance == 1.0 and result.completeness == 1.0


def test_a_letter_that_is_no_option_or_no_letter_is_not_an_answer() -> None:
    request = ModelRequest(prompt=MMLU)
    valid = ResponseEvaluator().evaluate(request, "B", "stop")
    for answer in ("E", "Hmm."):
        result = ResponseEvaluator().evaluate(request, answer, "stop")
        assert result.quality_score < valid.quality_score and result.low_quality
    assert extract(MMLU).choices == "ABCD" and extract(MMLU).kind == "solve"


def test_material_quoted_in_the_prompt_is_not_a_demand() -> None:
    prompt = ("Evaluate the following movie reviews on a scale of 1 to 5:\n1. This movie was "
              "phenomenal, with great acting and a plot that kept everyone on the edge of their "
              "seat until the end.\n2. Never before have I been so disappointed with a movie; list "
              "3 reasons why would not be enough.\n3. The movie was okay, some parts were good "
              "and some were boring.\nReturn the answer as a JSON array of integers.")
    req = extract(prompt)
    assert req.kind == "extract" and req.wants_json and req.count is None and not req.parts
    assert "misses" not in _why(prompt, "[5, 1, 3]").explanation


# -- input and calibration files ---------------------------------------------------------------


@pytest.mark.parametrize(("request_", "text", "finish"), [
    ("not a request", "text", "stop"), (ASYNC_REQUEST, None, "stop"), (ASYNC_REQUEST, b"bytes", None),
    (ASYNC_REQUEST, "text", 3),
])
def test_bad_input_is_a_typed_error(request_: object, text: object, finish: object) -> None:
    with pytest.raises(InvalidInput):
        ResponseEvaluator().evaluate(request_, text, finish)  # type: ignore[arg-type]


def _model_json(**changes: object) -> dict:
    data = load_calibration("default").to_json()  # type: ignore[union-attr]
    data.update(changes)
    return data


@pytest.mark.parametrize(("data", "reason"), [
    ({"format": "something else"}, "not a quality calibration file"),
    (_model_json(features_version=0), "features version 0"),
    (_model_json(features=["a", "b"]), "features but"),
    (_model_json(weights=[-1.0] + [0.0] * (len(FEATURE_NAMES) - 1)), "weight of completeness is negative"),
    (_model_json(scale=[0.0] * len(FEATURE_NAMES)), "scale <= 0"),
    (_model_json(weights="nope"), "malformed"),
])
def test_a_bad_calibration_file_is_a_config_error(tmp_path, data: dict, reason: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=reason):
        ResponseEvaluator(QualitySettings(calibration_path=str(path)))


def test_a_missing_or_garbled_calibration_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read the calibration file"):
        load_calibration(str(tmp_path / "absent.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_calibration(str(tmp_path / "bad.json"))


def test_a_calibration_file_round_trips(tmp_path) -> None:
    packaged = load_calibration("default")
    assert isinstance(packaged, Calibration)
    packaged.save(tmp_path / "copy.json")
    copy = load_calibration(str(tmp_path / "copy.json"))
    assert copy == packaged
    settings = QualitySettings(calibration_path=str(tmp_path / "copy.json"))
    assert ResponseEvaluator(settings).evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop") == \
        ResponseEvaluator().evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")


# -- judge mode ------------------------------------------------------------------------------


def test_judge_prompt_builds_a_deterministic_request() -> None:
    judge = JudgePrompt(max_chars=50)
    built = judge.build(ASYNC_REQUEST, GOOD_ASYNC, judge_model_id="judge-model")
    assert built.model_id == "judge-model" and built.temperature == 0
    assert built.system == JUDGE_SYSTEM_PROMPT and built.agent_type == "judge"
    assert built.is_cacheable()
    assert "Explain how async/await works in Python" in (built.prompt or "")
    assert "characters omitted" in (built.prompt or "")  # the long answer was clipped
    assert len(built.prompt or "") < 400


def test_build_judge_prompt_is_self_contained() -> None:
    text = build_judge_prompt("What is 2+2?", "4", max_chars=100)
    assert text.startswith(JUDGE_SYSTEM_PROMPT)
    assert "What is 2+2?" in text and "ANSWER:" in text
    assert "characters omitted" in build_judge_prompt("q", "x" * 500, max_chars=100)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 7", 0.7),
        ("8/10", 0.8),
        ("I'd rate it 9 out of 10.", 0.9),
        ("85/100", 0.85),
        ("4/5", 0.8),
        ("0.8", 0.8),
        ("Rating = 1.0", 1.0),
        ("10", 1.0),
        ("0", 0.0),
        ("Score: 6\nThe answer misses the second question.", 0.6),
        ("score: 7/10 — decent", 0.7),
    ],
)
def test_parse_judge_score(reply: str, expected: float) -> None:
    assert parse_judge_score(reply) == pytest.approx(expected)


@pytest.mark.parametrize("reply", ["", "no idea", "15", "Score: -3", "12/10", "Score: 11"])
def test_parse_judge_score_rejects_unusable_replies(reply: str) -> None:
    assert parse_judge_score(reply) is None


# -- large answers -----------------------------------------------------------------------------

HASH_REQUEST = ModelRequest(prompt="Explain what a hash map is and when to use one.")
SENTENCES = (
    "A hash map stores key value pairs in buckets indexed by a hash of the key. ",
    "Lookups, inserts and deletes take constant time on average. ",
    "Collisions are resolved by chaining or by open addressing with probing. ",
    "The table grows when its load factor passes a threshold, rehashing every key. ",
)


def long_answer(chars: int) -> str:
    """An answer of about ``chars`` characters, sentences numbered so that none repeats."""
    parts, size, i = [], 0, 0
    while size < chars:
        part = f"Point {i}: {SENTENCES[i % len(SENTENCES)]}"
        parts.append(part)
        size, i = size + len(part), i + 1
    return "".join(parts)


def test_a_long_answer_is_scored_on_a_prefix_ending_at_a_sentence() -> None:
    from api_model_management.evaluation._evaluator import SCORED_MAX_CHARS, scored_part

    text = long_answer(1_000_000)
    part = scored_part(text)
    assert SCORED_MAX_CHARS // 2 <= len(part) <= SCORED_MAX_CHARS and text.startswith(part)
    assert part.endswith(".")
    short = long_answer(10_000)
    assert scored_part(short) is short
    result = ResponseEvaluator().evaluate(HASH_REQUEST, text, "stop")
    assert f"scored the first {len(part)} of {len(text)} characters" in result.explanation
    assert "looks cut off" not in result.explanation and "mid-sentence" not in result.explanation
    assert result == ResponseEvaluator().evaluate(HASH_REQUEST, text, "stop")  # deterministic


def test_a_large_answer_is_scored_off_the_event_loop_with_the_same_result() -> None:
    evaluator = ResponseEvaluator()
    text = long_answer(1_000_000)

    async def go() -> tuple[Evaluation, int]:
        ticks, done = 0, False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        result = await evaluator.evaluate_async(HASH_REQUEST, text, "stop")
        during = ticks - before
        done = True
        await task
        return result, during

    result, ticks = asyncio.run(go())
    assert ticks >= 2  # the loop kept running while the answer was scored
    assert result == evaluator.evaluate(HASH_REQUEST, text, "stop")
    small = asyncio.run(evaluator.evaluate_async(ASYNC_REQUEST, GOOD_ASYNC, "stop"))
    assert small == evaluator.evaluate(ASYNC_REQUEST, GOOD_ASYNC, "stop")
