"""`gpubench suite --shard i/N`: the parts of the shipped suites (exact, balanced by the
estimate, the same on every call), bad input, and sharded runs of a small suite that
meet as one suite (same configurations and row counts as unsharded, one suite_id, the
`shard` column) with --resume per shard."""

from pathlib import Path

import pytest

from conftest import PLUGIN_ENV, REPO, run_cli_here
from gpubench.results.compare_load import read_input
from gpubench.results.reader import read_trials
from gpubench.suite.plan import plan_suite
from gpubench.suite.shards import Shard, configuration_weights, partition, select_shard

# 8 equal configurations of smoke cannot be cut into 3 parts within 15% (3/3/2): 2 and 4
SHIPPED = {"nightly": (2, 3, 4, 8), "smoke": (2, 4)}


def _plan(name, shard=None):
    return plan_suite(REPO / "configs" / f"{name}.yaml", Path("unused"), install=False, shard=shard)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_suites_partition_exactly_and_balanced(name):
    whole = _plan(name)
    keys, weights_s = configuration_weights(whole.runs)
    total_s = sum(weights_s)
    for count in SHIPPED[name]:
        parts = [_plan(name, Shard(i, count)) for i in range(1, count + 1)]
        labels = [[p.label() for p in part.runs] for part in parts]
        flat = [label for part in labels for label in part]
        assert len(flat) == len(set(flat)), "a run in two parts"
        assert sorted(flat) == sorted(p.label() for p in whole.runs), "union is not the suite"
        part_s = [sum(w for k, w in zip(keys, weights_s) if k in {p.key for p in part.runs})
                  for part in parts]
        assert sum(part_s) == pytest.approx(total_s)
        assert max(abs(s - total_s / count) for s in part_s) <= 0.15 * total_s / count, part_s
        # a configuration's repeats stay together; the parts do not depend on the call
        assert labels == [[p.label() for p in _plan(name, Shard(i, count)).runs]
                          for i in range(1, count + 1)]


def test_longest_first_to_the_lightest_part():
    assert partition([1, 5, 3, 3, 2], 2) == [[1, 4], [0, 2, 3]]  # 5+2 | 3+3+1
    assert partition([4, 4, 4], 3) == [[0], [1], [2]]
    assert partition([1], 3) == [[0], [], []]  # more parts than configurations: empty ones
    runs = _plan("smoke").runs
    assert select_shard(runs, Shard(1, 1)) == runs


@pytest.mark.parametrize("shard", ["0/3", "4/3", "a/b", "1/0", "-1/2"])
def test_bad_shard_is_one_line_exit_2(shard):
    proc = run_cli_here("suite", str(REPO / "configs/smoke.yaml"), "--dry-run", f"--shard={shard}")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--shard" in proc.stderr


def test_dry_run_lists_the_part_and_its_estimate():
    proc = run_cli_here("suite", str(REPO / "configs/smoke.yaml"), "--dry-run", "--shard", "2/4")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "2 runs from " + str(REPO / "configs/smoke.yaml") + " (shard 2/4)"
    assert lines[:-1] == [p.label() for p in _plan("smoke", Shard(2, 4)).runs]
    assert "estimated wall time" in proc.stderr


SMALL = """defaults:
  trials: 2
  warmup_s: 0.05
  min_trial_s: 0.05
  telemetry: none
  timeout_s: 120
runs:
  - workloads: linreg
    backends: test-ok
    batch_sizes: [1, 2, 4]
    modes: [train, infer]
"""


def _suite(*args):
    return run_cli_here("suite", *args, env_extra=PLUGIN_ENV)


def test_two_shards_meet_as_one_suite_and_resume_per_shard(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    whole = _suite(str(config), "--out", str(tmp_path / "whole"), "-q")
    assert whole.returncode == 0, whole.stderr
    no_batch = _suite(str(config), "--out", str(tmp_path / "x"), "--shard", "1/2")
    assert no_batch.returncode == 2 and "--batch-id" in no_batch.stderr
    out = tmp_path / "sharded"
    folders = []
    for i in (1, 2):
        proc = _suite(str(config), "--out", str(out), "--shard", f"{i}/2", "--batch-id", "b7", "-q")
        assert proc.returncode == 0, proc.stderr
        folders.append(Path(proc.stdout.splitlines()[0]))
    assert folders[0] != folders[1]
    unsharded = read_trials(Path(whole.stdout.splitlines()[0]) / "trials.csv")
    together = read_input(out)  # the folder tree, as compare, history and report read it
    ident = ["workload", "mode", "batch_size"]
    assert (together.groupby(ident).size().to_dict() == unsharded.groupby(ident).size().to_dict())
    assert together["suite_id"].nunique() == 1
    assert set(together["shard"]) == {"1/2", "2/2"}
    assert together.groupby("shard")["run_id"].nunique().to_dict() == {"1/2": 3, "2/2": 3}
    # --resume of one shard finds that shard's folder and has nothing left to run
    again = _suite(str(config), "--out", str(out), "--shard", "2/2", "--batch-id", "b7",
                   "--resume", "--dry-run")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("0 runs") and "3 already ok" in again.stdout
    # a different batch is a different suite run
    other = _suite(str(config), "--out", str(tmp_path / "other"), "--shard", "1/2",
                   "--batch-id", "b8", "-q")
    assert read_trials(Path(other.stdout.splitlines()[0]) / "trials.csv")["suite_id"].iloc[0] \
        != together["suite_id"].iloc[0]


def test_batch_id_without_shard_is_one_line():
    proc = run_cli_here("suite", str(REPO / "configs/smoke.yaml"), "--dry-run", "--batch-id", "x")
    assert proc.returncode == 2 and "--batch-id is for --shard" in proc.stderr
