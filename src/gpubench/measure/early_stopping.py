"""Latency percentiles a run can claim: MLPerf LoadGen's early-stopping adjustment.

A run of n queries observes n latencies; the p-quantile q_p of the latency
distribution is unknown. The k-th smallest observed latency x(k) lies at or above q_p
unless k or more of the n latencies fell below q_p, and the count below q_p is
Binomial(n, p) for any continuous distribution. So

    P(x(k) >= q_p) = P(Binomial(n, p) <= k - 1)

and the smallest k for which that reaches the confidence gives the lowest latency the
run can state as an upper bound of its p-th percentile at that confidence. That is the
value reported (`latency_p99_ms` and its kin in the serving scenarios): never lower
than the latency observed at the percentile, and higher the fewer queries ran. When
even the largest latency (k = n) does not reach the confidence, the run is too short
to claim the percentile at all: no value, and `queries_needed` says how many queries
it takes (459 for p99 at 99%: 1 - 0.99^n >= 0.99).

Pure functions of numbers (numpy; scipy's binomial imported when first needed).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, Optional, Sequence

import numpy as np

CONFIDENCE = 0.99  # LoadGen's early-stopping confidence
# The serving scenarios' percentile columns and the percentile each states.
PERCENTILE_COLUMNS = {"latency_p50_ms": 0.50, "latency_p90_ms": 0.90,
                      "latency_p99_ms": 0.99, "latency_p999_ms": 0.999}
_REL_TOL = 1e-12  # binomial tails computed in floating point


@lru_cache(maxsize=4096)
def bound_rank(n: int, p: float, confidence: float = CONFIDENCE) -> Optional[int]:
    """k (1-based): the k-th smallest of n latencies is an upper bound of the p-quantile
    with probability >= `confidence`, the smallest such k; None when n is too few."""
    if n < 1 or not 0 < p < 1:
        return None
    from scipy.stats import binom

    target = confidence * (1 - _REL_TOL)
    j = int(binom.ppf(confidence, n, p))  # a start: the smallest j with P(B <= j) >= c
    while j > 0 and binom.cdf(j - 1, n, p) >= target:  # rounding in ppf: step down
        j -= 1
    while j < n and binom.cdf(j, n, p) < target:  # or up
        j += 1
    return j + 1 if j < n else None  # x(j + 1) exists only for j < n


def queries_needed(p: float, confidence: float = CONFIDENCE) -> int:
    """The fewest queries whose largest latency already bounds the p-quantile at
    `confidence`: 1 - p^n >= confidence."""
    return max(1, math.ceil(math.log1p(-confidence) / math.log(p) - 1e-9))


def percentile_bound(latencies: Sequence[float], p: float,
                     confidence: float = CONFIDENCE) -> float:
    """The early-stopping bound of the p-quantile (module docstring); NaN when the
    latencies are too few to claim it."""
    values = np.sort(np.asarray(latencies, dtype=float))
    k = bound_rank(len(values), p, confidence)
    return float(values[k - 1]) if k is not None else math.nan


def claimed_percentiles_ms(latencies_s: Sequence[float],
                           confidence: float = CONFIDENCE) -> Dict[str, float]:
    """The serving scenarios' percentile columns: each the early-stopping bound in ms
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
