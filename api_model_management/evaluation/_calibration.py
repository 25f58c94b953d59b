"""The calibration layer: from an answer's heuristic measurements to the score a judge would give.

The heuristic scores (:mod:`._scores`) say *what* is wrong with an answer; how much each kind of
fault costs in a judge's eyes is learned from judged answers. :func:`feature_vector` reads an
answer's measurements as :data:`FEATURE_NAMES`; a :class:`Calibration` is a ridge regression on
them, fitted (:func:`fit`) to labels in [0, 1] (a judge's rating / 10, a user's score) and stored as
a small JSON file; ``quality_score`` is its prediction, clipped to [0, 1].

Choices that keep it honest and cheap:

- The three scores (and ``form``, the part of completeness the form asked for contributes) enter
  as they are, so each factor of a score (a JSON format missed, a word limit blown, an arithmetic
  slip) costs in proportion to its size; rare faults that no training question showed share the
  weight their score earned on the common ones. Their weights are held at or above zero (a fit
  that wants a negative one drops the feature), so that a worse score never raises the quality:
  truncation, repetition and refusals keep lowering it.
- The kind of request (:data:`._requirements.KINDS`: read from the prompt, never a category label)
  and its interaction with length let a short solved problem and a long story both score well,
  and carry the judge's lower ratings of answers to problems with one right answer; nothing names
  a question, a model or a row.
- Prediction is a dot product of sixteen numbers (a microsecond or two); fitting is a linear
  solve in pure Python (no numpy), well under a second for thousands of labels.
- :func:`grouped_cv` scores a fit on whole groups (questions, prompts) it did not see, which is the
  figure to trust: the same question answered by many models must not leak across folds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidInput
from ._requirements import KINDS, Requirements
from ._scores import Scores
from ._text import Answer

#: Bumped whenever :func:`feature_vector` changes meaning; a model file for another version is
#: refused (refit it with ``amm calibrate``).
FEATURES_VERSION = 1
_KINDS = tuple(k for k in KINDS if k != "open")  # "open" is the baseline
#: The measurements a calibration reads, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "completeness", "form", "relevance", "coherence", "log_words",
    *(f"kind_{k}" for k in _KINDS), *(f"{k}_x_log_words" for k in _KINDS),
    "repeated_trigrams", "log_sentence_words", "arithmetic_wrong",
)
#: Features whose weight may not be negative (a worse score never raises the quality).
MONOTONE = ("completeness", "form", "relevance", "coherence")
FORMAT = "amm-quality-calibration"
DEFAULT = "default"
_PACKAGED = "quality_calibration.json"
DEFAULT_RIDGE = 10.0
MIN_LABELS = 30
MIN_GROUPS = 5


def feature_vector(req: Requirements, answer: Answer, scores: Scores) -> list[float]:
    """The measurements of one (non-empty) answer, as :data:`FEATURE_NAMES`."""
    log_words = math.log1p(len(answer.tokens))
    kinds = [1.0 if req.kind == k else 0.0 for k in _KINDS]
    return [
        scores.completeness, scores.form, scores.relevance, scores.coherence, log_words,
        *kinds, *(k * log_words for k in kinds),
        scores.repeated_trigrams, math.log1p(scores.mean_sentence_words),
        1.0 if scores.arithmetic_wrong else 0.0,
    ]


@dataclass(frozen=True)
class Calibration:
    """A fitted linear model: ``clip(intercept + Σ weight·(x − center)/scale, 0, 1)``.

    ``name`` identifies it in events and explanations; ``info`` says what it was fitted on and how
    well it did on held-out groups (free-form, written to the file as is)."""

    name: str
    weights: tuple[float, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURE_NAMES
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.weights) == len(self.center) == len(self.scale) == n):
            raise ConfigError(f"calibration {self.name!r}: {n} features but {len(self.weights)} "
                              f"weights, {len(self.center)} centers, {len(self.scale)} scales")
        numbers = (*self.weights, *self.center, *self.scale, self.intercept)
        if not all(math.isfinite(v) for v in numbers) or any(s <= 0 for s in self.scale):
            raise ConfigError(f"calibration {self.name!r} holds a non-finite number or a scale <= 0")
        for name in MONOTONE:
            if name in self.features and self.weights[self.features.index(name)] < 0:
                raise ConfigError(f"calibration {self.name!r}: the weight of {name} is negative "
                                  "(a worse score would raise the quality)")

    def predict(self, x: Sequence[float]) -> float:
        """The calibrated quality of one feature vector, in [0, 1]."""
        total = self.intercept
        for w, v, c, s in zip(self.weights, x, self.center, self.scale, strict=True):
            total += w * (v - c) / s
        return min(1.0, max(0.0, total))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features_version": FEATURES_VERSION, "name": self.name,
                "intercept": self.intercept, "features": list(self.features),
                "weights": list(self.weights), "center": list(self.center),
                "scale": list(self.scale), "info": self.info}

    @classmethod
    def from_json(cls, data: object, source: str = "calibration") -> Calibration:
        """Read a model written by :meth:`to_json`; a :class:`ConfigError` naming ``source`` if it
        is not one, or was fitted for another features version."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source} is not a quality calibration file (format {FORMAT!r})")
        if data.get("features_version") != FEATURES_VERSION:
            raise ConfigError(f"{source} was fitted on features version "
                              f"{data.get('features_version')!r}, this evaluator computes version "
                              f"{FEATURES_VERSION}: refit it with `amm calibrate`")
        try:
            model = cls(name=str(data["name"]), intercept=float(data["intercept"]),
                        features=tuple(str(f) for f in data["features"]),
                        weights=tuple(float(v) for v in data["weights"]),
                        center=tuple(float(v) for v in data["center"]),
                        scale=tuple(float(v) for v in data["scale"]),
                        info=dict(data.get("info") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source} is malformed ({type(exc).__name__}: {exc})") from None
        if model.features != FEATURE_NAMES:
            raise ConfigError(f"{source} reads other features than this evaluator computes "
                              f"(features version {FEATURES_VERSION}); refit it with `amm calibrate`")
        return model

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def load_calibration(path: str | None) -> Calibration | None:
    """The calibration ``QualitySettings.calibration_path`` names: None for none, ``"default"``
    for the packaged one (fitted on MT-Bench GPT-4 judge ratings), else a file written by
    ``amm calibrate``. A missing or malformed file is a :class:`ConfigError`."""
    if path is None:
        return None
    if path == DEFAULT:
        text = resources.files("api_model_management").joinpath("_data", _PACKAGED).read_text("utf-8")
        return Calibration.from_json(json.loads(text), source=f"the packaged {_PACKAGED}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the calibration file {path} "
                          f"({exc.strerror or type(exc).__name__})") from None
    except ValueError as exc:
        raise ConfigError(f"the calibration file {path} is not JSON ({exc})") from None
    return Calibration.from_json(data, source=f"the calibration file {path}")


# -- fitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A fitted calibration and how it did on groups it was not fitted on."""

    calibration: Calibration
    cv_rho: float
    cv_predictions: tuple[float, ...]
    folds: int


def fit(x: Sequence[Sequence[float]], y: Sequence[float], groups: Sequence[str], *,
        name: str, ridge: float = DEFAULT_RIDGE, folds: int = 10,
        info: dict[str, Any] | None = None) -> Fit:
    """Fit on all rows and score the same recipe by grouped cross-validation (``folds`` folds of
    whole groups, assigned by a hash of the group: deterministic). Raises
    :class:`~api_model_management.errors.InvalidInput` with a one-line reason when there are too
    few labels or groups."""
    _check_enough(y, groups)
    calibration = _fit_monotone(x, y, ridge, name)
    predictions, k = grouped_cv(x, y, groups, ridge=ridge, folds=folds)
    rho = spearman(predictions, y)
    meta = {**(info or {}), "rows": len(y), "groups": len(set(groups)), "ridge": ridge,
            "cv": {"folds": k, "spearman": round(rho, 4)}}
    return Fit(Calibration(name=name, weights=calibration.weights, center=calibration.center,
                           scale=calibration.scale, intercept=calibration.intercept, info=meta),
               rho, tuple(predictions), k)


def grouped_cv(x: Sequence[Sequence[float]], y: Sequence[float], groups: Sequence[str], *,
               ridge: float = DEFAULT_RIDGE, folds: int = 10,
               features: tuple[str, ...] = FEATURE_NAMES) -> tuple[list[float], int]:
    """Held-out predictions for every row, each from a fit that saw none of its group."""
    assignment = fold_of(groups, folds)
    k = max(assignment) + 1
    predictions = [0.0] * len(y)
    for fold in range(k):
        train = [i for i, f in enumerate(assignment) if f != fold]
        model = _fit_monotone([x[i] for i in train], [y[i] for i in train], ridge, "cv", features)
        for i, f in enumerate(assignment):
            if f == fold:
                predictions[i] = model.predict(x[i])
    return predictions, k


def fold_of(groups: Sequence[str], folds: int) -> list[int]:
    """Each row's fold: groups ordered by a hash of their name, dealt round-robin."""
    unique = sorted(set(groups), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    k = max(2, min(folds, len(unique)))
    index = {g: i % k for i, g in enumerate(unique)}
    return [index[g] for g in groups]


def _check_enough(y: Sequence[float], groups: Sequence[str]) -> None:
    if len(y) < MIN_LABELS:
        raise InvalidInput(f"{len(y)} labelled answers; at least {MIN_LABELS} are needed")
    if len(set(groups)) < MIN_GROUPS:
        raise InvalidInput(f"{len(set(groups))} distinct questions; at least {MIN_GROUPS} are "
                           "needed to check the fit on questions it did not see")
    if len(set(y)) < 2:
        raise InvalidInput("every label is the same; nothing to learn from")


def _fit_monotone(x: Sequence[Sequence[float]], y: Sequence[float], ridge: float,
                  name: str, features: tuple[str, ...] = FEATURE_NAMES) -> Calibration:
    """Ridge on standardized features; a monotone feature whose weight comes out negative is
    fixed at zero and the rest refitted."""
    n_features = len(features)
    center = [sum(row[j] for row in x) / len(x) for j in range(n_features)]
    scale = []
    for j in range(n_features):
        var = sum((row[j] - center[j]) ** 2 for row in x) / len(x)
        scale.append(math.sqrt(var) if var > 1e-12 else 1.0)
    z = [[(row[j] - center[j]) / scale[j] for j in range(n_features)] for row in x]
    mean_y = sum(y) / len(y)
    active = list(range(n_features))
    weights = [0.0] * n_features
    for _ in range(len(MONOTONE) + 1):
        solved = _ridge([[r[j] for j in active] for r in z], [v - mean_y for v in y], ridge)
        weights = [0.0] * n_features
        for j, w in zip(active, solved, strict=True):
            weights[j] = w
        negative = [j for j in active if features[j] in MONOTONE and weights[j] < 0]
        if not negative:
            break
        active = [j for j in active if j not in negative]
    for j in range(n_features):
        if features[j] in MONOTONE and weights[j] < 0:
            weights[j] = 0.0
    return Calibration(name=name, weights=tuple(weights), center=tuple(center),
                       scale=tuple(scale), intercept=mean_y, features=features)


def _ridge(z: Sequence[Sequence[float]], y: Sequence[float], ridge: float) -> list[float]:
    """Solve ``(ZᵀZ + ridge·I) w = Zᵀy`` (Z centred, so no intercept) by Gaussian elimination."""
    m = len(z[0]) if z else 0
    a = [[0.0] * m for _ in range(m)]
    b = [0.0] * m
    for row, target in zip(z, y, strict=True):
        for i in range(m):
            ri = row[i]
            if ri:
                b[i] += ri * target
                a_i = a[i]
                for j in range(i, m):
                    a_i[j] += ri * row[j]
    for i in range(m):
        a[i][i] += ridge
        for j in range(i):
            a[i][j] = a[j][i]
    return _solve(a, b)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    m = len(b)
    for col in range(m):
        pivot = max(range(col, m), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(col + 1, m):
            factor = a[r][col] / a[col][col]
            if factor:
                for c in range(col, m):
                    a[r][c] -= factor * a[col][c]
                b[r] -= factor * b[col]
    out = [0.0] * m
    for r in range(m - 1, -1, -1):
        out[r] = (b[r] - sum(a[r][c] * out[c] for c in range(r + 1, m))) / a[r][r]
    return out


# -- agreement ---------------------------------------------------------------------------------


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    n = len(ra)
    if n < 2:
        return 0.0
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((p - ma) * (q - mb) for p, q in zip(ra, rb, strict=True))
    var_a = sum((p - ma) ** 2 for p in ra)
    var_b = sum((q - mb) ** 2 for q in rb)
    return cov / math.sqrt(var_a * var_b) if var_a and var_b else 0.0


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """The probability that a random positive outscores a random negative (ties count half)."""
    ranks = _ranks(scores)
    n_pos = sum(1 for p in positive if p)
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return 0.5
    rank_sum = sum(r + 1 for r, p in zip(ranks, positive, strict=True) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
