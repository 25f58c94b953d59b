"""What a weight search optimises: the reward, or quality and cost under a constraint.

- ``reward``: the highest estimated mean reward (:class:`Objective`);
- ``max-quality``: the highest estimated quality among weights whose estimated cost per request
  has its upper confidence bound at most ``share`` × always-strongest's estimated cost;
- ``min-cost``: the lowest estimated cost per request among weights whose estimated quality has
  its lower confidence bound at least ``share`` × always-strongest's estimated quality.

The bounds are the ends of the two-sided normal-approximation interval at ``confidence`` (so each
is a one-sided bound at ``(1 + confidence) / 2``); the limit is the reference's point estimate by
the same estimator. That limit is itself an estimate from the same log: by DR, with the
constrained metric paired with always-strongest (``PreparedLog.pair_with``, which the tuner
does under every constraint), the bound's standard error is that of (policy − share ×
always-strongest), not the policy's alone. On routellm logs, where the strong model served 15%
of the logged traffic, that is 1.38 points of always-strong's cost against 0.79. Ties among
feasible weights: the cheaper (max-quality) or the better (min-cost), then the first found.

With ``batch`` = n the constraint is about a batch of n requests, not only the mean: what an
operator sees on a bill is the share of the requests actually served, which strays from the mean
share by the spread of the paired per-request terms (policy − share × always-strongest, see
``PreparedLog.pair_with``) over √n. The bound's half-width is then ``z · √(se² + paired_sd² /
n)``, with ``se`` as above. On routellm logs a held-out batch of 1,500 requests served −2.6 … +4.8 points of
always-strong's cost away from the tuner's estimate at the same choices; the mean's bound alone
(about ±1.9 points there) covered a third of that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import sqrt

from ..errors import InvalidInput
from ._estimators import ReplayReport, z_score

GOALS = ("reward", "max-quality", "min-cost")
_CONSTRAINED = {"max-quality": ("cost_usd", "high"), "min-cost": ("quality", "low")}


@dataclass(frozen=True)
class Verdict:
    """A candidate under a goal: whether it meets the constraint, its rank among those that do
    (larger is better), and the checked bound (None in reward mode)."""

    feasible: bool
    rank: tuple[float, ...]
    bound: float | None


@dataclass(frozen=True)
class Goal:
    """The search's goal (see the module docstring); ``share`` is required by the constrained
    kinds: the cost share for ``max-quality``, the quality share for ``min-cost``."""

    kind: str = "reward"
    share: float | None = None
    confidence: float = 0.9
    #: the constraint holds for a batch of this many requests (None: for the mean)
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in GOALS:
            raise InvalidInput(f"objective {self.kind!r}: use one of {', '.join(GOALS)}",
                               field="objective")
        z_score(self.confidence)  # validates the level
        if self.constrained and (self.share is None or not self.share > 0):
            flag = "--max-cost-share" if self.kind == "max-quality" else "--min-quality-share"
            raise InvalidInput(f"objective {self.kind} needs {flag} > 0", field="share")
        if not self.constrained and self.share is not None:
            raise InvalidInput("a share applies to max-quality or min-cost, not reward",
                               field="share")
        if self.batch is not None:
            if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
                raise InvalidInput(f"batch {self.batch!r}: use a whole number of requests >= 1",
                                   field="batch")
            if not self.constrained:
                raise InvalidInput("a batch applies to max-quality or min-cost, not reward",
                                   field="batch")

    @property
    def constrained(self) -> bool:
        """Whether this goal has a constraint (max-quality or min-cost)."""
        return self.kind in _CONSTRAINED

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics a candidate's replay needs."""
        return ("quality", "cost_usd") if self.constrained else ("reward",)

    @property
    def constrained_metric(self) -> str | None:
        """``cost_usd`` (max-quality), ``quality`` (min-cost) or None (reward)."""
        return _CONSTRAINED[self.kind][0] if self.constrained else None

    def limit(self, strongest: ReplayReport, estimator: str) -> float | None:
        """The constraint's limit: ``share`` × always-strongest's estimate (None in reward mode,
        or when the estimator has no estimate of the reference)."""
        metric = self.constrained_metric
        if metric is None or self.share is None:
            return None
        value = strongest.metrics[metric].get(estimator)
        return None if value is None else self.share * value

    def judge(self, report: ReplayReport, estimator: str, limit: float | None, *,
              quality_by: str | None = None) -> Verdict:
        """How a candidate's replay fares (``report`` has this goal's ``metrics``): feasibility
        on ``estimator``'s bound; the rank's quality by ``quality_by`` (default ``estimator``;
        the tuner ranks by the outcome model, see ``_tune``)."""
        if not self.constrained:
            return Verdict(True, (report.value(estimator) or 0.0,), None)
        quality = report.metrics["quality"].get(quality_by or estimator) or 0.0
        cost = report.metrics["cost_usd"].get(estimator) or 0.0
        bound = self.bound(report, estimator)
        if self.kind == "max-quality":
            ok = bound is not None and limit is not None and bound <= limit
            return Verdict(ok, (quality, -cost), bound)
        ok = bound is not None and limit is not None and bound >= limit
        return Verdict(ok, (-cost, quality), bound)

    def bound(self, report: ReplayReport, estimator: str) -> float | None:
        """The checked bound: the cost's upper (max-quality) or the quality's lower (min-cost)
        confidence bound; None in reward mode or without a standard error."""
        if not self.constrained:
            return None
        metric, end = _CONSTRAINED[self.kind]
        estimate = report.metrics[metric]
        interval = estimate.interval(estimator, self.confidence)
        if interval.estimate is None or interval.se is None:
            return getattr(interval, end)
        se = self.se(report, estimator)
        assert se is not None  # the interval has one
        if self.batch is None:
            spread = se ** 2
        elif estimate.paired_sd is None:
            raise InvalidInput(f"a bound for a batch needs {metric} paired with always-strongest "
                               "(PreparedLog.pair_with)", field="batch")
        else:
            spread = se ** 2 + estimate.paired_sd ** 2 / self.batch
        half = z_score(self.confidence) * sqrt(spread)
        return interval.estimate + half if end == "high" else interval.estimate - half

    def se(self, report: ReplayReport, estimator: str) -> float | None:
        """The standard error the bound reads: by DR with the constrained metric paired with
        always-strongest, that of (policy − share × always-strongest), whose estimate the limit
        is (``Estimate.paired_se``); otherwise the estimator's own. None in reward mode or
        without one."""
        if not self.constrained:
            return None
        estimate = report.metrics[_CONSTRAINED[self.kind][0]]
        if estimator == "dr" and estimate.paired_se is not None:
            return estimate.paired_se
        return estimate.se(estimator)

    def closer(self, a: float | None, b: float | None) -> bool:
        """Whether bound ``a`` is nearer to meeting the constraint than ``b``."""
        if a is None:
            return False
        return b is None or (a < b if self.kind == "max-quality" else a > b)

    def check(self, report: ReplayReport, estimator: str, limit: float | None) -> dict | None:
        """The constraint on ``report`` as plain data (None in reward mode)."""
        if not self.constrained:
            return None
        metric, end = _CONSTRAINED[self.kind]
        bound = self.bound(report, estimator)
        estimate = report.metrics[metric]
        paired = estimator == "dr" and estimate.paired_se is not None
        return {"metric": metric, "bound": "upper" if end == "high" else "lower",
                "bound_value": bound, "se": self.se(report, estimator),
                "se_of": "policy - share x always-strongest" if paired else "policy",
                "share": self.share, "limit": limit,
                "confidence": self.confidence, "batch": self.batch,
                "met": self.judge(report, estimator, limit).feasible}

    def describe(self) -> str:
        """One line: what is optimised, under which constraint."""
        pct = f"{self.confidence:.0%}"
        scope = "" if self.batch is None else f" on a batch of {self.batch} requests"
        if self.kind == "max-quality":
            return (f"best quality with cost at most {self.share:g} x always-strongest's{scope} "
                    f"(checked on the {pct} interval's upper end)")
        if self.kind == "min-cost":
            return (f"lowest cost with quality at least {self.share:g} x always-strongest's{scope} "
                    f"(checked on the {pct} interval's lower end)")
        return "the highest mean reward"

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return asdict(self)
