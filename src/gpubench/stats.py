"""Robust statistics for small samples of trials (pure numpy).

This is a leaf module rather than part of measure/ because both the protocol (adaptive
trial counts) and results/ (summaries, compare) need it, and results/ must not import
measure/.
"""

from __future__ import annotations

import warnings
from typing import Dict, Sequence, Tuple

import numpy as np

DEFAULT_BOOTSTRAP = 2000
CONFIDENCE = 0.95


def bootstrap_median_ci(values: Sequence[float], confidence: float = CONFIDENCE,
                        n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap CI of the median, vectorised and seeded (repeatable).
    NaN bounds for fewer than two values, where no interval can be had."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(low), float(high)


def rel_ci_halfwidth(values: Sequence[float], seed: int = 0) -> float:
    """Largest distance from the median to a CI bound, relative to the median: the
    figure `--target-rel-ci` is compared with. Infinite when undefined."""
    x = np.asarray(values, dtype=float)
    low, high = bootstrap_median_ci(x, seed=seed)
    med = float(np.median(x)) if x.size else float("nan")
    if not np.isfinite(low) or not med:
        return float("inf")
    return max(med - low, high - med) / abs(med)


def describe(values: Sequence[float], seed: int = 0) -> Dict[str, float]:
    """n, median, IQR, mean, std (sample), CV, and the bootstrap 95% CI of the median."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    nan = float("nan")
    if x.size == 0:
        return {"n": 0, "median": nan, "iqr": nan, "mean": nan, "std": nan, "cv": nan,
                "ci_low": nan, "ci_high": nan}
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else nan
    low, high = bootstrap_median_ci(x, seed=seed)
    return {"n": int(x.size), "median": float(med), "iqr": float(q3 - q1), "mean": mean,
            "std": std, "cv": std / mean if mean else nan, "ci_low": low, "ci_high": high}


def bootstrap_ratio_ci(base: np.ndarray, new: np.ndarray, confidence: float = CONFIDENCE,
                       n_boot: int = 1000, seed: int = 0,
                       chunk_elems: int = 4_000_000) -> Tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of median(new) / median(base), one pair per row.

    `base` is (pairs, n_base) and `new` is (pairs, n_new); NaN entries are missing
    values (rows of unequal length are NaN-padded). Each side is resampled on its own
    (the two samples are independent runs). Vectorised over pairs and resamples,
    processed in chunks of about `chunk_elems` values so memory stays bounded. NaN
    bounds for a row with fewer than two values on a side.
    """
    base, new = np.atleast_2d(np.asarray(base, float)), np.atleast_2d(np.asarray(new, float))
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    low = np.full(base.shape[0], np.nan)
    high = np.full(base.shape[0], np.nan)
    per_pair = n_boot * (base.shape[1] + new.shape[1])
    step = max(1, chunk_elems // max(per_pair, 1))
    for start in range(0, base.shape[0], step):
        rows = slice(start, start + step)
        med_b = _resampled_medians(base[rows], n_boot, rng)
        med_n = _resampled_medians(new[rows], n_boot, rng)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = med_n / med_b
        ok = np.isfinite(ratios).all(axis=1)
        if ok.any():
            q = np.quantile(ratios[ok], [alpha, 1.0 - alpha], axis=1)
            idx = np.arange(base.shape[0])[rows][ok]
            low[idx], high[idx] = q[0], q[1]
    return low, high


def _resampled_medians(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(pairs, n_boot) medians of resamples drawn with replacement from each row's
    finite values (rows with fewer than two values give NaN)."""
    counts = np.isfinite(x).sum(axis=1)
    # Finite values first in each row, so index i < count picks a real value.
    ordered = np.sort(np.where(np.isfinite(x), x, np.inf), axis=1)
    width = x.shape[1]
    u = rng.random((x.shape[0], n_boot, width))
    idx = np.minimum((u * counts[:, None, None]).astype(np.int64), np.maximum(counts, 1)[:, None, None] - 1)
    picked = np.take_along_axis(ordered[:, None, :], idx, axis=2)
    # A row with count < width draws only `count` values per resample: mask the rest.
    picked = np.where(np.arange(width)[None, None, :] < counts[:, None, None], picked, np.nan)
    if (counts < width).any():
        with warnings.catch_warnings():  # rows with no value at all: NaN, said below
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(picked, axis=2)
    else:
        medians = np.median(picked, axis=2)
    medians[counts < 2] = np.nan
    return medians
