"""Values from a JSON Schema: a conforming one (:func:`generate`) and a breaking one (:func:`violate`).

Deterministic from a seed. Understood: ``type`` (a name or a list; Gemini's upper-case OpenAPI
names and ``nullable`` too), ``enum``, ``const``, ``properties`` / ``required`` /
``additionalProperties`` / ``minProperties`` / ``maxProperties``, ``items`` / ``prefixItems`` /
``minItems`` / ``maxItems`` / ``uniqueItems``, ``minimum`` / ``maximum`` / ``exclusiveMinimum`` /
``exclusiveMaximum`` (draft 4 booleans or numbers) / ``multipleOf``, ``minLength`` /
``maxLength``, common string ``format`` values, ``anyOf`` / ``oneOf`` (one branch), ``allOf``
(merged) and local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, ``#``), recursion included.
Not honoured: ``pattern``, ``not``, ``if``/``then``/``else``, ``contains``, ``patternProperties``.
Integer-valued limits given as strings (Gemini's int64 fields in proto JSON) are read as numbers.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

#: Below this depth optional properties and extra array items may appear; at it, only what the
#: schema requires (so recursive schemas end).
MAX_DEPTH = 5
#: A recursive schema that requires itself forever is cut here (the value is then ``{}``).
HARD_DEPTH = 32
_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean", "null"})


def generate(schema: object, seed: int, words: Sequence[str] = ()) -> Any:
    """A value that validates against ``schema`` (strings drawn from ``words`` when given)."""
    return _Generator(schema, seed, words).value(schema, 0)


def violate(schema: object, seed: int, words: Sequence[str] = ()) -> tuple[bool, Any]:
    """``(True, value)`` with a value that does not validate against ``schema``, or
    ``(False, None)`` when the emulator cannot break it in place (a schema accepting any value of
    its type). An object keeps its type: a required property goes missing, else one property gets
    a wrong type, else an unexpected property appears; any other value gets a wrong type."""
    gen = _Generator(schema, seed, words)
    node = gen.flatten(schema)
    if node is None:
        return False, None
    allowed = gen.types_of(node)
    if allowed is not None and "object" in allowed and not node.keys() & {"anyOf", "oneOf"}:
        return _break_object(gen, node)
    wrong = gen.wrong_for(node)
    return (True, wrong) if wrong is not _NOTHING else (False, None)


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


def _wrong_value(allowed: frozenset[str]) -> Any:
    """A value of none of the ``allowed`` types, or _NOTHING when every type is allowed."""
    candidates: list[tuple[frozenset[str], Any]] = [
        (frozenset({"string"}), "not-a-valid-value"),
        (frozenset({"integer", "number"}), 12345),
        (frozenset({"number"}), 0.5),
        (frozenset({"boolean"}), True),
        (frozenset({"array"}), ["unexpected"]),
        (frozenset({"object"}), {"unexpected": True}),
        (frozenset({"null"}), None),
    ]
    for types, value in candidates:
        if not types & allowed:
            return value
    return _NOTHING


def _break_object(gen: _Generator, node: dict[str, Any]) -> tuple[bool, Any]:
    base = gen.value(node, 0)
    if not isinstance(base, dict):
        return False, None
    required = [name for name in node.get("required") or () if isinstance(name, str)]
    if required:
        missing = required[gen.rng.randrange(len(required))]
        base.pop(missing, None)
        return True, base
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            wrong = gen.wrong_for(sub)
            if wrong is not _NOTHING:
                base[name] = wrong
                return True, base
    if node.get("additionalProperties") is False:
        extra = "unexpected_property"
        while isinstance(properties, dict) and extra in properties:
            extra += "_"
        base[extra] = 1
        return True, base
    return False, None


class _Generator:
    __slots__ = ("root", "rng", "words")

    def __init__(self, root: object, seed: int, words: Sequence[str]) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.words = [w for w in words if w] or list(_WORDS)

    # ---- schema plumbing

    def resolve(self, schema: object) -> object:
        """Follow local ``$ref`` pointers (a few hops at most)."""
        for _ in range(16):
            if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
                return schema
            target = _pointer(self.root, schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            if not siblings or not isinstance(target, dict):
                schema = target
            else:
                schema = {**target, **siblings}
        return schema

    def flatten(self, schema: object) -> dict[str, Any] | None:
        """The schema as one dict: references followed, ``allOf`` merged; None for ``true``,
        ``false`` and anything not a schema."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return None
        parts = schema.get("allOf")
        if not isinstance(parts, list) or not parts:
            return schema
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            flat = self.flatten(part)
            if flat is not None:
                merged = _merge(merged, flat)
        return merged

    def types_of(self, node: dict[str, Any]) -> frozenset[str] | None:
        """The types a schema allows, when it says (or its keywords imply); None: any."""
        declared = node.get("type")
        names: set[str] = set()
        if isinstance(declared, str):
            names.add(declared.lower())
        elif isinstance(declared, list):
            names.update(t.lower() for t in declared if isinstance(t, str))
        if not names:
            if "enum" in node or "const" in node:
                return None
            names.add(_implied_type(node) or "")
            names.discard("")
            if not names:
                return None
        if node.get("nullable") is True:
            names.add("null")
        return frozenset(names & set(_TYPES)) or None

    def wrong_for(self, schema: object) -> Any:
        """A value the (sub)schema rejects by its type or enum, or _NOTHING."""
        node = self.flatten(schema)
        if node is None:
            return _NOTHING
        if node.keys() & {"anyOf", "oneOf"}:
            union = self._union_types(node.get("anyOf") or node.get("oneOf"))
            return _wrong_value(union) if union is not None else _NOTHING
        if "const" in node:
            return _NOTHING if node["const"] == "not-a-valid-value" else "not-a-valid-value"
        allowed = self.types_of(node)
        if allowed is not None:
            wrong = _wrong_value(allowed)
            if wrong is not _NOTHING:
                return wrong
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            for value in ("not-a-valid-value", -987654321, False, None):
                if not any(_same(value, item) for item in enum):
                    if allowed is None or _json_type(value) & allowed:
                        return value
        return _NOTHING

    def _union_types(self, branches: object) -> frozenset[str] | None:
        """The types any branch allows, when every branch says (no enum-only branch)."""
        if not isinstance(branches, list) or not branches:
            return None
        union: set[str] = set()
        for branch in branches:
            node = self.flatten(branch)
            types = self.types_of(node) if node is not None and not node.keys() & {
                "anyOf", "oneOf", "enum", "const"} else None
            if types is None:
                return None
            union |= types
        return frozenset(union)

    # ---- values

    def value(self, schema: object, depth: int) -> Any:
        if depth >= HARD_DEPTH:
            return {}
        node = self.flatten(schema)
        if node is None:
            return None if schema is False else self.word()
        if "const" in node:
            return node["const"]
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.rng.randrange(len(enum))]
        for key in ("anyOf", "oneOf"):
            branches = node.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(branches, depth), depth + 1)
        allowed = self.types_of(node)
        kind = self._pick_type(allowed, depth)
        return getattr(self, "_" + kind)(node, depth)

    def _branch(self, branches: list[Any], depth: int) -> Any:
        if depth >= MAX_DEPTH:
            for branch in branches:
                flat = self.flatten(branch)
                if flat is not None and (self.types_of(flat) or frozenset()) <= _SCALAR_TYPES \
                        and self.types_of(flat) is not None:
                    return branch
        return branches[self.rng.randrange(len(branches))]

    def _pick_type(self, allowed: frozenset[str] | None, depth: int) -> str:
        if not allowed:
            return "string"
        choices = sorted(allowed - {"null"}) or ["null"]
        if depth >= MAX_DEPTH and "null" in allowed:
            return "null"
        if "integer" in choices and "number" in choices:
            choices.remove("number")
        return choices[self.rng.randrange(len(choices))]

    def word(self) -> str:
        return self.words[self.rng.randrange(len(self.words))]

    def _two_words(self) -> str:
        first = self.rng.randrange(len(self.words))
        second = (first + 1 + self.rng.randrange(max(1, len(self.words) - 1))) % len(self.words)
        return f"{self.words[first]} {self.words[second]}"

    def _null(self, node: dict[str, Any], depth: int) -> None:
        return None

    def _boolean(self, node: dict[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _string(self, node: dict[str, Any], depth: int) -> str:
        fmt = node.get("format")
        text = self._formatted(fmt) if isinstance(fmt, str) else None
        if text is None:
            text = self.word() if self.rng.random() < 0.6 else self._two_words()
        low = _at_least(node.get("minLength"))
        high = _at_most(node.get("maxLength"))
        if len(text) < low:
            filler = text or "x"
            text = (text + " " + filler * (low // len(filler) + 1))[:max(low, len(text))]
        if high is not None and len(text) > high:
            text = text[:high]
        return text

    def _formatted(self, fmt: str) -> str | None:
        rng = self.rng
        day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        return {
            "date": day, "date-time": f"{day}T{clock}Z", "time": clock,
            "email": f"{self.word().lower().replace(' ', '.')}@example.com",
            "uri": f"https://example.com/{self.word().replace(' ', '-')}",
            "url": f"https://example.com/{self.word().replace(' ', '-')}",
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ipv4": f"192.0.2.{rng.randint(1, 254)}", "hostname": "example.com",
        }.get(fmt)

    def _integer(self, node: dict[str, Any], depth: int) -> int:
        low, high = _bounds(node, integer=True)
        step = _number(node.get("multipleOf"))
        if step and step > 0:
            for value in self._multiples(low, high, step):
                if float(value).is_integer():
                    return int(value)
        if low > high:
            return int(low)
        return self.rng.randint(int(low), int(high))

    def _number(self, node: dict[str, Any], depth: int) -> float | int:
        low, high = _bounds(node, integer=False)
        step = _number(node.get("multipleOf"))
        if step and step > 0:
            for value in self._multiples(low, high, step):
                return value
        if low >= high:
            return low
        value = round(low + (high - low) * self.rng.uniform(0.05, 0.95), 2)
        return value if _inside(node, value) else (low + high) / 2

    def _multiples(self, low: float, high: float, step: float) -> list[float | int]:
        """Multiples of ``step`` within bounds that a validator computing ``value / step`` (or
        ``value % step`` for an integer step) accepts, a random one first. With a float step
        not every multiple passes (``0.3 / 0.1`` is not 3 in floating point), so several are tried."""
        first, last = math.ceil(low / step), math.floor(high / step)
        if first > last:
            return []
        if isinstance(step, int):
            return [self.rng.randint(first, last) * step]
        start = self.rng.randint(first, last)
        span = last - first + 1
        for n in range(min(span, 64)):
            k = first + (start - first + n) % span
            for value in (k * step, round(k * step, 12)):
                if low <= value <= high and (value / step).is_integer():
                    return [value]
        return [0.0] if low <= 0 <= high else []

    def _array(self, node: dict[str, Any], depth: int) -> list[Any]:
        prefix = node.get("prefixItems")
        items = node.get("items")
        if isinstance(items, list):  # draft 4 tuple form
            prefix, items = items, node.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        low = _at_least(node.get("minItems"))
        high = _at_most(node.get("maxItems"))
        if items is False:
            high = min(len(prefix), high) if high is not None else len(prefix)
        if depth >= MAX_DEPTH:
            size = low
        else:
            top = low + 2 if high is None else min(high, max(low, 1) + 2)
            size = self.rng.randint(max(low, min(1, top)), max(low, top))
        unique = node.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[bytes] = set()
        for i in range(size):
            sub = prefix[i] if i < len(prefix) else items
            value = self.value(sub if sub is not None else {}, depth + 1)
            if unique:
                for _ in range(24):
                    key = _canonical(value)
                    if key not in seen:
                        break
                    value = self.value(sub if sub is not None else {}, depth + 1)
                seen.add(_canonical(value))
            out.append(value)
        return out

    def _object(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = node.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [n for n in node.get("required") or () if isinstance(n, str)]
        extra = node.get("additionalProperties", True)
        low = _at_least(node.get("minProperties"))
        high = _at_most(node.get("maxProperties"))
        out: dict[str, Any] = {}
        for name in required:
            out[name] = self.value(properties.get(name, extra if isinstance(extra, dict) else {}),
                                   depth + 1)
        optional = [name for name in properties if name not in out]
        for name in optional:
            if depth < MAX_DEPTH and self.rng.random() < 0.5 and (high is None or len(out) < high):
                out[name] = self.value(properties[name], depth + 1)
        for name in optional:
            if len(out) >= low:
                break
            out.setdefault(name, self.value(properties[name], depth + 1))
        n = 0
        while len(out) < low and extra is not False:
            out.setdefault(f"extra_{n}", self.value(extra if isinstance(extra, dict) else {}, depth + 1))
            n += 1
        return out


def _pointer(root: object, ref: str) -> object:
    if not ref.startswith("#"):
        return {}
    node = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key in ("minimum", "minLength", "minItems", "minProperties") and key in out:
            out[key] = max(_number(out[key]) or 0, _number(value) or 0)
        elif key in ("maximum", "maxLength", "maxItems", "maxProperties") and key in out:
            out[key] = min(_number(out[key]) or 0, _number(value) or 0)
        else:
            out.setdefault(key, value)
    return out


def _implied_type(node: dict[str, Any]) -> str | None:
    keys = node.keys()
    if keys & {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}:
        return "object"
    if keys & {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}:
        return "array"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return "number"
    if keys & {"minLength", "maxLength", "format", "pattern"}:
        return "string"
    return None


def _number(value: object) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return int(parsed) if parsed.is_integer() else parsed
    return None


def _at_least(value: object) -> int:
    """A lower count (``minItems``...): 0 when unset."""
    number = _number(value)
    return max(0, int(number)) if number is not None else 0


def _at_most(value: object) -> int | None:
    """An upper count (``maxItems``...): None when unset."""
    number = _number(value)
    return max(0, int(number)) if number is not None else None


def _bounds(node: dict[str, Any], integer: bool) -> tuple[float, float]:
    """The closed interval of acceptable numbers (integers: whole bounds)."""
    low, high = _number(node.get("minimum")), _number(node.get("maximum"))
    ex_low, ex_high = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    margin = 1 if integer else 0.01
    if ex_low is True and low is not None:
        low += margin
    elif (v := _number(ex_low)) is not None:
        low = max(low, v + margin) if low is not None else v + margin
    if ex_high is True and high is not None:
        high -= margin
    elif (v := _number(ex_high)) is not None:
        high = min(high, v - margin) if high is not None else v - margin
    if low is None and high is None:
        low, high = 0, 100
    elif low is None:
        low = high - 100 if high is not None else 0
    elif high is None:
        high = low + 100
    assert low is not None and high is not None
    if integer:
        return math.ceil(low), math.floor(high)
    return low, high


def _inside(node: dict[str, Any], value: float) -> bool:
    low, high = _bounds(node, integer=False)
    return low <= value <= high


def _json_type(value: object) -> frozenset[str]:
    if value is None:
        return frozenset({"null"})
    if isinstance(value, bool):
        return frozenset({"boolean"})
    if isinstance(value, int):
        return frozenset({"integer", "number"})
    if isinstance(value, float):
        return frozenset({"number"})
    if isinstance(value, str):
        return frozenset({"string"})
    return frozenset({"array" if isinstance(value, list) else "object"})


def _same(a: object, b: object) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(value: object) -> bytes:
    """Equal for values JSON Schema calls equal (1 and 1.0 alike; true and 1 not)."""
    def norm(v: object) -> object:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        return str(v)
    return orjson.dumps(norm(value), option=orjson.OPT_SORT_KEYS)
