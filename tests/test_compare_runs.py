"""The statistical unit of compare: per-run medians once both sides have enough runs,
so run-to-run variation (clocks, placement, neighbours) is not mistaken for a change."""

import numpy as np
import pandas as pd

from gpubench.results.compare import MIN_RUNS_PER_SIDE, compare
from test_compare import make_trials


def _side(rng, runs, trials, mean, between_sd, within_sd, label):
    """`runs` runs of `trials` trials: each run's level wobbles by `between_sd`, its
    trials around it by `within_sd` (relative)."""
    frames = []
    for r in range(runs):
        level = mean * (1 + between_sd * rng.standard_normal())
        values = level * (1 + within_sd * rng.standard_normal(trials))
        frames.append(make_trials(values, run_id=f"{label}{r}"))
    return pd.concat(frames, ignore_index=True)


def _called(pairs, runs, seed, new_mean=100.0):
    """Share of simulated pairs called faster/slower, and the units used."""
    rng = np.random.default_rng(seed)
    calls, units = 0, set()
    for _ in range(pairs):
        base = _side(rng, runs, 5, 100.0, 0.05, 0.005, "b")
        new = _side(rng, runs, 5, new_mean, 0.05, 0.005, "n")
        row = compare(base, new).iloc[0]
        calls += row["verdict"] in ("faster", "slower")
        units.add(row["unit"])
    return calls / pairs, units


def test_run_to_run_noise_is_not_called_a_change_with_enough_runs():
    # 5% run-to-run wobble, 0.5% within a run, no real change. Pooling trials treats
    # 20 trials as independent and calls many pairs; per-run medians do not.
    run_level, units = _called(pairs=150, runs=MIN_RUNS_PER_SIDE, seed=1)
    assert units == {"run"}
    print(f"\nA/A with 5% run-to-run noise, {MIN_RUNS_PER_SIDE} runs a side: "
          f"{run_level:.1%} called faster/slower (per-run medians)")
    assert run_level < 0.05
    rng = np.random.default_rng(1)
    pooled_calls = 0
    for _ in range(150):  # the same data shape, one run id a side: trials pooled
        base = _side(rng, MIN_RUNS_PER_SIDE, 5, 100.0, 0.05, 0.005, "b").assign(run_id="b")
        new = _side(rng, MIN_RUNS_PER_SIDE, 5, 100.0, 0.05, 0.005, "n").assign(run_id="n")
        pooled_calls += compare(base, new).iloc[0]["verdict"] in ("faster", "slower")
    print(f"the same data pooled as trials: {pooled_calls / 150:.1%} called faster/slower")
    assert pooled_calls / 150 > 2 * run_level + 0.05


def test_a_real_change_is_still_found_at_run_level():
    rate, units = _called(pairs=60, runs=6, seed=2, new_mean=80.0)  # 20% slower
    assert units == {"run"} and rate >= 0.9


def test_few_runs_fall_back_to_trials_with_a_note():
    rng = np.random.default_rng(3)
    one = compare(_side(rng, 1, 10, 100, 0.0, 0.01, "b"), _side(rng, 1, 10, 100, 0.0, 0.01, "n")).iloc[0]
    assert one["unit"] == "trial" and "run-to-run variation is not measured" in one["note"]
    assert one["n_base"] == 10
    few = compare(_side(rng, 3, 4, 100, 0.0, 0.01, "b"), _side(rng, 5, 4, 100, 0.0, 0.01, "n")).iloc[0]
    assert few["unit"] == "trial" and "not measured" not in few["note"]
    many = compare(_side(rng, 4, 4, 100, 0.0, 0.01, "b"), _side(rng, 5, 4, 100, 0.0, 0.01, "n")).iloc[0]
    assert many["unit"] == "run" and (many["n_base"], many["n_new"]) == (4, 5)
    assert "per-run medians (4 vs 5 runs)" in many["note"]
