"""Real runs of one configuration on this machine, through the real command, compared.

What a unit test may assert about them is what holds at any speed: this machine is
shared and noisy (back-to-back runs of linreg on torch-cpu were seen to move by up to 2x
with two threads and ~35% with one; an A/A pair a few seconds apart was once called
`faster`, ratio 1.156, CI 1.070-1.256, p 0.0047, 14 trials a side, because the machine
drifted between the runs). So the verdict between real runs is not asserted: that real
A/A pairs are rarely called a change is measured by benchmarks/aa_false_alarms.py on a
quiet machine. Asserted here, whatever the machine did:
- a verdict is produced and is well formed: the ratio is the ratio of the medians of
  the trials in the run folders, inside its CI; p in [0, 1]; the n counts are the
  trials written; the verdict is the one compare's rule gives to the row's own figures;
  the exit code, the outcome and the counts agree with it; `--output` writes what
  stdout shows;
- the same data against itself is never a change (ratio 1, p 1);
- a copy of a real run scaled by 0.8 has a ratio of exactly 0.8 and is never called
  faster or same (its CI is 0.8 x a CI that holds 1);
- a real run's file with fixed throughputs (1% apart), against a 0.8 copy, is slower
  with exit 1: the verdict through real result files, on data that does not move.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import run_cli_here  # in this process: the runs still time in their own worker
from gpubench.results.compare_stats import verdicts
from gpubench.results.noise_priors import CPU_RUN_TO_RUN_NOISE, SEPARATE_RUNS_MULTIPLE

METRIC = "throughput_samples_per_s"
TRIALS = 7
RUN = ("run", "-w", "linreg", "-b", "torch-cpu", "--trials", str(TRIALS), "--warmup-s", "0.05",
       "--min-trial-s", "0.05", "--threads", "1", "--telemetry", "none", "-q")
# Every trial counts here (n is asserted): contended trials, which any run on a busy
# machine may have, are kept. Leaving them out is tested apart.
COMPARE = ("--threshold", "10%", "--format", "json", "--include-contended")


def _run(out: Path) -> Path:
    proc = run_cli_here(*RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def _trials(*runs: Path) -> np.ndarray:
    return np.concatenate([pd.read_csv(run / "trials.csv")[METRIC].to_numpy(float) for run in runs])


def _compare(base: Path, new: Path, tmp_path: Path):
    """compare BASE NEW as JSON on stdout, and again with --output: (process, payload, row)."""
    proc = run_cli_here("compare", str(base), str(new), *COMPARE)
    assert proc.stdout, proc.stderr
    payload = json.loads(proc.stdout)
    (row,) = payload["rows"]
    print(f"ratio {row['ratio']:.3f}, CI {row['ci_low']:.3f}-{row['ci_high']:.3f}, "
          f"p {row['p_value']:.3g}, n {row['n_base']}/{row['n_new']}: {row['verdict']} "
          f"(exit {proc.returncode})")
    written = tmp_path / f"compare-{base.name}-{new.name}.json"
    again = run_cli_here("compare", str(base), str(new), *COMPARE, "--output", str(written))
    assert again.returncode == proc.returncode, again.stderr
    assert json.loads(written.read_text()) == payload  # the file says what stdout said
    return proc, payload, row


def _assert_well_formed(proc, payload, row, base_values: np.ndarray, new_values: np.ndarray,
                        separate: bool = False):
    """What holds of any comparison, whatever the values are."""
    assert (row["n_base"], row["n_new"]) == (base_values.size, new_values.size)
    assert math.isclose(row["median_base"], np.median(base_values), rel_tol=1e-12)
    assert math.isclose(row["median_new"], np.median(new_values), rel_tol=1e-12)
    assert math.isclose(row["ratio"], row["median_new"] / row["median_base"], rel_tol=1e-12)
    # The ratio of medians lies inside the rank CI, for any data, at the sizes compared
    # here: with 7 (14) trials a side at least 16 of the 49 (56 of the 196) pairwise
    # ratios lie on each side of it, and the CI's bounds are the 9th (56th) smallest and
    # largest. (Not so at every size: from 16 a side, bimodal data can put it outside.)
    assert row["ci_low"] <= row["ratio"] * (1 + 1e-12) and row["ratio"] <= row["ci_high"] * (1 + 1e-12)
    assert 0.0 <= row["p_value"] <= 1.0
    # Separate runs of one process each: the threshold is the larger of the one asked
    # and the separate-run floor (the CPU prior x 2.8), whatever the prior is today; a
    # run against a copy of itself has no such floor.
    floor_pct = SEPARATE_RUNS_MULTIPLE * CPU_RUN_TO_RUN_NOISE * 100 if separate else 0.0
    assert row["unit"] == "trial"
    assert math.isclose(row["threshold_pct"], max(10.0, floor_pct), rel_tol=1e-9)
    # the verdict is the rule's (compare_stats.verdicts) on the row's own figures and
    # threshold, but a change past 10% that the data resolve inside the floor is
    # inconclusive (neither called nor `same`)
    figures = [np.array([row[k]]) for k in ("ratio", "ci_low", "ci_high", "p_value",
                                            "n_base", "n_new")]
    (rule,) = verdicts(*figures, row["threshold_pct"] / 100)
    (asked,) = verdicts(*figures, 0.10)
    if asked in ("slower", "faster") and rule in ("same", "inconclusive"):
        rule = "inconclusive"
    assert row["verdict"] == rule
    assert payload["counts"] == {row["verdict"]: 1}
    slower = row["verdict"] == "slower"
    assert payload["outcome"] == ("regression" if slower else "ok")
    assert proc.returncode == payload["exit_code"] == (1 if slower else 0), proc.stderr


def test_real_runs_compare_with_a_well_formed_verdict_and_a_scaled_copy_at_its_exact_ratio(tmp_path):
    runs = [_run(tmp_path / side) for side in ("a", "b", "a", "b")]
    for run in runs:
        print(run.parent.name, run.name, _trials(run).round().tolist())
    a_values, b_values = _trials(*runs[0::2]), _trials(*runs[1::2])
    assert a_values.size == b_values.size == 2 * TRIALS

    print("\nA/A real runs:", end=" ")
    proc, payload, row = _compare(tmp_path / "a", tmp_path / "b", tmp_path)
    _assert_well_formed(proc, payload, row, a_values, b_values, separate=True)

    first = runs[0]
    values = _trials(first)
    (tmp_path / "same").mkdir()
    shutil.copyfile(first / "trials.csv", tmp_path / "same" / "trials.csv")  # byte for byte
    print("same data:", end=" ")
    proc, payload, row = _compare(first, tmp_path / "same", tmp_path)
    _assert_well_formed(proc, payload, row, values, values)
    assert row["ratio"] == 1.0 and row["p_value"] == 1.0 and row["verdict"] in ("same", "inconclusive")

    copy = pd.read_csv(first / "trials.csv")
    scaled = copy.copy()
    scaled[METRIC] *= 0.8
    (tmp_path / "scaled").mkdir()
    scaled.to_csv(tmp_path / "scaled" / "trials.csv", index=False)
    print("same data x0.8:", end=" ")
    proc, payload, row = _compare(first, tmp_path / "scaled", tmp_path)
    _assert_well_formed(proc, payload, row, values, 0.8 * values)
    assert math.isclose(row["ratio"], 0.8, rel_tol=1e-12)
    assert row["verdict"] in ("slower", "inconclusive")  # noise may widen it; never the wrong way

    # The same real file with throughputs that do not move: a 20% loss is slower, exit 1.
    fixed = copy.copy()
    fixed[METRIC] = 1000.0 * (1 + 0.01 * np.arange(len(fixed)))
    (tmp_path / "fixed").mkdir()
    fixed.to_csv(tmp_path / "fixed" / "trials.csv", index=False)
    fixed[METRIC] *= 0.8
    (tmp_path / "fixed-scaled").mkdir()
    fixed.to_csv(tmp_path / "fixed-scaled" / "trials.csv", index=False)
    print("fixed data x0.8:", end=" ")
    proc, payload, row = _compare(tmp_path / "fixed", tmp_path / "fixed-scaled", tmp_path)
    _assert_well_formed(proc, payload, row, fixed[METRIC].to_numpy() / 0.8, fixed[METRIC].to_numpy())
    assert row["verdict"] == "slower" and math.isclose(row["ratio"], 0.8, rel_tol=1e-12)
    assert proc.returncode == 1 and payload["outcome"] == "regression"
