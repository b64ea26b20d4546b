"""Robust statistics for small samples of trials (pure numpy).

This is a leaf module rather than part of measure/ because both the protocol (adaptive
trial counts) and results/ (summaries, compare) need it, and results/ must not import
measure/.
"""

from __future__ import annotations

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
