"""--processes K: a run's trials spread over K worker processes, one after another,
into one run folder; compare takes the process as its unit and learns the noise
floor from the processes."""

import json

import numpy as np
import pandas as pd
import pytest

import suite_plugins  # noqa: F401 (the test-* backends, for suites parsed in this process)
from conftest import PLUGIN_ENV, run_cli
from gpubench.cli import EXIT_RUN_FAILED
from gpubench.cli.progress import trial_description, trials_left_s
from gpubench.launch.status_rows import record_status
from gpubench.measure.protocol import ProtocolConfig, measure
from gpubench.measure.runner import RunRequest
from gpubench.results.compare import compare
from gpubench.results.reader import read_run, read_trials
from gpubench.results.schema import SCHEMA_VERSION, TRIAL_COLUMNS

FAST = ("--warmup-s", "0.05", "--min-trial-s", "0.05")


def test_a_run_over_three_processes_is_one_folder(tmp_path):
    proc = run_cli("run", "-w", "mnist", "-b", "test-ok", "--processes", "3", "--trials", "2",
                   *FAST, "--out", str(tmp_path), "-q", env_extra=PLUGIN_ENV)
    assert proc.returncode == 0, proc.stderr
    (folder,) = tmp_path.iterdir()
    data = read_run(folder)
    trials = data.trials
    assert trials["process"].tolist() == [0, 0, 1, 1, 2, 2]
    assert trials["trial"].tolist() == list(range(6))  # numbered on, never reused
    assert trials["run_id"].nunique() == 1 and trials["started_utc"].nunique() == 1
    processes = data.meta["processes"]
    assert [p["process"] for p in processes] == [0, 1, 2]
    # The first calibrates; the later ones time exactly its iterations per trial (the
    # first may re-size its own later trials when one runs short on a busy machine).
    first = processes[0]["calibration"]["iterations_per_trial"]
    assert set(trials.loc[trials["process"] > 0, "iterations"]) == {first}
    assert all(p["calibration"]["iterations_per_trial"] == first for p in processes)
    assert all(p["stop_reason"] == "fixed_trials" for p in processes)
    assert data.meta["started_utc"] == processes[0]["started_utc"]
    # One summary row over all six trials, not one per process.
    assert len(data.summary) == 1 and int(data.summary["n_ok"].iloc[0]) == 6
    samples = pd.read_csv(folder / "samples.csv")
    assert set(samples["trial"].dropna().astype(int)) == set(range(6))  # every process's


def test_a_later_process_that_crashes_keeps_the_earlier_ones(tmp_path):
    env = {**PLUGIN_ENV, "GPUBENCH_TEST_MARK": str(tmp_path / "mark")}
    proc = run_cli("run", "-w", "mnist", "-b", "test-second-process-crashes", "--processes", "3",
                   "--trials", "2", *FAST, "--out", str(tmp_path / "out"), "-q", env_extra=env)
    assert proc.returncode == EXIT_RUN_FAILED, proc.stderr
    (folder,) = (tmp_path / "out").iterdir()
    trials = read_trials(folder / "trials.csv")
    assert trials["status"].tolist() == ["ok", "ok", "failed"]
    assert trials["process"].tolist() == [0, 0, 1]  # the failed row names the process
    assert "SIGABRT" in trials["error"].iloc[-1]


def test_no_isolate_refuses_processes(tmp_path):
    proc = run_cli("run", "-w", "mnist", "-b", "test-ok", "--processes", "2", "--no-isolate",
                   "--out", str(tmp_path), env_extra=PLUGIN_ENV)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--processes 2" in proc.stderr and not list(tmp_path.iterdir())


def test_status_row_names_the_process_it_ended_in(tmp_path):
    req = RunRequest("mnist", "test-ok", folder=tmp_path / "x-run1")
    (tmp_path / "x-run1").mkdir()
    rows = record_status(req, "timeout", "timed out", process=2)
    assert rows["process"].tolist() == [2] and rows["status"].tolist() == ["timeout"]


class CountingStep:
    """Iterations cost nothing; counts them (the protocol's decisions only)."""

    from gpubench.backends import DeviceInfo
    device = DeviceInfo("cpu", None, "test")
    latency_timing_syncs = False

    def __init__(self):
        self.iterations = 0

    def run(self, n, timer=None):
        self.iterations += n

    def synchronize(self):
        pass

    def loss(self):
        return None


def test_a_later_process_times_the_first_ones_iterations():
    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.5, iterations_per_trial=7,
                            first_trial=4)
    calibration, stop = measure(CountingStep(), config, results.append)
    assert [(r.trial, r.iterations) for r in results] == [(4, 7), (5, 7)]
    # Far shorter than min_trial_s, yet neither discarded nor recalibrated: same work.
    assert calibration.iterations_per_trial == 7 and calibration.discarded_trials == []
    assert stop == "fixed_trials"


def test_progress_names_the_process_and_counts_the_later_ones():
    fields = {"trial": 0, "trials": 2, "iterations": 10, "seconds_per_iteration": 0.1,
              "process": 1, "processes": 4}
    assert trial_description(fields) == "process 2/4, trial 1/2 (10 iterations)"
    assert trials_left_s(fields) == pytest.approx((2 + 2 * 2) * 10 * 0.1)
    assert trial_description({**fields, "processes": 1}) == "trial 1/2 (10 iterations)"


def frame(process_medians, trials_per_process=3, jitter=0.002, seed=0, run_id="r1"):
    """ok trials of one run: each process's trials around its median."""
    rng = np.random.default_rng(seed)
    rows = []
    for process, median in enumerate(process_medians):
        for t in range(trials_per_process):
            rows.append(dict(run_id=run_id, workload="mnist", backend="torch-cpu", mode="train",
                             precision="fp32", batch_size=64, params="", device_name="cpu",
                             process=process, trial=len(rows), status="ok",
                             throughput_samples_per_s=median * (1 + jitter * rng.standard_normal())))
    return pd.DataFrame(rows)


def test_compare_takes_the_process_as_its_unit():
    base = frame([100, 101, 99, 100.5])
    new = frame([80, 81, 79, 80.5], seed=1, run_id="r2")
    (row,) = compare(base, new).to_dict("records")
    assert row["unit"] == "process" and row["n_base"] == row["n_new"] == 4
    assert row["verdict"] == "slower"
    assert "per-process medians (4 vs 4 processes)" in row["note"]


def test_a_threshold_below_the_process_noise_cannot_fire():
    # Processes spread +-10% around their side's median; the sides differ by 8%: past a
    # 5% threshold, but not past 1.5x the configuration's own noise.
    base = frame([100, 112, 89, 104, 95], trials_per_process=5)
    new = frame([92, 103, 82, 96, 87], trials_per_process=5, seed=1, run_id="r2")
    (row,) = compare(base, new, threshold=0.05).to_dict("records")
    assert row["noise_pct"] > 5 and row["threshold_pct"] == pytest.approx(1.5 * row["noise_pct"])
    assert row["verdict"] != "slower"
    assert f"threshold {row['threshold_pct']:.3g}%, not 5%" in row["note"]
    # Within one process the trials are tight: trial as the unit would have called it.
    one = compare(base[base["process"] == 0], new[new["process"] == 0].assign(run_id="r1")).iloc[0]
    assert one["unit"] == "trial" and one["verdict"] == "slower"
    # (as two separate runs of one process each they rest on the run-to-run prior
    # instead: tests/test_compare_separate.py)


def test_quiet_processes_keep_the_threshold():
    base = frame([100, 100.5, 99.5, 100.2])
    new = frame([100.1, 100.4, 99.7, 100], seed=1, run_id="r2")
    (row,) = compare(base, new, threshold=0.05).to_dict("records")
    assert row["threshold_pct"] == 5.0 and row["verdict"] == "same"
    assert "threshold" not in row["note"]


def test_a_v2_file_reads_as_one_process(tmp_path):
    rows = frame([100, 101]).assign(schema_version=2, duration_s=1.0).drop(columns=["process"])
    for column in ("scenario", "exec", "world_size", "environment", "onnx_sha256", "threads",
                   "data", "device_index", "device_uuid", "rank", "started_utc", "git_commit"):
        rows[column] = None
    rows.to_csv(tmp_path / "trials.csv", index=False)
    trials = read_trials(tmp_path / "trials.csv")
    assert trials["process"].tolist() == [0] * 6
    assert set(trials["schema_version"]) == {SCHEMA_VERSION}


def test_a_v3_file_reads_as_throughput_with_no_accuracy_columns(tmp_path):
    rows = frame([100, 101]).assign(schema_version=3, duration_s=1.0, device_index=0,
                                    device_uuid=None)
    v4_only = ("target_accuracy", "epoch", "test_accuracy", "time_to_accuracy_s", "reached",
               "accuracy_ok")
    rows = rows.drop(columns=[c for c in v4_only if c in rows.columns])
    rows.to_csv(tmp_path / "trials.csv", index=False)
    trials = read_trials(tmp_path / "trials.csv")
    assert set(trials["schema_version"]) == {SCHEMA_VERSION} == {8}
    for column in v4_only:
        assert trials[column].isna().all()
    assert list(trials.columns[:len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)


def test_a_suite_entry_spreads_its_runs_over_processes_and_the_estimate_counts_them(tmp_path):
    import textwrap

    import yaml

    from gpubench.suite.config import parse_suite
    from gpubench.suite.estimate import FIXED_COST_S, run_cost

    text = textwrap.dedent("""\
        runs:
          - {workloads: mnist, backends: test-ok, trials: 2, warmup_s: 0.05,
             min_trial_s: 0.05, processes: 2, telemetry: none}
        """)
    (run,) = parse_suite(yaml.safe_load(text), tmp_path / "s.yaml")
    assert run_cost(run).seconds == pytest.approx(2 * (FIXED_COST_S["fork"] + 0.05 + 0.1))
    # Two runs of two processes each: the suite interleaves them, process by process.
    (tmp_path / "s.yaml").write_text(text.replace("test-ok", "test-logs-builds")
                                     .replace("mnist", "mnist, params: {hidden: [32, 64]}"))
    log = tmp_path / "builds.log"
    proc = run_cli("suite", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "-q",
                   env_extra={**PLUGIN_ENV, "GPUBENCH_TEST_MARK": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["hidden=32", "hidden=64", "hidden=32", "hidden=64"]
    (suite,) = (tmp_path / "out").iterdir()
    trials = read_trials(suite / "trials.csv")
    assert trials["run_id"].nunique() == 2
    for _, run in trials.groupby("run_id"):
        assert run["process"].tolist() == [0, 0, 1, 1] and (run["status"] == "ok").all()
        # One round per process (no repeats): compare pairs round k of one run with round
        # k of the other, and knows both came from this suite.
        assert run["round"].tolist() == [0, 0, 1, 1]
    suite_id = json.loads((suite / "run.json").read_text())["suite_id"]
    assert set(trials["suite_id"]) == {suite_id}


def test_a_suites_rounds_put_repeats_inside_process_rounds(tmp_path):
    """Two repeats of two processes: round = process x 2 + repeat, the order they ran in."""
    (tmp_path / "s.yaml").write_text(
        "runs:\n  - {workloads: mnist, backends: test-ok, trials: 1, warmup_s: 0.05,\n"
        "     min_trial_s: 0.05, processes: 2, repeats: 2, telemetry: none}\n")
    proc = run_cli("suite", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "-q",
                   env_extra=PLUGIN_ENV)
    assert proc.returncode == 0, proc.stderr
    (suite,) = (tmp_path / "out").iterdir()
    trials = read_trials(suite / "trials.csv")
    rounds = sorted(trials.groupby("run_id")["round"].apply(tuple))
    assert rounds == [(0, 2), (1, 3)]  # repeat 0 ran in rounds 0 and 2, repeat 1 in 1 and 3


def test_noise_from_the_history_sets_the_least_callable_change(tmp_path):
    """Two runs 8% apart, each of 4 tight processes: within the runs nothing says the
    machine drifts 8% between runs, so alone they are called `slower`; the history of
    that configuration (30 nights of 6% run-to-run noise) says it does."""
    from test_history import levels, night_rows, write_history

    from gpubench.results.compare import compare_paths

    rng = np.random.default_rng(3)
    write_history(tmp_path / "history", levels(30, rng, noise=0.10), merged=True)
    for name, level in (("base", 1000.0), ("new", 920.0)):
        rows = pd.concat([night_rows(40, level * (1 + 0.003 * i), rng, run_id=f"{name}")
                          .assign(process=i, trial=lambda f, i=i: f["trial"] + 3 * i)
                          for i in range(4)])
        (tmp_path / name).mkdir()
        rows.assign(schema_version=3).to_csv(tmp_path / name / "trials.csv", index=False)
    alone = compare_paths(tmp_path / "base", tmp_path / "new").table.iloc[0]
    assert alone["unit"] == "process" and alone["verdict"] == "slower"
    judged = compare_paths(tmp_path / "base", tmp_path / "new",
                           noise_from=[tmp_path / "history"]).table.iloc[0]
    assert 5.4 < judged["history_noise_pct"] < 15  # learned: 1.5x it is past the 8%
    assert judged["threshold_pct"] == pytest.approx(1.5 * judged["history_noise_pct"])
    assert judged["verdict"] != "slower"
    assert "run-to-run noise over its 30 past runs" in judged["note"]
    # A store with no run yet (the first night) is no history: said, not an error.
    (tmp_path / "empty").mkdir()
    first = compare_paths(tmp_path / "base", tmp_path / "new",
                          noise_from=[tmp_path / "empty"]).table.iloc[0]
    assert first["verdict"] == "slower" and "no past runs of this configuration" in first["note"]
    # The CLI takes it as --noise-from, repeatable.
    proc = run_cli("compare", str(tmp_path / "base"), str(tmp_path / "new"),
                   "--noise-from", str(tmp_path / "history"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"][0]["verdict"] == judged["verdict"]
