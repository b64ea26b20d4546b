"""Robust statistics for small samples of trials (numpy; the binomial CDF in exact
integers).

This is a leaf module rather than part of measure/ because both the protocol (adaptive
trial counts) and results/ (summaries, compare) need it, and results/ must not import
measure/.

The intervals are distribution-free and hold their 95% at small n, where a bootstrap
does not: a percentile bootstrap of the median of n <= 5 trials is their range, which
covers the median with probability 1 - 2/2^n (50% for 2 trials, 87.5% for 4), printed
as a "95%" interval.
- The median's: the order-statistics (binomial) interval [x(k), x(n+1-k)], k the
  largest rank whose coverage 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2), is at least 95%
  for any continuous distribution. n < 6 cannot reach 95% (the range of 5 values
  covers the median with probability 1 - 2/2^5 = 93.75%): no interval (NaN).
- A ratio of two samples' medians: the interval of the pairwise ratios new_j / base_i
  that inverts the Mann-Whitney test (Moses; R's wilcox.test(conf.int = TRUE) on the
  logs), exact when the change scales the distribution (new = r x base in law). Sizes
  whose every arrangement is too likely (3 and 3, 3 and 4, 2 and 7 or fewer) give none.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE = 0.95
MIN_CI_SAMPLES = 6  # the fewest values whose median interval reaches 95%


@lru_cache(maxsize=None)
def median_ci_rank(n: int, confidence: float = CONFIDENCE) -> Optional[int]:
    """k (1-based): [x(k), x(n+1-k)] of n sorted values covers the median with
    probability >= `confidence`, the narrowest such; None when even the range does not."""
    if n < 1:
        return None
    # P(B <= j) = (C(n,0) + ... + C(n,j)) / 2^n in integers, divided once (Python
    # rounds that division correctly): every run's worker summarises, and importing
    # scipy.special for its binomial CDF cost a tiny run ~0.1 s there (issue 29)
    tail = (1.0 - confidence) / 2.0
    k, term, below, whole = None, 1, 0, 1 << n
    for j in range(n):  # below = C(n,0) + ... + C(n,j)
        below += term
        if below / whole > tail * (1 + 1e-12):
            break
        k = j + 1  # k - 1 = the largest j whose P(B <= j) is within the tail
        term = term * (n - j) // (j + 1)
    return k


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """The order-statistics CI of the median (module docstring): NaN bounds when the
    finite values are too few for `confidence` (fewer than 6 at 95%)."""
    x = np.sort(np.asarray(values, dtype=float))
    x = x[np.isfinite(x)]
    k = median_ci_rank(int(x.size), confidence)
    if k is None:
        return float("nan"), float("nan")
    return float(x[k - 1]), float(x[x.size - k])


def rel_ci_halfwidth(values: Sequence[float]) -> float:
    """Largest distance from the median to a CI bound, relative to the median: the
    figure `--target-rel-ci` is compared with. Infinite when there is no interval (too
    few values: fewer than MIN_CI_SAMPLES), so a target is never met by too few."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    low, high = median_ci(x)
    med = float(np.median(x)) if x.size else float("nan")
    if not np.isfinite(low) or not med:
        return float("inf")
    return max(med - low, high - med) / abs(med)


def describe(values: Sequence[float]) -> Dict[str, float]:
    """n, median, IQR, mean, std (sample), CV, and the 95% CI of the median (NaN bounds
    for fewer than 6 values)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    nan = float("nan")
    if x.size == 0:
        return {"n": 0, "median": nan, "iqr": nan, "mean": nan, "std": nan, "cv": nan,
                "ci_low": nan, "ci_high": nan}
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else nan
    low, high = median_ci(x)
    return {"n": int(x.size), "median": float(med), "iqr": float(q3 - q1), "mean": mean,
            "std": std, "cv": std / mean if mean else nan, "ci_low": low, "ci_high": high}


# -- the ratio of two samples ------------------------------------------------------

EXACT_MAX_PAIRS = 2500  # m x n up to this: the exact Mann-Whitney distribution


@lru_cache(maxsize=None)
def ratio_ci_rank(m: int, n: int, confidence: float = CONFIDENCE) -> Optional[int]:
    """k (1-based): the k-th smallest and k-th largest of the m x n pairwise ratios bound
    a CI of the ratio with coverage >= `confidence` (the Mann-Whitney U statistic's
    null distribution: exact up to EXACT_MAX_PAIRS pairs, normal beyond); None when no
    rank reaches it."""
    if m < 1 or n < 1:
        return None
    tail = (1.0 - confidence) / 2.0
    if m * n > EXACT_MAX_PAIRS:
        from scipy.stats import norm
        k = math.floor(m * n / 2 - norm.ppf(1 - tail) * math.sqrt(m * n * (m + n + 1) / 12))
        return k if k >= 1 else None
    counts = _u_counts(m, n)
    total = sum(counts)
    below, k = 0, 0
    for count in counts:  # the largest k with P(U <= k - 1) <= tail
        if (below + count) > tail * total:
            break
        below += count
        k += 1
    return k if k >= 1 else None


@lru_cache(maxsize=None)
def _u_counts(m: int, n: int) -> Tuple[int, ...]:
    """How many of the C(m+n, m) orderings give U = 0, 1, ..., m n (exact integers): the
    coefficients of the Gaussian binomial [m+n choose m]_q, built one factor
    (1 - q^(n+i)) / (1 - q^i) at a time."""
    poly = [1]
    for i in range(1, m + 1):
        grown = poly + [0] * (n + i)  # times (1 - q^(n+i))
        for j in range(len(poly)):
            grown[j + n + i] -= poly[j]
        for j in range(i, len(grown)):  # divided by (1 - q^i): exact
            grown[j] += grown[j - i]
        poly = grown[:n * i + 1]
    return tuple(poly)


def ratio_ci(base: np.ndarray, new: np.ndarray, confidence: float = CONFIDENCE,
             chunk_elems: int = 4_000_000) -> Tuple[np.ndarray, np.ndarray]:
    """A 95% CI of median(new) / median(base), one pair of samples per row (module
    docstring): the k-th smallest and largest of the row's pairwise ratios new_j /
    base_i, k = ratio_ci_rank(m, n).

    `base` is (pairs, n_base) and `new` is (pairs, n_new); NaN entries are missing
    values (rows of unequal length are NaN-padded). Vectorised over pairs, in chunks of
    about `chunk_elems` ratios so memory stays bounded. NaN bounds for a row whose
    sizes give no interval, or with a ratio that is not finite (a zero in base).
    """
    base, new = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(new, float))
    rows = base.shape[0]
    low, high = np.full(rows, np.nan), np.full(rows, np.nan)
    m_all, n_all = np.isfinite(base).sum(axis=1), np.isfinite(new).sum(axis=1)
    step = max(1, chunk_elems // max(base.shape[1] * new.shape[1], 1))
    for start in range(0, rows, step):
        part = slice(start, start + step)
        b, nw = base[part], new[part]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = (nw[:, None, :] / b[:, :, None]).reshape(b.shape[0], -1)
        present = np.isfinite(b)[:, :, None] & np.isfinite(nw)[:, None, :]
        present = present.reshape(b.shape[0], -1)
        bad = (present & ~np.isfinite(ratios)).any(axis=1)  # x / 0
        ordered = np.sort(np.where(present, ratios, np.inf), axis=1)  # missing pairs last
        for i, (m, n) in enumerate(zip(m_all[part], n_all[part])):
            k = ratio_ci_rank(int(m), int(n), confidence)
            if k is None or bad[i]:
                continue
            low[start + i], high[start + i] = ordered[i, k - 1], ordered[i, m * n - k]
    return low, high
