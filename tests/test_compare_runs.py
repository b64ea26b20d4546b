"""The statistical unit of compare: per-run medians once both sides have enough runs,
so run-to-run variation (clocks, placement, neighbours) is not mistaken for a change."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here
from gpubench.results.compare import MIN_RUNS_PER_SIDE, compare
from gpubench.results.schema import SCHEMA_VERSION
from test_compare import make_trials, write_run


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
    pooled_calls = separate_calls = 0
    for _ in range(150):  # the same data shape as one run's trials: nothing measures the wobble
        base = _side(rng, MIN_RUNS_PER_SIDE, 5, 100.0, 0.05, 0.005, "b").assign(run_id="r")
        new = _side(rng, MIN_RUNS_PER_SIDE, 5, 100.0, 0.05, 0.005, "n").assign(run_id="r")
        pooled_calls += compare(base, new).iloc[0]["verdict"] in ("faster", "slower")
        # one run id a side: separate runs, judged against the run-to-run prior (issue 30)
        separate = compare(base.assign(run_id="b"), new.assign(run_id="n")).iloc[0]
        separate_calls += separate["verdict"] in ("faster", "slower")
    print(f"the same data pooled as trials: {pooled_calls / 150:.1%} called faster/slower; "
          f"as two separate runs (the prior's floor): {separate_calls / 150:.1%}")
    assert pooled_calls / 150 > 2 * run_level + 0.05
    assert separate_calls / 150 < pooled_calls / 150


def test_a_real_change_is_still_found_at_run_level():
    rate, units = _called(pairs=60, runs=6, seed=2, new_mean=80.0)  # 20% slower
    assert units == {"run"} and rate >= 0.9


def test_few_runs_fall_back_to_trials_with_a_note():
    rng = np.random.default_rng(3)
    one = compare(_side(rng, 1, 10, 100, 0.0, 0.01, "b"), _side(rng, 1, 10, 100, 0.0, 0.01, "n")).iloc[0]
    assert one["unit"] == "trial" and "run-to-run variation is not measured" in one["note"]
    assert one["n_base"] == 10
    few = compare(_side(rng, 3, 4, 100, 0.0, 0.01, "b"), _side(rng, 5, 4, 100, 0.0, 0.01, "n")).iloc[0]
    # issue 28 finding 5: 3 and 5 runs pool their trials too, and the note says so
    assert few["unit"] == "trial" and "pooled from 3 vs 5 processes" in few["note"]
    assert "run-to-run variation is not measured" in few["note"]
    many = compare(_side(rng, 4, 4, 100, 0.0, 0.01, "b"), _side(rng, 5, 4, 100, 0.0, 0.01, "n")).iloc[0]
    assert many["unit"] == "run" and (many["n_base"], many["n_new"]) == (4, 5)
    assert "per-run medians (4 vs 5 runs)" in many["note"]


# --- issue 28, finding 5: a verdict on trials pooled over separate runs says so -------

def _pooled_call(seed=5):
    """2 runs a side, new 20% faster with no run-to-run wobble: called on pooled trials."""
    rng = np.random.default_rng(seed)
    return compare(_side(rng, 2, 5, 100, 0.0, 0.005, "b"), _side(rng, 3, 5, 120, 0.0, 0.005, "n"))


def test_a_verdict_on_pooled_trials_of_separate_runs_carries_the_caveat():
    row = _pooled_call().iloc[0]
    assert row["unit"] == "trial" and row["verdict"] == "faster"
    assert row["caveat"] == "pooled trials"


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_every_output_shows_the_caveat_in_the_verdict(tmp_path, fmt):
    rng = np.random.default_rng(5)
    base = write_run(tmp_path / "base", _side(rng, 2, 5, 100, 0.0, 0.005, "b"))
    new = write_run(tmp_path / "new", _side(rng, 3, 5, 120, 0.0, 0.005, "n"))
    proc = run_cli_here("compare", str(base), str(new), "--format", fmt, columns=80)
    assert proc.returncode == 0, proc.stderr
    if fmt == "json":
        row = json.loads(proc.stdout)["rows"][0]
        assert (row["verdict"], row["caveat"]) == ("faster", "pooled trials")
    else:  # the verdict cell itself, not a note elsewhere
        rows = [line for line in proc.stdout.splitlines()
                if line.startswith("│") or line.startswith("| faster")]  # the table's rows
        assert "faster" in rows[0] and "(pooled" in "".join(rows), proc.stdout


def test_a_verdict_over_runs_has_no_caveat():
    rng = np.random.default_rng(6)
    row = compare(_side(rng, 4, 4, 100, 0.0, 0.005, "b"), _side(rng, 4, 4, 130, 0.0, 0.005, "n")).iloc[0]
    assert row["unit"] == "run" and row["verdict"] == "faster" and row["caveat"] == ""


# --- issue 28, finding 6: no usable trial on a side is bad input, not a pass ----------

def test_compare_where_every_trial_was_contended_exits_2(tmp_path):
    frame = make_trials([100.0, 101.0, 99.0, 100.5], contended=True, schema_version=SCHEMA_VERSION)
    run = write_run(tmp_path / "r", frame)
    proc = run_cli_here("compare", str(run), str(run))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no configuration has a usable trial on both sides" in lines[0]
    assert "--include-contended" in lines[0] and "Traceback" not in proc.stderr
    kept = run_cli_here("compare", str(run), str(run), "--include-contended")
    assert kept.returncode == 0, kept.stderr  # kept: 4 trials a side, compared
