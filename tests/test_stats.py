"""Statistics of trials: describe() and the order-statistics CI of the median."""

import math

import numpy as np

from gpubench.stats import describe, median_ci, rel_ci_halfwidth


def test_describe_known_values():
    d = describe([1.0, 2.0, 3.0, 4.0, 100.0])
    assert d["n"] == 5 and d["median"] == 3.0 and d["iqr"] == 2.0
    assert d["mean"] == 22.0
    assert math.isclose(d["std"], np.std([1, 2, 3, 4, 100], ddof=1))
    assert math.isclose(d["cv"], d["std"] / 22.0)
    # 5 values cannot reach a 95% interval (their range covers 93.75%): none
    assert math.isnan(d["ci_low"]) and math.isnan(d["ci_high"])
    six = describe([1.0, 2.0, 3.0, 4.0, 100.0, 5.0])
    assert (six["ci_low"], six["ci_high"]) == (1.0, 100.0)


def test_ci_is_repeatable_and_covers_the_true_median():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        x = rng.normal(100.0, 5.0, size=15)
        low, high = median_ci(x)
        assert (low, high) == median_ci(x)  # nothing random
        covered += low <= 100.0 <= high
    # On 15 values the interval is ranks 4 and 12: 96.5% coverage whatever the distribution.
    assert covered >= 170


def test_degenerate_inputs():
    assert math.isnan(describe([])["median"])
    one = describe([5.0])
    assert one["median"] == 5.0 and math.isnan(one["ci_low"]) and math.isnan(one["std"])
    assert rel_ci_halfwidth([5.0]) == math.inf
    assert describe([1.0, float("nan"), 3.0])["n"] == 2


def test_rel_ci_shrinks_with_more_trials():
    rng = np.random.default_rng(2)
    few = rel_ci_halfwidth(rng.normal(100, 5, size=8))
    many = rel_ci_halfwidth(rng.normal(100, 5, size=200))
    assert many < few
