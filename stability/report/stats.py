"""Statistics over seeds: the aggregate of one table cell, its interval, and the tests.

- :func:`aggregate`: mean, sample std (ddof = 1), n, and a two-sided ``1 − alpha`` confidence
  interval for the mean from Student's t with n − 1 degrees of freedom
  (``scipy.stats.t.ppf``); no interval with one seed.
- :func:`welch_p`: the two-sided p-value of Welch's t-test (``scipy.stats.ttest_ind`` with
  ``equal_var=False``), with the cases scipy leaves undefined (no spread) decided exactly.
- :func:`holm`: Holm's step-down adjustment of a family of p-values (scipy has no Holm).

Nothing here knows about tables; :mod:`.tables` and :mod:`.compare` decide what is compared.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _scipy_stats

#: the default significance level: 95% intervals, differences tested at 5%
ALPHA = 0.05

INTERVAL_TEXT = "Student's t, scipy.stats.t with n − 1 degrees of freedom"
TEST_TEXT = ("Welch's t-test across seeds, scipy.stats.ttest_ind with equal_var=False, and Holm's correction "
             "over the comparisons in the column")


@dataclass
class Agg:
    """Aggregate over the seeds of one configuration."""

    mean: float = math.nan
    std: float = math.nan      # sample std (ddof = 1); NaN with fewer than 2 values
    n: int = 0                 # seeds with a value (finite, or inf = "not reached")
    n_seeds: int = 0           # seeds of the configuration
    n_reached: int = 0         # for steps-to-threshold columns
    values: list = field(default_factory=list)
    lo: float = math.nan       # confidence interval for the mean; NaN with fewer than 2 values
    hi: float = math.nan
    geometric: bool = False    # mean, lo, hi are exp of the logs' mean and t interval; std is the logs'

    @property
    def present(self) -> bool:
        return self.n > 0

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def t_interval(mean: float, std: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Two-sided 1 − alpha Student's t interval for a mean of n values; (NaN, NaN) for n < 2."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return math.nan, math.nan
    half = float(_scipy_stats.t.ppf(1.0 - alpha / 2.0, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def aggregate(values: list[float | None], n_seeds: int, until: bool = False, alpha: float = ALPHA,
              geometric: bool = False) -> Agg:
    """Mean, std and interval of the seeds' values (None and NaN are "no value");
    ``until``: inf means "not reached" and the mean is over the seeds that reached;
    ``geometric``: for positive quantities spread over orders of magnitude (norms), the geometric
    mean and the t interval of the logs, mapped back (never below 0); values that are not all
    positive and finite fall back to the arithmetic form."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    agg = Agg(n=len(vals), n_seeds=n_seeds, values=vals)
    if geometric and not until and vals and all(math.isfinite(v) and v > 0 for v in vals):
        logs = np.log(np.asarray(vals, dtype=float))
        m = float(logs.mean())
        agg.std = float(logs.std(ddof=1)) if len(logs) > 1 else math.nan
        if agg.std < 1e-12:  # rounding noise of identical values
            agg.std = 0.0
        lo, hi = t_interval(m, agg.std, len(logs), alpha)
        agg.mean, agg.geometric = math.exp(m), True
        agg.lo, agg.hi = (math.exp(lo), math.exp(hi)) if math.isfinite(lo) else (lo, hi)
        return agg
    if until:
        reached = [v for v in vals if math.isfinite(v)]
        agg.n_reached = len(reached)
        vals = reached
    if vals:
        arr = np.asarray(vals, dtype=float)
        with np.errstate(invalid="ignore"):
            agg.mean = float(arr.mean()) if np.isfinite(arr).all() else (
                float(arr[0]) if len(set(arr.tolist())) == 1 else float(np.mean(arr)))
            agg.std = float(arr.std(ddof=1)) if len(arr) > 1 and np.isfinite(arr).all() else math.nan
            if agg.std < 1e-9 * abs(agg.mean):  # rounding noise of identical values
                agg.std = 0.0
        agg.lo, agg.hi = t_interval(agg.mean, agg.std, len(arr), alpha)
    return agg


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test of equal means; NaN when it cannot be tested (fewer
    than two values on a side, or non-finite values). Without spread on either side the
    difference is exact: p = 1 for equal means, 0 otherwise."""
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    if len(a) < 2 or len(b) < 2 or not all(math.isfinite(v) for v in a + b):
        return math.nan
    if _no_spread(a) and _no_spread(b):
        return 1.0 if _same(np.mean(a), np.mean(b)) else 0.0
    with warnings.catch_warnings():   # one side without spread: exact, but scipy warns of "nearly identical" data
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted):
    with p_(1) ≤ … ≤ p_(m), adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def _no_spread(v: list[float]) -> bool:
    return max(v) - min(v) <= 1e-12 * max(1.0, max(abs(x) for x in v))


def _same(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-12 * max(1.0, abs(x), abs(y))
