"""The calibration layer: rank agreement, grouped folds, the monotone ridge fit, the model file."""

from __future__ import annotations

import itertools
import random

import pytest

from api_model_management.errors import InvalidInput
from api_model_management.evaluation import FEATURE_NAMES, Calibration
from api_model_management.evaluation._calibration import (
    MIN_GROUPS,
    MIN_LABELS,
    MONOTONE,
    auc,
    fit,
    fold_of,
    grouped_cv,
    spearman,
)

pytestmark = pytest.mark.unit
N = len(FEATURE_NAMES)


def _brute_spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        return [sum(x < y for x in v) + (sum(x == y for x in v) - 1) / 2 for y in v]

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((p - ma) * (q - mb) for p, q in zip(ra, rb, strict=True))
    var = (sum((p - ma) ** 2 for p in ra) * sum((q - mb) ** 2 for q in rb)) ** 0.5
    return cov / var


def test_spearman_and_auc_agree_with_their_definitions() -> None:
    rng = random.Random(3)
    for _ in range(50):
        a = [rng.choice(range(6)) for _ in range(20)]  # many ties
        b = [x + rng.choice(range(4)) for x in a]
        assert spearman(a, b) == pytest.approx(_brute_spearman(a, b))
        positive = [rng.random() < 0.4 for _ in a]
        pairs = [(p, n) for p, n in itertools.product(range(20), range(20))
                 if positive[p] and not positive[n]]
        brute = sum(1.0 if a[p] > a[n] else 0.5 if a[p] == a[n] else 0.0 for p, n in pairs) / len(pairs)
        assert auc(a, positive) == pytest.approx(brute)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0 and auc([1.0, 2.0], [True, True]) == 0.5


def test_folds_keep_each_group_whole_and_are_deterministic() -> None:
    groups = [f"q{i % 13}" for i in range(200)]
    folds = fold_of(groups, 5)
    assert folds == fold_of(list(groups), 5)
    for group in set(groups):
        assert len({f for g, f in zip(groups, folds, strict=True) if g == group}) == 1
    assert set(folds) == set(range(5))
    assert max(fold_of(["a", "b", "c"], 10)) == 2  # no more folds than groups


Rows = tuple[list[list[float]], list[float], list[str]]


def _world(seed: int = 1, n_groups: int = 12, per_group: int = 8) -> Rows:
    """Labels that rise with coherence and fall with repetition; groups differ by an offset."""
    rng = random.Random(seed)
    x, y, groups = [], [], []
    for g in range(n_groups):
        offset = rng.uniform(-0.1, 0.1)
        for _ in range(per_group):
            row = [rng.random() for _ in range(N)]
            coherence = row[FEATURE_NAMES.index("coherence")]
            repeated = row[FEATURE_NAMES.index("repeated_trigrams")]
            x.append(row)
            y.append(min(1.0, max(0.0, 0.5 + offset + 0.4 * coherence - 0.3 * repeated + rng.gauss(0, 0.05))))
            groups.append(f"g{g}")
    return x, y, groups


def test_a_fit_finds_what_the_labels_follow_on_groups_it_did_not_see() -> None:
    x, y, groups = _world()
    result = fit(x, y, groups, name="world")
    assert result.cv_rho > 0.6 and result.folds == 10
    weights = dict(zip(FEATURE_NAMES, result.calibration.weights, strict=True))
    assert weights["coherence"] > 0.05 and weights["repeated_trigrams"] < -0.05
    assert result.calibration.info["cv"]["spearman"] == round(result.cv_rho, 4)
    assert result == fit(x, y, groups, name="world")  # deterministic


def test_a_score_the_labels_punish_gets_weight_zero_not_negative() -> None:
    x, y, groups = _world()
    at = FEATURE_NAMES.index("completeness")
    y = [v - 0.3 * row[at] for v, row in zip(y, x, strict=True)]  # labels fall as completeness rises
    calibration = fit(x, y, groups, name="perverse").calibration
    assert all(calibration.weights[FEATURE_NAMES.index(name)] >= 0 for name in MONOTONE)
    assert calibration.weights[at] == 0.0


def test_held_out_predictions_never_see_their_own_group() -> None:
    x, y, groups = _world(n_groups=6)
    y_poisoned = [1.0 if g == "g0" else v for v, g in zip(y, groups, strict=True)]
    clean, _ = grouped_cv(x, y, groups, folds=6)
    poisoned, _ = grouped_cv(x, y_poisoned, groups, folds=6)
    in_g0 = [i for i, g in enumerate(groups) if g == "g0"]
    assert [poisoned[i] for i in in_g0] == [clean[i] for i in in_g0]


@pytest.mark.parametrize(("rows", "n_groups", "reason"), [
    (MIN_LABELS - 1, 10, "labelled answers"),
    (60, MIN_GROUPS - 1, "distinct questions"),
])
def test_too_few_labels_or_questions_are_refused(rows: int, n_groups: int, reason: str) -> None:
    x = [[0.5] * N for _ in range(rows)]
    y = [i % 2 / 2 for i in range(rows)]
    with pytest.raises(InvalidInput, match=reason):
        fit(x, y, [f"g{i % n_groups}" for i in range(rows)], name="few")
    with pytest.raises(InvalidInput, match="every label is the same"):
        fit([[0.5] * N] * 40, [0.7] * 40, [f"g{i % 8}" for i in range(40)], name="flat")


def test_predictions_are_clipped_to_the_unit_interval() -> None:
    model = Calibration(name="t", weights=(1.0,) * N, center=(0.0,) * N, scale=(1.0,) * N, intercept=0.5)
    assert model.predict([10.0] * N) == 1.0 and model.predict([-10.0] * N) == 0.0
    assert model.predict([0.0] * N) == 0.5
