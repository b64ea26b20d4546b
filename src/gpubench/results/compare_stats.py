"""The statistics of one comparison: which way is better per metric, and the verdict.

Verdict rule (threshold t, e.g. 0.05; alpha = 0.05; MIN_TRIALS = 3):

  ratio = median(new) / median(base) of the metric over the ok trials of each side,
  with a distribution-free 95% CI [low, high] of that ratio (gpubench.stats.ratio_ci:
  the order statistics of the pairwise ratios new_j / base_i that invert the
  Mann-Whitney test, exact at any size when the change scales the distribution; none,
  NaN, for sizes that cannot reach 95%: 3 against 3 or 4, 2 against 7 or fewer) and a
  two-sided Mann-Whitney U p-value. For a
  metric where lower is better (latency, energy) ratio and CI are inverted first, so
  that the "speed" s = ratio (higher is better) or 1 / ratio (lower is better), and
  s < 1 is always a regression. Then, in this order:

  1. inconclusive  if either side has fewer than MIN_TRIALS values, or there is no CI;
  2. slower        if s < 1 - t, the whole CI of s lies below 1, and p < alpha
                   (the change is past the threshold and it is not noise);
  3. faster        if s > 1 + t, the whole CI of s lies above 1, and p < alpha;
  4. same          if the whole CI of s lies within [1 - t, 1 + t]
                   (any change is smaller than the threshold, with 95% confidence);
  5. inconclusive  otherwise: the CI straddles a threshold (the data cannot tell a
                   change of t from none), or the change is not significant.

  This is "significant and larger than the threshold", as asv and pyperf judge: a
  10% slowdown at t = 5% is called slower even when the CI's upper end reaches past
  0.95. With 3 trials a side neither the CI (no interval reaches 95%) nor the rank
  test (the smallest possible p is 0.1) can decide, so a change needs at least 4
  trials a side to be called, and so does `same` (5 or more recommended). A percentile
  bootstrap of the ratio, used before, was too narrow there (about 89% coverage at 3
  trials a side, 93% at 4), so `same` could be called on changes past the threshold.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Dict, Iterator, Sequence

import numpy as np

from gpubench.results.compare_directions import DIRECTIONS, HIGHER, LOWER  # noqa: F401 (re-exported)
from gpubench.stats import ratio_ci

VERDICTS = ("slower", "faster", "same", "inconclusive")
MIN_TRIALS = 3
ALPHA = 0.05
NOISE_MULTIPLE = 1.5  # a change must be at least this many noise floors to be called
MAD_TO_SD = 1.4826  # MAD x this = the standard deviation, for normal noise


def noise_floor(values: Sequence[float], breaks: Sequence[int] = ()) -> float:
    """A configuration's run-to-run spread as a fraction (0.03 = 3%): the robust CV of
    its run values around the median of their segment (the log values' 1.4826 x MAD).
    `breaks`: where segments start (none: the values are one segment). NaN for fewer
    than three values; non-positive values are left out."""
    x = np.asarray(values, float)
    keep = np.isfinite(x) & (x > 0)
    logs = np.log(np.where(keep, x, 1.0))
    edges = [0, *sorted(int(b) for b in breaks if 0 < b < x.size), x.size]
    deviations = []
    for start, end in zip(edges[:-1], edges[1:]):
        part = logs[start:end][keep[start:end]]
        if part.size:
            deviations.append(part - np.median(part))
    dev = np.concatenate(deviations) if deviations else np.empty(0)
    if dev.size < 3:
        return float("nan")
    return float(math.expm1(MAD_TO_SD * np.median(np.abs(dev))))


def verdicts(speed: np.ndarray, speed_low: np.ndarray, speed_high: np.ndarray,
             p_value: np.ndarray, n_base: np.ndarray, n_new: np.ndarray,
             threshold) -> np.ndarray:
    """The rule of the module docstring, element-wise, on the speed ratio and its CI
    (`threshold`: one for all, or one per element)."""
    s, low, high = (np.asarray(v, float) for v in (speed, speed_low, speed_high))
    enough = (np.asarray(n_base) >= MIN_TRIALS) & (np.asarray(n_new) >= MIN_TRIALS) \
        & np.isfinite(s) & np.isfinite(low) & np.isfinite(high)
    significant = enough & (np.asarray(p_value, float) < ALPHA)  # NaN compares False
    out = np.full(s.shape, "inconclusive", dtype=object)
    out[enough & (low >= 1 - threshold) & (high <= 1 + threshold)] = "same"
    out[significant & (s < 1 - threshold) & (high < 1)] = "slower"
    out[significant & (s > 1 + threshold) & (low > 1)] = "faster"
    return out


def assess_batch(base: np.ndarray, new: np.ndarray, direction: str, threshold,
                 seed: int = 0) -> Dict[str, np.ndarray]:
    """Many comparisons at once: row i of `base` (pairs, n) against row i of `new`
    (NaN pads rows of unequal length). Returns arrays: n_base, n_new, median_base,
    median_new, ratio (new / base), ci_low, ci_high (of the ratio), p_value, verdict.
    Nothing is random (`seed` is accepted for the callers that pass one)."""
    from scipy.stats import mannwhitneyu

    if direction not in (HIGHER, LOWER):
        raise ValueError(f"direction must be {HIGHER!r} or {LOWER!r}")
    base, new = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(new, float))
    n_base, n_new = np.isfinite(base).sum(axis=1), np.isfinite(new).sum(axis=1)
    with np.errstate(all="ignore"), _quiet():
        med_b, med_n = np.nanmedian(base, axis=1), np.nanmedian(new, axis=1)
        ratio = med_n / med_b
    ci_low, ci_high = ratio_ci(base, new)
    p = np.full(base.shape[0], np.nan)
    both = (n_base > 0) & (n_new > 0)
    if both.any():
        with _quiet():
            p[both] = mannwhitneyu(base[both], new[both], axis=1, nan_policy="omit").pvalue
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = ratio if direction == HIGHER else 1 / ratio
        s_low, s_high = (ci_low, ci_high) if direction == HIGHER else (1 / ci_high, 1 / ci_low)
    return {"n_base": n_base, "n_new": n_new, "median_base": med_b, "median_new": med_n,
            "ratio": ratio, "ci_low": ci_low, "ci_high": ci_high, "p_value": p,
            "verdict": verdicts(speed, s_low, s_high, p, n_base, n_new, threshold)}


def assess(base, new, direction: str, threshold: float, seed: int = 0) -> Dict[str, object]:
    """One comparison of two samples (1-D); the values of assess_batch as scalars."""
    b = np.asarray(base, float).ravel()
    n = np.asarray(new, float).ravel()
    width = max(b.size, n.size, 1)
    rows = [np.pad(x, (0, width - x.size), constant_values=np.nan)[None, :] for x in (b, n)]
    out = assess_batch(rows[0], rows[1], direction, threshold, seed=seed)
    return {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in out.items()}


@contextmanager
def _quiet() -> Iterator[None]:
    """Silences numpy/scipy RuntimeWarnings for rows without values (they give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
