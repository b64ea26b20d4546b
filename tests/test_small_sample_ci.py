"""Honest intervals at small n (issue 13): the 95% CI of the median is the
order-statistics (binomial) interval, which holds its coverage at any n and is absent
(NaN, `n<6` in the table) where n cannot reach 95%; compare's CI of a ratio likewise;
and a run that stopped short of its --target-rel-ci says so."""

import math

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here  # in this process: the warning and table are under test
from gpubench.results.compare_stats import assess, assess_batch
from gpubench.stats import describe, rel_ci_halfwidth


def _coverage(n, draws=2000, seed=0):
    """How often describe()'s 95% CI holds the true median of a skewed distribution
    (lognormal, sigma 1: median 1, mean 1.65) over `draws` seeded samples of n."""
    rng = np.random.default_rng(seed)
    samples = rng.lognormal(0.0, 1.0, size=(draws, n))
    hits = 0
    for x in samples:
        d = describe(x)
        hits += d["ci_low"] <= 1.0 <= d["ci_high"]
    return hits / draws


def test_median_ci_covers_at_least_95_percent_at_n_8_on_a_skewed_distribution():
    coverage = _coverage(8)
    print(f"\nn=8 lognormal: 95% CI of the median covers it in {coverage:.1%} of 2,000")
    assert coverage >= 0.94  # the percentile bootstrap: 91%


@pytest.mark.parametrize("n", [6, 7, 11])
def test_median_ci_holds_its_coverage_as_soon_as_it_exists(n):
    assert _coverage(n, seed=n) >= 0.94


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_too_few_values_give_no_interval(n):
    d = describe(np.linspace(100.0, 101.0, n))
    assert d["n"] == n and math.isfinite(d["median"])
    assert math.isnan(d["ci_low"]) and math.isnan(d["ci_high"])
    assert rel_ci_halfwidth(np.linspace(100.0, 101.0, n)) == math.inf


def test_the_interval_is_the_binomial_order_statistics():
    x = np.arange(1.0, 11.0)  # n = 10: ranks 2 and 9 (coverage 97.9%)
    d = describe(x[::-1])
    assert (d["ci_low"], d["ci_high"]) == (2.0, 9.0)
    six = describe([5.0, 1.0, 3.0, 2.0, 6.0, 4.0])  # n = 6: the range (96.9%)
    assert (six["ci_low"], six["ci_high"]) == (1.0, 6.0)


def test_the_target_loop_never_stops_on_fewer_than_six_trials(monkeypatch):
    # A perfectly steady step: any two trials agree exactly, and a bootstrap called
    # that a CI of +-0% after 2 trials. With no interval below 6, it keeps adding.
    from gpubench.measure.protocol import STOP_TARGET_MET, ProtocolConfig, measure
    from test_protocol import ClockStep

    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.02, target_rel_ci=0.01,
                            max_time_s=10)
    _, stop = measure(ClockStep(monkeypatch, lambda n: 0.0005), config, results.append)
    assert stop == STOP_TARGET_MET and len(results) == 6


# -- compare's CI of the ratio of medians -------------------------------------------

def _ratio_coverage(n, true_ratio=0.9, pairs=2000, seed=3):
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 0.05, size=(pairs, n)) * 1000.0
    new = rng.lognormal(0.0, 0.05, size=(pairs, n)) * 1000.0 * true_ratio
    out = assess_batch(base, new, "higher", 0.05)
    return float(np.mean((out["ci_low"] <= true_ratio) & (true_ratio <= out["ci_high"])))


@pytest.mark.parametrize("n", [4, 5, 8])
def test_ratio_ci_covers_at_least_95_percent_at_small_n(n):
    coverage = _ratio_coverage(n)
    print(f"\n{n} trials a side: the ratio's 95% CI covers the true ratio in {coverage:.1%}")
    assert coverage >= 0.94  # the percentile bootstrap: 93% at 4 a side (89% at 3)


def test_three_trials_a_side_cannot_be_called_the_same():
    # Identical samples: the bootstrap's CI was [0.998, 1.002], "same". 3 against 3
    # cannot reach a 95% interval: no CI, inconclusive.
    out = assess([100.0, 100.2, 99.8], [100.0, 100.2, 99.8], "higher", 0.05)
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
    assert out["verdict"] == "inconclusive"
    four = assess([100.0, 100.2, 99.8, 100.1], [100.0, 100.2, 99.8, 100.1], "higher", 0.05)
    assert four["verdict"] == "same" and four["ci_low"] <= 1.0 <= four["ci_high"]


# -- a missed --target-rel-ci is visible --------------------------------------------

def test_the_run_table_reads_n_below_6_where_there_is_no_interval():
    from gpubench.cli.result_table import summary_columns

    row = pd.Series({"run_id": "r1", "workload": "linreg", "backend": "torch-cpu",
                     "mode": "train", "precision": "fp32", "batch_size": 32, "n_trials": 3,
                     "n_ok": 3, "status": "ok", "throughput_samples_per_s_median": 1000.0,
                     "throughput_samples_per_s_ci_low": float("nan"),
                     "throughput_samples_per_s_ci_high": float("nan")})
    ci = next(c for c in summary_columns(pd.DataFrame([row])) if c.header == "95% CI")
    assert ci.cell(row) == "n<6"
    eight = row.copy()
    eight["n_ok"], eight["throughput_samples_per_s_ci_low"] = 8, 990.0
    eight["throughput_samples_per_s_ci_high"] = 1020.0
    assert ci.cell(eight) == "±2.00%"


def test_a_run_that_misses_its_target_says_so(tmp_path):
    pytest.importorskip("torch")
    proc = run_cli_here("run", "-w", "linreg", "-b", "torch-cpu", "--trials", "2",
                        "--warmup-s", "0.05", "--min-trial-s", "0.05", "--target-rel-ci", "0.0001",
                        "--max-time-s", "0.3", "--telemetry", "none", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    said = "target ±0.01% not met: stopped at the time cap (--max-time-s) after "
    warnings = [line for line in proc.stderr.splitlines() if said in line]
    assert len(warnings) == 1 and warnings[0].startswith("gpubench: warning: "), proc.stderr
    # The table: the CI cell marked, and the line under it.
    assert any(line.startswith(f"* {said}") for line in proc.stdout.splitlines()), proc.stdout
    from test_cli_presentation import table_cells
    ci_cells = [cell for row in table_cells(proc.stdout) for cell in row if cell.endswith("*")]
    assert len(ci_cells) == 1, proc.stdout
    assert ci_cells[0].startswith("±") or ci_cells[0] == "n<6*", proc.stdout
    # The run folder knows why: `gpubench show` says it again.
    folder = proc.stdout.splitlines()[0]
    shown = run_cli_here("show", folder)
    assert shown.returncode == 0, shown.stderr
    assert f"* {said}" in shown.stdout


def test_a_met_target_or_no_target_adds_nothing():
    from gpubench.cli.result_table import missed_target_text

    assert missed_target_text(0.01, "target_ci_met", 8, 0.004) is None
    assert missed_target_text(None, "fixed_trials", 5, None) is None
    assert missed_target_text(0.01, "trial_cap", 100, 0.023) == (
        "target ±1% not met: stopped at the trial cap after 100 trials (the 95% CI is ±2.30%)")
