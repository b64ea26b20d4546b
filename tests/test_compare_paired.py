"""Issue 30: paired analysis of one interleaved suite (round k of base against round k of
new: Wilcoxon signed-rank on the per-pair log-ratios, a bootstrap CI over rounds), its
fallbacks, the `test` column, and excluded (throttled) trials left out and counted."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import PLUGIN_ENV, run_cli_here
from test_suite import FAST  # the suites' fast defaults
from gpubench.results.compare import compare, compare_paths
from gpubench.results.compare_format import to_markdown
from gpubench.results.compare_paired import PAIRED_ROUNDS, PAIRED_TRIALS, UNPAIRED
from gpubench.results.schema import SCHEMA_VERSION
from test_compare import make_trials, write_run


def drifting(rounds, factor, seed, trials=2, suite="suite-1", round_offsets=(0, 1),
             drift=0.10, jitter=0.004):
    """Two runs of one suite, interleaved: in round k both sides run at the machine's
    level of that minute (moving +-`drift`), new at `factor` x base, each trial
    `jitter` apart. Returns (base, new) trial rows."""
    rng = np.random.default_rng(seed)
    levels = 1000 * (1 + drift * rng.uniform(-1, 1, rounds))
    sides = []
    for name, scale, offset in (("a", 1.0, round_offsets[0]), ("b", factor, round_offsets[1])):
        frames = [make_trials(level * scale * (1 + jitter * rng.standard_normal(trials)),
                              run_id=name, process=k, round=2 * k + offset, suite_id=suite)
                  .assign(trial=lambda f, k=k: f["trial"] + trials * k)
                  for k, level in enumerate(levels)]
        sides.append(pd.concat(frames, ignore_index=True))
    return sides


def test_pairing_finds_a_slowdown_that_drift_hides_from_the_unpaired_test():
    base, new = drifting(8, 0.93, seed=1)
    paired = compare(base, new).iloc[0]
    assert paired["test"] == PAIRED_ROUNDS and paired["unit"] == "round"
    assert (paired["n_base"], paired["n_new"]) == (8, 8)
    assert paired["verdict"] == "slower" and paired["ratio"] == pytest.approx(0.93, abs=0.01)
    assert paired["ci_low"] < 0.93 < paired["ci_high"] < 0.95
    assert paired["p_value"] == pytest.approx(2 / 2 ** 8)  # exact: every round slower
    assert paired["noise_pct"] < 2 and paired["threshold_pct"] == 5.0
    assert "paired: round k of base against round k of new in suite suite-1" in paired["note"]
    unpaired = compare(base, new, unpaired=True).iloc[0]
    assert unpaired["test"] == UNPAIRED and unpaired["unit"] == "process"
    assert unpaired["verdict"] != "slower"
    assert "not paired: --unpaired" in unpaired["note"]
    # deterministic: the bootstrap is seeded
    again = compare(base, new).iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (paired["ci_low"], paired["ci_high"])


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_a_over_a_with_drift_is_not_called(seed):
    base, new = drifting(8, 1.0, seed=seed)
    row = compare(base, new).iloc[0]
    assert row["test"] == PAIRED_ROUNDS and row["verdict"] in ("same", "inconclusive")


def test_fewer_than_six_rounds_pair_the_trials_within_rounds():
    base, new = drifting(5, 0.93, seed=5, trials=3)
    row = compare(base, new).iloc[0]
    assert row["test"] == PAIRED_TRIALS and row["unit"] == "trial"
    assert (row["n_base"], row["n_new"]) == (15, 15)
    assert row["verdict"] == "slower" and row["p_value"] < 0.001
    assert "5 rounds of suite suite-1, fewer than 6" in row["note"]
    assert "trial j of a base round is paired with trial j of the same new round" in row["note"]


def test_falls_back_to_mann_whitney_and_says_why():
    base, new = drifting(8, 0.93, seed=6)
    other = compare(base, new.assign(suite_id="suite-2")).iloc[0]
    assert other["test"] == UNPAIRED and "not paired: the sides do not come from one suite" in other["note"]
    unequal = compare(base, new[new["process"] < 7]).iloc[0]
    assert unequal["test"] == UNPAIRED and "not paired: unequal rounds (8 vs 7" in unequal["note"]
    missing = compare(base, new.assign(round=np.nan)).iloc[0]
    assert missing["test"] == UNPAIRED and "not paired: rounds missing" in missing["note"]
    lone = compare(base.assign(suite_id=np.nan), new.assign(suite_id=np.nan)).iloc[0]
    assert lone["test"] == UNPAIRED and "not paired" not in lone["note"]  # nothing to pair


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_the_test_column_is_shown(tmp_path, fmt):
    base, new = drifting(8, 0.93, seed=1)
    a = write_run(tmp_path / "a", base.assign(schema_version=SCHEMA_VERSION))
    b = write_run(tmp_path / "b", new.assign(schema_version=SCHEMA_VERSION))
    proc = run_cli_here("compare", str(a), str(b), "--format", fmt, columns=200)
    assert proc.returncode == 1, proc.stderr  # slower
    if fmt == "json":
        assert json.loads(proc.stdout)["rows"][0]["test"] == PAIRED_ROUNDS
    else:
        assert "test" in proc.stdout and "wilcoxon paired rounds" in proc.stdout
    unpaired = run_cli_here("compare", str(a), str(b), "--unpaired", "--format", "json")
    assert json.loads(unpaired.stdout)["rows"][0]["test"] == UNPAIRED


def test_excluded_trials_are_left_out_and_counted(tmp_path):
    base = make_trials([1000, 1001, 999, 1000.5, 1000.2, 999.6])
    new = make_trials([1000, 1001, 999, 1000.5, 500, 510]).assign(
        excluded=["", "", "", "", "throttled", "throttled"])
    row = compare(base, new).iloc[0]
    assert row["n_new"] == 4 and row["verdict"] != "slower"
    assert "new: 2 throttled trials left out (--include-throttled keeps them)" in row["note"]
    kept = compare(base, new, include_throttled=True).iloc[0]
    assert kept["n_new"] == 6 and "new: 2 throttled trials kept (--include-throttled)" in kept["note"]
    a = write_run(tmp_path / "a", base.assign(schema_version=SCHEMA_VERSION))
    b = write_run(tmp_path / "b", new.assign(schema_version=SCHEMA_VERSION))
    rows = [json.loads(run_cli_here("compare", str(a), str(b), *flag, "--format", "json").stdout)
            ["rows"][0] for flag in ([], ["--include-throttled"])]
    assert [r["n_new"] for r in rows] == [4, 6]


TWO_CONFIGS = FAST + """runs:
  - workloads: linreg
    backends: test-ok
    batch_sizes: [1, 2]
    processes: 3
"""


def test_a_real_suite_of_two_configs_is_compared_paired(tmp_path):
    (tmp_path / "suite.yaml").write_text(TWO_CONFIGS)
    proc = run_cli_here("suite", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "out"),
                        "-q", env_extra=PLUGIN_ENV)
    assert proc.returncode == 0, proc.stderr
    (suite,) = (tmp_path / "out").iterdir()
    runs = sorted((suite / "runs").iterdir())
    assert len(runs) == 2
    comparison = compare_paths(runs[0], runs[1], by="batch_size")
    row = comparison.table.iloc[0]
    assert row["test"] == PAIRED_TRIALS and (row["n_base"], row["n_new"]) == (6, 6)
    assert "3 rounds of suite" in row["note"]
    assert PAIRED_TRIALS.replace("wilcoxon", "") in to_markdown(comparison)


def test_rows_of_different_shards_are_not_paired():
    """Shards of one suite share its suite_id but ran on different machines: round k of
    shard 1 did not run beside round k of shard 2."""
    base, new = drifting(8, 0.93, seed=1)
    apart = compare(base.assign(shard="1/2"), new.assign(shard="2/2")).iloc[0]
    assert apart["test"] == UNPAIRED and "not paired: the sides ran in different shards" in apart["note"]
    together = compare(base.assign(shard="2/2"), new.assign(shard="2/2")).iloc[0]
    assert together["test"] == PAIRED_ROUNDS
