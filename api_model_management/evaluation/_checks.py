"""Checks an answer can be held to without knowing the right answer.

- :func:`arithmetic`: the equalities it writes (``32 - 18 - 14 = 0``, ``f(2) = 4(8) - 18 - 14`` then
  ``f(2) = 10`` on the next line, GSM8K's ``<<9*2=18>>``) are recomputed; a wrong one is a slip a
  reader (or a judge) sees at once, and a strong sign the final answer is wrong too.
- :func:`json_parses`: some JSON value in the answer (fenced or bare) parses.
- :func:`template_leak`: chat-template text (``[/INST]``, ``<|im_end|>``, ``Human:``) with more
  text after it: the model did not stop where its turn ended.
- :func:`foreign_share`: the share of letters outside the Latin script.
- :func:`longest_run`: the longest run of one word repeated (``van van van ...``).

All pure and deterministic; each costs a few microseconds on a typical answer and is linear in its
length (expressions are evaluated on floats, exponents are bounded: nothing an answer writes can
make a check slow).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import string
from collections.abc import Sequence
from functools import lru_cache

_NUM_CHARS = r"[\d.,+\-*/×÷^()%$ ·|xX]"
_LEFT = re.compile(_NUM_CHARS + r"*$")
_RIGHT = re.compile(r"^[\d.,+\-*/×÷^()%$ ·|]*")
_LEADING_NUMBER = re.compile(r"^\s*\$?\s*-?\d[\d,]*(?:\.\d+)?%?")
_PARTIAL = re.compile(r"^\s*(?:[+*/×÷^·xX]|-\s)")  # an operand cut off on its left
_OPERATION = re.compile(r"\d\s*[-+*/×÷^xX·]\s*\$?[\d(]|\)\s*[-+*/×÷^]|\d\s*\(")
_IMPLICIT_TIMES = re.compile(r"(\d|\))\s*\(")
_TIMES_X = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")
_DIGIT = re.compile(r"\d")
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_DECIMALS = re.compile(r"\.(\d+)")
_REPLACE = str.maketrans({"$": "", "%": "", "×": "*", "·": "*", "÷": "/"})
_MAX_EXPRESSION_CHARS = 120
_MAX_POWER = 64.0
_MAX_BASE = 1e6
_KEY_CHARS = 30
_MAX_EQUATION_LINES = 64  # a degenerate answer may repeat one line hundreds of times
_MAX_EQUALS_PER_LINE = 16

Value = tuple[float, bool]  # the number, and whether it was written as a percentage


def arithmetic(text: str) -> tuple[int, int]:
    """``(checked, wrong)``: how many equalities in ``text`` could be recomputed, and how many of
    those do not hold (to a 1 % tolerance, or the stated decimals, or rounding to a whole number;
    ``a = b ÷ 3 = c`` is read both as a chain and as a running calculation). Code blocks are
    skipped: ``=`` there assigns. At most the first 64 lines with an ``=`` are read."""
    checked = wrong = 0
    previous_key: str | None = None
    previous: Value | None = None
    if "```" in text:
        text = _CODE_BLOCK.sub("\n", text)  # assignments, not arithmetic
    lines = [line for line in text.splitlines() if "=" in line]
    for line in lines[:_MAX_EQUATION_LINES]:
        if line.count("=") > _MAX_EQUALS_PER_LINE or not _DIGIT.search(line):
            continue  # a rule of "=====" is not arithmetic
        for left, right in _ANNOTATION.findall(line):
            checked, wrong = _count(_value(left), right, checked, wrong)
        line = _ANNOTATION.sub("", line)
        if "=" not in line:
            continue
        segments = line.split("=")
        key = segments[0].strip().lower()
        for i in range(len(segments) - 1):
            if i == 0 and not key:  # a line that continues the last one: "= 32 - 18 - 14"
                left_value = previous
            else:
                left = _left_operand(segments[i])
                left_value = _value(left) if _OPERATION.search(left) else None
            checked, wrong = _count(left_value, _right_operand(segments[i + 1]), checked, wrong)
        last = _right_operand(segments[-1])
        last_value = _value(last)
        if key and key == previous_key and len(segments) == 2:  # "f(2) = 32 - 18 - 14" / "f(2) = 4"
            checked, wrong = _count(previous, last, checked, wrong)
        if key:
            previous_key = key if len(key) <= _KEY_CHARS and _value(key) is None else None
        previous = last_value
    return checked, wrong


def _count(left: Value | None, right: str, checked: int, wrong: int) -> tuple[int, int]:
    if left is None:
        return checked, wrong
    agrees = _agrees(left, right)
    if agrees is None:
        return checked, wrong
    return checked + 1, wrong + (not agrees)


def _left_operand(segment: str) -> str:
    """The expression just left of an ``=`` (``13 - 4`` in "so she has 13 - 4 ="), or "" when it
    is cut off by a word ("3S + 9")."""
    found = _LEFT.search(segment[-_MAX_EXPRESSION_CHARS - 1:])  # bounded: the search is quadratic
    operand = found.group(0).lstrip("xX ") if found else ""
    if len(operand) > _MAX_EXPRESSION_CHARS:
        return ""
    start = len(segment) - len(operand)
    if _PARTIAL.match(operand) or (start and segment[start - 1].isalpha()):
        return ""
    return operand


def _right_operand(segment: str) -> str:
    found = _RIGHT.match(segment)
    return found.group(0) if found else ""


def _agrees(left: Value, right: str) -> bool | None:
    """Whether ``right`` states ``left``'s value; None when ``right`` is not a number."""
    stated = _value(right)
    if stated is None or stated[1] != left[1]:
        return None
    if _close(left[0], stated[0], right):
        return True
    lead = _LEADING_NUMBER.match(right)  # "x = 96 ÷ 3 = 32": 96 is x, then divided
    if lead and (number := _value(lead.group(0))) is not None and _close(left[0], number[0], lead.group(0)):
        return True
    whole = stated[0]
    return whole == int(whole) and whole in (math.floor(left[0]), math.ceil(left[0]))


def _close(computed: float, stated: float, text: str) -> bool:
    tolerance = 0.011 * max(1.0, abs(computed))
    decimals = _DECIMALS.search(text)
    if decimals:
        tolerance = max(tolerance, 0.51 * 10.0 ** -len(decimals.group(1)))
    return abs(computed - stated) <= tolerance


@lru_cache(maxsize=4096)
def _value(text: str) -> Value | None:
    expression = text.strip().strip(",").strip().rstrip(".").strip()
    if not _DIGIT.search(expression) or len(expression) > _MAX_EXPRESSION_CHARS:
        return None
    percent = "%" in expression
    expression = _TIMES_X.sub("*", _THOUSANDS.sub("", expression)).translate(_REPLACE)
    if "," in expression:
        return None
    try:
        number = float(expression)  # most right-hand sides are a number
    except ValueError:
        pass
    else:
        return (number, percent) if math.isfinite(number) else None
    expression = _IMPLICIT_TIMES.sub(r"\1*(", expression).replace(")(", ")*(").replace("^", "**")
    if "|" in expression:
        pieces = expression.split("|")
        if len(pieces) % 2 == 0:
            return None
        expression = "".join(p + ("abs(" if i % 2 == 0 else ")") for i, p in enumerate(pieces[:-1]))
        expression += pieces[-1]
    try:
        number = _evaluate(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return (number, percent) if math.isfinite(number) else None


def _evaluate(node: ast.expr) -> float:
    """Numbers, + - * / **, unary minus and abs(); anything else is a ValueError."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        a, b = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return a / b
        if isinstance(node.op, ast.Pow) and abs(b) <= _MAX_POWER and abs(a) <= _MAX_BASE:
            result = a ** b
            if isinstance(result, float):
                return result
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs"
            and len(node.args) == 1 and not node.keywords):
        return abs(_evaluate(node.args[0]))
    raise ValueError("not arithmetic")


# -- form ----------------------------------------------------------------------------------------

_FENCED = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.DOTALL)
_MAX_JSON_CHARS = 64 * 1024


def json_parses(text: str) -> bool:
    """Some JSON object or array in ``text`` parses: a fenced block, or the span from the first
    ``{``/``[`` to the last ``}``/``]``."""
    candidates = [block for block in _FENCED.findall(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate or candidate[0] not in "{[" or len(candidate) > _MAX_JSON_CHARS:
            continue
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return True
    return False


_TURN_MARKER = re.compile(
    r"\[/?INST\]|\[/?(?:Assistant|User)\]|<\|(?:im_start|im_end|eot_id|end_of_turn|start_header_id|"
    r"endoftext|user|system|assistant)\|>|</s>|^#{2,3} ?(?:Human|User|Instruction|Assistant|"
    r"Response):|^(?:Human|USER|User|Assistant|ASSISTANT):\s",
    re.MULTILINE,
)
_AFTER_MARKER_CHARS = 20


_MARKER_HINTS = ("INST]", "<|", "</s>", "Human", "User", "USER", "Assistant", "ASSISTANT", "##")


def template_leak(text: str) -> bool:
    """Chat-template text with more text after it: the model wrote past the end of its turn
    (a conversation it made up, another ``[/INST]`` answer). A role name on the first line or an
    end-of-turn marker as the very last thing is left alone: judges do not mind those."""
    if not any(hint in text for hint in _MARKER_HINTS):
        return False
    for match in _TURN_MARKER.finditer(text):
        if len(text[match.end():].strip()) >= _AFTER_MARKER_CHARS:
            return True
    return False


_LATIN = re.compile("[\u0000-\u024f]+")
_DROP_ASCII_LETTERS = str.maketrans("", "", string.ascii_letters)
_RUN_MIN = 4


def foreign_share(text: str) -> float:
    """Share of letters that are not Latin (CJK, Cyrillic, Arabic, ...): 0 for English text."""
    if text.isascii():
        return 0.0
    foreign = sum(1 for ch in _LATIN.sub("", text) if ch.isalpha())
    ascii_letters = len(text) - len(text.translate(_DROP_ASCII_LETTERS))
    return foreign / (foreign + ascii_letters) if foreign else 0.0


def longest_run(tokens: Sequence[str]) -> int:
    """The longest run of one word (letters, not a number) repeated back to back (``van van van
    van``), counting runs of four or more; 1 when there is none."""
    same = bytes(map(operator.eq, tokens, tokens[1:]))  # 1 where a token repeats the one before
    if b"\x01" * (_RUN_MIN - 1) not in same:
        return 1
    best, start = 1, 0
    for piece in same.split(b"\x00"):
        run = len(piece) + 1
        if run >= _RUN_MIN and run > best and tokens[start].isalpha():
            best = run
        start += len(piece) + 1
    return best
