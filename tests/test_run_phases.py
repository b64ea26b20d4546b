"""Issue 29: where a run's time goes. run.json's phases_s (each phase from its event to
the next one's, on the monotonic clock), wall_s (their sum) and fixed_s (the wall time
less the warm-up and trial time the run asked for); a worker's run starts at its launch
(GPUBENCH_LAUNCHED_AT, else the worker process's start)."""

import json
import time
from pathlib import Path

import pytest

from conftest import FAST_RUN, PLUGIN_ENV, run_cli_here
from gpubench.measure.phases import (
    LAUNCHED_AT_ENV, TIMED_PHASES, PhaseClock, launched_at_env, worker_start_marks,
)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_each_phase_lasts_from_its_event_to_the_next_and_they_add_up_to_the_wall_time():
    clock, seen = FakeClock(), []
    timing = PhaseClock(lambda event, **f: seen.append(event),
                        [("launch", 99.0), ("imports", 99.5)], clock)
    steps = [(1.0, "phase", {"phase": "preflight"}), (0.5, "phase", {"phase": "prepare"}),
             (2.0, "prepare", {}),  # not a phase event: prepare goes on
             (0.25, "phase", {"phase": "checks"}), (0.25, "phase", {"phase": "telemetry"}),
             (0.5, "phase", {"phase": "scenario"}), (0.125, "warmup", {"seconds": 1}),
             (1.0, "trial", {"trial": 0}), (1.0, "trial", {"trial": 1}),  # trials go on
             (0.75, "phase", {"phase": "finish"})]
    for elapsed, event, fields in steps:
        if event is not None:
            timing(event, **fields)
        clock.t += elapsed
    timed = timing.record(requested_s=1.5)
    assert timed["phases_s"] == {"launch": 0.5, "imports": 0.5, "preflight": 1.0,
                                 "prepare": 2.5, "checks": 0.25, "telemetry": 0.25,
                                 "scenario": 0.5, "warmup": 0.125, "trials": 2.0,
                                 "writing": 0.75}
    assert list(timed["phases_s"]) == list(TIMED_PHASES)
    assert timed["wall_s"] == clock.t - 99.0 == sum(timed["phases_s"].values())
    assert timed["fixed_s"] == timed["wall_s"] - 1.5
    assert "prepare" in seen and seen.count("trial") == 2  # every event passed on


def test_a_run_in_this_process_starts_at_preflight_and_a_scenario_asking_no_time_has_no_fixed_cost():
    clock = FakeClock()
    timing = PhaseClock(lambda event, **f: None, clock=clock)
    assert timing.record() == {}  # nothing began: nothing to say
    timing("phase", phase="preflight")
    clock.t += 2.0
    timed = timing.record(requested_s=None)
    assert timed == {"phases_s": {"preflight": 2.0}, "wall_s": 2.0}


def test_a_worker_starts_at_the_parents_launch_and_its_imports_at_its_own_start():
    clock = FakeClock(50.0)
    env = launched_at_env(FakeClock(40.0))
    assert list(env) == [LAUNCHED_AT_ENV] == ["GPUBENCH_LAUNCHED_AT"]
    # started 6 s ago (at 44), launched at 40
    assert worker_start_marks(env, clock, lambda: 6.0) == [("launch", 40.0), ("imports", 44.0)]
    # forked ahead of the launch (a process that was waiting): its imports begin at it
    assert worker_start_marks(env, clock, lambda: 20.0) == [("launch", 40.0), ("imports", 40.0)]
    # no launch time given: from the process's start; nothing known: nothing
    assert worker_start_marks({}, clock, lambda: 6.0) == [("imports", 44.0)]
    assert worker_start_marks({LAUNCHED_AT_ENV: "x"}, clock, lambda: None) == []
    assert worker_start_marks(env, clock, lambda: None) == [("launch", 40.0), ("imports", 40.0)]


def test_this_processes_age_is_read_from_proc():
    from gpubench.measure.phases import _process_age_s
    age = _process_age_s()
    if not Path("/proc/self/stat").exists():
        assert age is None
        return
    assert age is not None and age >= 0


def _run_json(out: Path, *extra: str, env=None) -> dict:
    done = run_cli_here("run", "-w", "linreg", "-b", "test-ok", "--out", str(out), "--quiet",
                        *FAST_RUN, *extra, env_extra={**PLUGIN_ENV, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads((Path(done.stdout.splitlines()[0]) / "run.json").read_text())


def assert_phases_add_up(meta: dict, first: str) -> None:
    phases = meta["phases_s"]
    names = [p for p in TIMED_PHASES if p in phases]
    assert set(phases) == set(names) and names[0] == first, phases
    assert {"preflight", "prepare", "checks", "telemetry", "warmup", "trials",
            "writing"} <= set(names)
    assert all(s >= 0 for s in phases.values()), phases
    assert sum(phases.values()) == pytest.approx(meta["wall_s"], abs=1e-5)
    requested = 0.05 + 2 * 0.05  # FAST_RUN: --warmup-s, --trials x --min-trial-s
    assert meta["fixed_s"] == pytest.approx(meta["wall_s"] - requested, abs=1e-5)


def test_run_json_of_a_run_in_this_process_holds_its_phases(tmp_path):
    meta = _run_json(tmp_path, "--no-isolate")
    assert_phases_add_up(meta, "preflight")


@pytest.mark.parametrize("isolation", ["fork", "fresh"])
def test_run_json_of_a_worker_run_holds_its_launch_and_imports(tmp_path, isolation):
    """The process launcher gives its worker the launch time, forked or fresh."""
    meta = _run_json(tmp_path, "--isolation", isolation)
    assert meta["config"]["isolation"] == isolation
    assert_phases_add_up(meta, "launch")
    assert "imports" in meta["phases_s"]


def test_each_worker_process_of_a_run_keeps_its_own_phases(tmp_path):
    meta = _run_json(tmp_path, "--processes", "2")
    entries = meta["processes"]
    assert [e["process"] for e in entries] == [0, 1]
    for entry in entries:
        assert entry["phases_s"]["imports"] >= 0 and entry["wall_s"] > 0
        assert sum(entry["phases_s"].values()) == pytest.approx(entry["wall_s"], abs=1e-5)


# --- show and the suite's progress line print them, at 80 columns -------------------

TIMED = {"phases_s": {"launch": 0.012, "imports": 2.61, "preflight": 0.81, "prepare": 0.34,
                      "checks": 0.0001, "telemetry": 0.004, "scenario": 0.001, "warmup": 0.21,
                      "trials": 0.41, "writing": 0.12}, "wall_s": 4.5172, "fixed_s": 4.3672}


def test_time_lines_say_each_phase_in_order_and_break_between_phases_only():
    from gpubench.cli.run_time import time_lines
    from test_tables_at_80 import assert_fits

    parts = ["imports 2.6 s", "preflight 0.8 s", "prepare 0.3 s", "warm-up 0.2 s",
             "trials 0.4 s", "writing 0.1 s", "wall 4.5 s", "fixed 4.4 s"]
    for width in (80, 50):
        lines = time_lines(TIMED, width)
        assert lines[0].startswith("time: imports 2.6 s, preflight 0.8 s")
        if width == 80:
            assert_fits("\n".join(lines), parts)
        assert all(len(line) <= width for line in lines)
        text = " ".join(line.strip() for line in lines)
        assert [text.index(p) for p in parts] == sorted(text.index(p) for p in parts)
        assert "launch" not in text and "checks" not in text  # under 0.05 s: the wall holds them
    assert time_lines({"stop_reason": "fixed_trials"}, 80) == []  # an older run.json


def test_suite_progress_line_says_where_the_last_runs_time_went_within_80_columns():
    from gpubench.cli.progress import suite_progress
    from test_cli_presentation import _fake_console

    console = _fake_console(80)
    with suite_progress(True, 2, console=console) as progress:
        progress("run_start", index=0, label="linreg test-ok", device=0)
        progress("run_done", index=0, label="linreg test-ok", status="ok", **TIMED)
    lines = [line.split("\r")[-1].replace("\x1b[2K", "").replace("\x1b[1A", "")
             for line in console.file.getvalue().splitlines()]
    shown = [line for line in lines if line.startswith("last run 4.5 s: ")]
    assert shown and all(len(line) <= 80 for line in lines), lines
    # the longest phases stay, in the run's order, when not all fit
    assert shown[-1].startswith("last run 4.5 s: imports 2.6 s, preflight 0.8 s, prepare 0.3 s")


def test_show_prints_a_runs_time_under_its_table_at_80_columns(tmp_path):
    meta = _run_json(tmp_path)
    folder = next(tmp_path.glob("*/run.json")).parent
    shown = run_cli_here("show", str(folder), columns=80)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("time: ")]
    assert len(at) == 1, shown.stdout
    block = [lines[at[0]]] + [l for l in lines[at[0] + 1:] if l.startswith("      ")]
    assert all(len(line) <= 80 for line in block), block
    text = " ".join(line.strip() for line in block)
    assert f"wall {meta['wall_s']:.1f} s" in text
    assert f"trials {meta['phases_s']['trials']:.1f} s" in text


def test_a_suites_run_done_event_carries_the_runs_time(tmp_path):
    from gpubench.results.reader import read_timing

    _run_json(tmp_path)
    folder = next(tmp_path.glob("*/run.json")).parent
    timed = read_timing(folder)
    assert set(timed) == {"phases_s", "wall_s", "fixed_s"}
    assert read_timing(tmp_path) == {}  # no run.json: nothing to say
    (tmp_path / "run.json").write_text("{not json")
    assert read_timing(tmp_path) == {}


# --- cuts: what a tiny run spent that was not measuring --------------------------------

def test_the_median_interval_rank_is_scipys_binomial_one_without_scipy():
    """Cut 1: the worker's summary took ~0.1 s importing scipy.special for bdtr; the
    exact integer CDF gives the same ranks (so the same intervals in summary.csv)."""
    import numpy as np
    from scipy.special import bdtr

    from gpubench.stats import median_ci_rank

    def with_scipy(n, confidence):
        tail = (1.0 - confidence) / 2.0
        ok = np.flatnonzero(bdtr(np.arange(n), n, 0.5) <= tail * (1 + 1e-12))
        return int(ok[-1]) + 1 if ok.size else None

    for confidence in (0.95, 0.99, 0.9, 0.5):
        for n in range(1, 1200):
            assert median_ci_rank(n, confidence) == with_scipy(n, confidence), (n, confidence)
    assert median_ci_rank(0) is None and median_ci_rank(5) is None and median_ci_rank(6) == 1


WORKER_SIDE = """
import sys
from pathlib import Path
from gpubench.plugins import import_env_plugins
import_env_plugins()
from gpubench.measure.request import request_from
from gpubench.measure.runner import execute_run
for trials in (2, 7):  # below and above the fewest trials with a 95% interval
    req = request_from({"workload": "linreg", "backend": "test-ok", "trials": trials,
                        "warmup_s": 0.02, "min_trial_s": 0.01, "out": Path(sys.argv[1])})
    assert execute_run(req).status == "ok"
print(sorted(m for m in ("scipy", "scipy.special", "scipy.stats") if m in sys.modules))
"""


def test_a_run_imports_no_scipy(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, **PLUGIN_ENV}
    done = subprocess.run([sys.executable, "-c", WORKER_SIDE, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_worker_imports_its_framework_as_part_of_its_imports_phase(monkeypatch):
    """Attribution: a torch worker's ~0.8 s importing torch read as preflight (the first
    question asked of the backend); the worker imports the framework first."""
    import importlib

    from gpubench.launch import worker

    imported = []
    monkeypatch.setattr(importlib, "import_module", imported.append)
    worker.import_framework("torch-cpu")
    assert imported == ["torch"]
    imported.clear()
    for backend in ("auto", "no-such-backend"):  # preflight resolves and refuses these
        worker.import_framework(backend)
    assert imported == []


@pytest.mark.parametrize("backend, finalized", [("test-exit-hooks", False),
                                                ("test-exit-hooks-child", True)])
def test_a_worker_ends_without_pythons_finalization_unless_it_started_processes(
        tmp_path, backend, finalized):
    """Cut: a torch worker's interpreter teardown took ~0.6 s after run.json was written.
    The worker now exits at once, its output flushed (worker.log keeps it), its folder
    whole; one that left a child process running exits normally (atexit stops it)."""
    mark = tmp_path / "mark"
    done = run_cli_here("run", "-w", "linreg", "-b", backend, "--out", str(tmp_path / "out"),
                        "--quiet", *FAST_RUN,
                        env_extra={**PLUGIN_ENV, "GPUBENCH_TEST_MARK": str(mark)})
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.splitlines()[0])
    assert {"trials.csv", "summary.csv", "run.json"} <= {p.name for p in folder.iterdir()}
    assert "printed while preparing, never flushed" in (folder / "worker.log").read_text()
    assert mark.exists() == finalized


def test_a_suites_run_done_event_carries_its_runs_phases(tmp_path, monkeypatch):
    from gpubench.plugins import import_env_plugins
    from gpubench.suite import executor, plan as suite_plan

    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)
    import_env_plugins()
    config = tmp_path / "tiny.yaml"
    config.write_text("defaults: {trials: 2, warmup_s: 0.05, min_trial_s: 0.05, telemetry: none}\n"
                      "runs:\n  - workloads: linreg\n    backends: test-ok\n")
    plan = suite_plan.plan_suite(config, tmp_path / "out")
    suite = executor.open_suite_folder(plan, tmp_path / "out", {})
    events = []
    executor.execute_suite(plan, suite, [0], progress=lambda e, **f: events.append((e, f)))
    done = [f for e, f in events if e == "run_done"]
    assert len(done) == 1 and done[0]["status"] == "ok"
    assert {"imports", "trials", "writing"} <= set(done[0]["phases_s"])
    assert done[0]["wall_s"] == pytest.approx(sum(done[0]["phases_s"].values()), abs=1e-5)


def test_a_worker_run_writes_the_same_files_and_columns_as_a_run_in_this_process(tmp_path):
    """The cuts (no scipy, the framework imported first, no finalization) change what a
    worker spends, never what it writes: its folder holds the files and columns that a
    run in this process writes (worker.log aside), summary CIs included (7 trials)."""
    import csv

    def folder_of(*extra):
        done = run_cli_here("run", "-w", "linreg", "-b", "test-ok", "--out", str(tmp_path),
                            "--quiet", "--trials", "7", "--warmup-s", "0.02",
                            "--min-trial-s", "0.01", *extra, env_extra=PLUGIN_ENV)
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.splitlines()[0])

    def header(path):
        with open(path, newline="") as f:
            return next(csv.reader(f))

    worker, inline = folder_of(), folder_of("--no-isolate")
    files = {p.name for p in worker.iterdir()} - {"worker.log"}
    assert files == {p.name for p in inline.iterdir()}
    for name in sorted(f for f in files if f.endswith(".csv")):
        assert header(worker / name) == header(inline / name), name
    with open(worker / "summary.csv", newline="") as f:
        ci = next(csv.DictReader(f))["throughput_samples_per_s_ci_low"]
    assert ci and float(ci) > 0  # 7 trials: the interval exists
    metas = [json.loads((f / "run.json").read_text()) for f in (worker, inline)]
    assert set(metas[0]) == set(metas[1])
    # a worker's run starts at its launch (GPUBENCH_LAUNCHED_AT), one in this process at preflight
    assert set(metas[0]["phases_s"]) - set(metas[1]["phases_s"]) == {"launch", "imports"}


def test_a_long_runs_time_reads_in_whole_seconds_and_still_fits():
    from gpubench.cli.run_time import compact_time, time_lines

    long = {"phases_s": {"imports": 1.2, "warmup": 120.4, "trials": 3600.2, "writing": 0.3},
            "wall_s": 3722.1, "fixed_s": 1.5}
    assert compact_time(long, 80) == ("last run 3,722 s: imports 1.2 s, warm-up 120 s, "
                                      "trials 3,600 s, writing 0.3 s")
    assert compact_time(long, 40) == "last run 3,722 s: trials 3,600 s"  # the longest stays
    assert compact_time(long, 10) == "last run 3,722 s"  # nothing cut: the wall alone
    assert "trials 3,600 s" in " ".join(time_lines(long, 80))
