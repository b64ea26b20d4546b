"""Latency percentiles a run can claim: MLPerf LoadGen's early-stopping estimate
(loadgen/early_stopping.cc and PerformanceSummary::EarlyStopping in loadgen/results.cc),
the same rule and the same figures.

LoadGen asks how many "overlatency" queries a run of n may hold and still show, at
confidence c (0.99), that the p-quantile q_p lies at or below a threshold. Were q_p
exactly at the threshold, each query would be over it with probability 1 - p, and h
queries under it and t over it (or fewer over) would happen with probability

    odds(h, t) = P(Binomial(h + t, 1 - p) <= t) = I_p(h, 1 + t)   (regularised beta)

LoadGen's h(t) is the fewest queries under the threshold for which that is below 1 - c,
and a run of n queries may hold t over it when n >= h(t) + t. It takes t as the largest
such count (at least 1: a run with n < h(1) + 1 cannot claim the percentile at all) and
reports the t-th largest latency, the order statistic of rank n - t + 1: the estimate
itself counts among the t overlatency queries. In terms of ranks, the claim is the
k-th smallest latency x(k) for the smallest k with

    P(Binomial(n, p) <= k - 2) > c,

one order statistic above the plain binomial bound (P(x(k) >= q_p) = P(Binomial(n, p)
<= k - 1) >= c), so it covers q_p with probability above c. The figures LoadGen prints:
a percentile needs h(1) + 1 queries (`queries_needed`: p90 64, p99 662, p99.9 6,636),
and a run of 700 claims its largest latency as p99 (838 are needed to discard one).

h(t) + t <= n is the same as odds(n - t, t) < 1 - c, and odds rises with t, so the
largest passing t is found by bisection on that inequality rather than LoadGen's
search for h at every t in turn (the same answer: LoadGen's bounded binary search finds
the exact minimum h). Pure functions of numbers (numpy; scipy imported when first needed).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, Optional, Sequence

import numpy as np

CONFIDENCE = 0.99  # LoadGen's early-stopping confidence
TOLERANCE = 0.0  # LoadGen's d: the percentile tested is p - d
# The serving scenarios' percentile columns and the percentile each states.
PERCENTILE_COLUMNS = {"latency_p50_ms": 0.50, "latency_p90_ms": 0.90,
                      "latency_p99_ms": 0.99, "latency_p999_ms": 0.999}


def odds(under: int, over: int, p: float) -> float:
    """LoadGen's odds(h, t): the probability of `over` or fewer overlatency queries in
    `under` + `over` when each is over with probability 1 - p (regularised beta
    I_p(h, 1 + t), the binomial's CDF)."""
    from scipy.special import betainc

    return float(betainc(under, 1 + over, p - TOLERANCE))


def _passes(n: int, over: int, p: float, confidence: float) -> bool:
    """A run of n queries, `over` of them over the threshold, still shows the percentile
    at or below it: n >= h(over) + over, i.e. odds(n - over, over) < 1 - c."""
    return over < n and odds(n - over, over, p) < 1 - confidence


@lru_cache(maxsize=4096)
def overlatency_allowed(n: int, p: float, confidence: float = CONFIDENCE) -> Optional[int]:
    """LoadGen's t: the most queries of n that may lie at or above the estimate (the
    estimate included); None when even one is too many (n < queries_needed(p))."""
    if n < 2 or not 0 < p < 1 or not _passes(n, 1, p, confidence):
        return None
    lo, hi = 1, n - 1  # _passes(lo); the largest passing t is below n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _passes(n, mid, p, confidence):
            lo = mid
        else:
            hi = mid - 1
    return lo


def bound_rank(n: int, p: float, confidence: float = CONFIDENCE) -> Optional[int]:
    """k (1-based): the k-th smallest of n latencies is LoadGen's early-stopping
    estimate of the p-quantile (rank n - t + 1); None when n is too few."""
    t = overlatency_allowed(n, p, confidence)
    return None if t is None else n - t + 1


@lru_cache(maxsize=64)
def queries_needed(p: float, confidence: float = CONFIDENCE) -> int:
    """The fewest queries that claim the p-quantile at all, LoadGen's h(1) + 1 (its
    "Need to process at least N queries"): p90 64, p99 662 at 99%."""
    if not 0 < p < 1:
        raise ValueError(f"a percentile is in (0, 1), got {p}")
    hi = 2
    while not _passes(hi, 1, p, confidence):  # odds(n - 1, 1) falls as n grows
        hi *= 2
    lo = hi // 2 + 1 if hi > 2 else 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _passes(mid, 1, p, confidence):
            hi = mid
        else:
            lo = mid + 1
    return lo


def percentile_bound(latencies: Sequence[float], p: float,
                     confidence: float = CONFIDENCE) -> float:
    """The early-stopping estimate of the p-quantile (module docstring); NaN when the
    latencies are too few to claim it."""
    values = np.sort(np.asarray(latencies, dtype=float))
    k = bound_rank(len(values), p, confidence)
    return float(values[k - 1]) if k is not None else math.nan


def claimed_percentiles_ms(latencies_s: Sequence[float],
                           confidence: float = CONFIDENCE) -> Dict[str, float]:
    """The serving scenarios' percentile columns: each the early-stopping estimate in ms
    (NaN, an empty cell, where the run is too short to claim it)."""
    values = np.asarray(latencies_s, dtype=float)
    return {column: percentile_bound(values, p, confidence) * 1e3
            for column, p in PERCENTILE_COLUMNS.items()}


def observed_percentiles_ms(latencies_s: Sequence[float]) -> Dict[str, float]:
    """The percentiles as observed (no adjustment), for run.json beside the claims."""
    values = np.asarray(latencies_s, dtype=float)
    if not len(values):
        return {}
    return {column: float(np.percentile(values, p * 100)) * 1e3
            for column, p in PERCENTILE_COLUMNS.items()}
