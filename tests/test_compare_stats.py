"""The statistics behind `gpubench compare` on seeded simulated trials: the verdict
rule's error rates, the rank-based CI of the ratio of medians, and the direction of
metrics where lower is better. Run with -s to see the measured rates."""

import math

import numpy as np
import pytest

from gpubench.results.compare_stats import MIN_TRIALS, assess, assess_batch, verdicts
from gpubench.stats import ratio_ci

PAIRS, NOISE, THRESHOLD = 1000, 0.03, 0.05


def _simulate(seed, n, new_scale):
    rng = np.random.default_rng(seed)
    base = 1000.0 * (1 + NOISE * rng.standard_normal((PAIRS, n)))
    new = 1000.0 * new_scale * (1 + NOISE * rng.standard_normal((PAIRS, n)))
    return base, new


def _rates(verdict):
    return {v: float(np.mean(verdict == v)) for v in ("slower", "faster", "same", "inconclusive")}


def test_aa_pairs_are_rarely_called_faster_or_slower():
    base, new = _simulate(seed=11, n=10, new_scale=1.0)
    rates = _rates(assess_batch(base, new, "higher", THRESHOLD, seed=1)["verdict"])
    false_positive = rates["slower"] + rates["faster"]
    print(f"\nA/A, {PAIRS} pairs, 10 trials a side, {NOISE:.0%} noise, threshold {THRESHOLD:.0%}: "
          f"called faster or slower in {false_positive:.2%} "
          f"(same {rates['same']:.1%}, inconclusive {rates['inconclusive']:.1%})")
    assert false_positive < 0.05
    assert rates["same"] > 0.5  # the rule does decide "same" when it can


def test_ten_percent_slowdown_is_called_slower():
    base, new = _simulate(seed=12, n=10, new_scale=0.90)
    rates = _rates(assess_batch(base, new, "higher", THRESHOLD, seed=2)["verdict"])
    print(f"\n10% slowdown, {PAIRS} pairs, 10 trials a side, {NOISE:.0%} noise, threshold "
          f"{THRESHOLD:.0%}: called slower in {rates['slower']:.2%} "
          f"(faster {rates['faster']:.1%}, inconclusive {rates['inconclusive']:.1%})")
    assert rates["slower"] >= 0.95
    assert rates["faster"] == 0.0


def test_lower_is_better_metrics_flip_the_verdict():
    # Latency 10% higher is a slowdown; 10% lower is a speed-up.
    base, new = _simulate(seed=13, n=10, new_scale=1.10)
    worse = _rates(assess_batch(base, new, "lower", THRESHOLD, seed=3)["verdict"])
    better = _rates(assess_batch(new, base, "lower", THRESHOLD, seed=3)["verdict"])
    print(f"\nlatency +10%: slower {worse['slower']:.1%}; latency -10%: faster {better['faster']:.1%}")
    assert worse["slower"] >= 0.95 and worse["faster"] == 0
    assert better["faster"] >= 0.95 and better["slower"] == 0


def test_a_change_inside_the_threshold_is_not_a_regression():
    base, new = _simulate(seed=14, n=10, new_scale=0.98)
    rates = _rates(assess_batch(base, new, "higher", THRESHOLD, seed=4)["verdict"])
    print(f"\n2% slowdown at a 5% threshold: slower {rates['slower']:.2%}")
    assert rates["slower"] < 0.05


def test_too_few_trials_is_inconclusive_even_for_a_large_change():
    out = assess([100.0, 101.0], [50.0, 51.0], "higher", THRESHOLD)
    assert out["n_base"] == 2 and out["verdict"] == "inconclusive"
    out = assess([100.0, 101.0, 99.0, 100.5, 99.5], [50.0, 51.0, 49.0, 50.5, 49.5], "higher", THRESHOLD)
    assert out["verdict"] == "slower" and math.isclose(out["ratio"], 0.5)
    assert out["ci_high"] < 1 and out["p_value"] < 0.05


def test_verdict_rule_cases():
    s = np.array([0.90, 0.90, 0.90, 1.00, 0.97, 1.10, 0.90])
    low = np.array([0.85, 0.85, 0.80, 0.97, 0.93, 1.05, 0.85])
    high = np.array([0.95, 0.99, 1.01, 1.03, 1.01, 1.15, 0.95])
    p = np.array([0.01, 0.01, 0.01, 0.5, 0.2, 0.01, 0.2])
    n = np.full(7, 10)
    got = verdicts(s, low, high, p, n, n, 0.05).tolist()
    assert got == ["slower",        # past the threshold, CI below 1, significant
                   "slower",        # CI reaches past 0.95 but not 1: still a change > t
                   "inconclusive",  # CI includes 1
                   "same",          # CI within +-5%
                   "inconclusive",  # CI straddles 0.95
                   "faster",
                   "inconclusive"]  # rank test not significant
    few = verdicts(s[:1], low[:1], high[:1], p[:1], np.array([MIN_TRIALS - 1]), n[:1], 0.05)
    assert few.tolist() == ["inconclusive"]


def test_ratio_ci_is_repeatable_and_covers_the_true_ratio():
    base, new = _simulate(seed=15, n=10, new_scale=0.9)
    low, high = ratio_ci(base[:300], new[:300])
    again = ratio_ci(base[:300], new[:300])
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])
    coverage = float(np.mean((low <= 0.9) & (0.9 <= high)))
    print(f"\n95% CI of the ratio covers the true ratio in {coverage:.1%} of 300 pairs")
    assert 0.85 <= coverage <= 0.995
    assert np.all(low <= high)


def test_ratio_ci_handles_ragged_and_empty_rows():
    base = np.array([[1.0, 2.0, 3.0, 4.0, np.nan], [1.0] * 5, [np.nan] * 5,
                     [1.0, 2.0, 3.0, np.nan, np.nan]])
    new = np.array([[2.0, 4.0, 6.0, 8.0, 10.0], [2.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0],
                    [2.0, 4.0, 6.0, 8.0, np.nan]])
    low, high = ratio_ci(base, new)
    assert 0 < low[0] < high[0] and low[1] == high[1] == 2.0
    assert math.isnan(low[2]) and math.isnan(high[2])
    # 3 values against 4 cannot reach 95% (each ordering has probability 1/35): none
    assert math.isnan(low[3]) and math.isnan(high[3])


def test_unknown_direction_is_a_programming_error():
    with pytest.raises(ValueError):
        assess_batch(np.ones((1, 3)), np.ones((1, 3)), "sideways", 0.05)
