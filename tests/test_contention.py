"""Contention (telemetry/contention.py): trials that ran slow against the calibration,
beside other processes' CPU use (psutil accounts) or beside other compute processes on
the GPU (NVML's process list) are marked `contended`, say why in run.json and warn;
compare leaves them out unless --include-contended.

The decisions are tested on a fake clock with fake CPU accounts (no wall-clock
assertion); one test runs torch-cpu beside real busy loops and asserts only the flag;
the GPU test runs through the NVML test double."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gpubench.backends import DeviceInfo, Step, StepTimer
from gpubench.measure import protocol
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.scenarios.throughput import ThroughputScenario
from gpubench.results.compare import compare
from gpubench.results.reader import read_trials
from gpubench.results.schema import MEASURED_COLUMNS, TRIAL_COLUMNS
from gpubench.telemetry import NullSampler, Sampler
from gpubench.telemetry import contention
from gpubench.telemetry.aggregate import CpuReading, others_cpu
from gpubench.telemetry.contention import (
    CPU_MIN_WINDOW_S, CPU_OTHERS_MACHINE_SHARE, SLOW_TRIAL_FACTOR, ContentionJudge,
    ContentionWatch, cpu_contended,
)
from gpubench.telemetry.cpu import busy_seconds
from gpubench.telemetry.errors import NotAvailable, TelemetryError

from nvml_double import FAST, fake_nvml_dir, run_cli  # noqa: F401  (fixture)

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# --- the CPU accounts -------------------------------------------------------------------

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_busy_seconds_leave_out_idle_iowait_and_the_guest_time_user_already_holds():
    times = Times(user=10.0, nice=1.0, system=2.0, idle=100.0, iowait=5.0, irq=0.5,
                  softirq=0.5, steal=3.0, guest=4.0, guest_nice=1.0)
    # user 10 (guest 4 inside it), nice 1 (guest_nice 1 inside it), system, irqs, steal
    assert busy_seconds(times) == pytest.approx(10 + 1 + 2 + 0.5 + 0.5 + 3)


def test_others_use_is_the_machine_busy_time_less_this_process():
    begin = CpuReading(t_s=10.0, machine_busy_s=100.0, own_s=50.0)
    end = CpuReading(t_s=12.0, machine_busy_s=104.0, own_s=52.0)  # 4 CPU-s busy, 2 ours
    facts = others_cpu(begin, end, cpus=2)
    assert facts == {"others_cores": 1.0, "own_cores": 1.0, "window_s": 2.0, "cpus": 2}
    # ticks split differently between the files: never a negative neighbour
    assert others_cpu(begin, CpuReading(12.0, 101.9, 52.0), 2)["others_cores"] == 0.0
    assert others_cpu(begin, CpuReading(10.0, 101.0, 50.0), 2) is None  # no time passed


def facts(others, own=1.0, cpus=2, window=1.0):
    return {"others_cores": others, "own_cores": own, "window_s": window, "cpus": cpus}


def test_cpu_rule():
    assert cpu_contended(facts(1.0)) is True  # a busy loop beside a run on 2 CPUs
    assert cpu_contended(facts(0.2)) is False  # background daemons
    assert cpu_contended(None) is None
    assert cpu_contended(facts(1.0, window=CPU_MIN_WINDOW_S / 2)) is None  # ticks too coarse
    # a big machine: a GPU run (one core of its own) beside 8 busy cores is not
    # contended, beside a quarter of the machine it is
    assert cpu_contended(facts(8.0, own=1.0, cpus=64)) is False
    assert cpu_contended(facts(CPU_OTHERS_MACHINE_SHARE * 64, own=1.0, cpus=64)) is True
    # a CPU backend on every core loses to any neighbour above the floor
    assert cpu_contended(facts(0.6, own=60.0, cpus=64)) is True
    assert cpu_contended(facts(0.3, own=60.0, cpus=64)) is False


# --- the slow test ----------------------------------------------------------------------

def test_first_trial_is_judged_against_the_calibration():
    judge = ContentionJudge()
    judge.expect(0.001)
    first = judge.judge(0, 1000, 2.0)  # 2x the calibrated 1 s
    assert first["contended"] is True and first["fired"] == ["slow"]
    assert first["tests"]["slow"]["ratio"] == pytest.approx(2.0)
    quiet = ContentionJudge()
    quiet.expect(0.001)
    assert quiet.judge(0, 1000, 1.1)["contended"] is False


def test_trials_too_short_to_tell_are_not_judged_slow():
    judge = ContentionJudge()
    judge.expect(0.0001)
    short = judge.judge(0, 1000, 0.18)  # 1.8x calibrated, but 0.18 s: one hiccup's worth
    assert "slow" not in short["tests"] and short["contended"] is None
    assert judge.judge(1, 1000, 0.4)["contended"] is True  # long enough to tell: 4x


def test_slow_trial_against_the_median_of_the_trials_before_it():
    judge = ContentionJudge()
    judge.expect(0.001)
    seconds = [1.0, 1.02, 0.98, 2.0, 1.2, 1.01]
    flags = [judge.judge(i, 1000, s)["contended"] for i, s in enumerate(seconds)]
    assert flags == [False, False, False, True, False, False]


def test_a_lasting_slowdown_becomes_the_reference():
    # clocks settling 1.6x lower for good: the first slow trials are flagged, then the
    # reference follows (throttled says why); never every trial after the change
    judge = ContentionJudge()
    judge.expect(0.001)
    flags = [judge.judge(i, 1000, s)["contended"] for i, s in enumerate([1.0] * 3 + [1.6] * 9)]
    assert flags[:3] == [False] * 3 and flags[3] is True
    assert not any(flags[-5:])


def test_nothing_to_judge_is_empty_not_false():
    judge = ContentionJudge()  # no calibration, no CPU account, no GPU
    assert judge.judge(0, 10, 1.0)["contended"] is None


# --- the GPU test (a fake NVML device; the double is below) -------------------------------

class FakeGpu:
    def __init__(self, pids, error=None):
        self.pids, self.error = pids, error

    def compute_processes(self):
        if self.error:
            raise self.error
        return [(pid, 1 << 20) for pid in self.pids]


def one_trial(watch, seconds=1.0):
    watch.expect(None)
    watch.begin_trial(0)
    watch.end_trial()
    return watch.trial_verdict(0, 100, seconds), watch.records[-1]


def test_other_compute_process_on_the_gpu():
    flag, record = one_trial(ContentionWatch(NullSampler(), True, cpu=None,
                                             gpu_device=FakeGpu([100, 4242]), own_pid=100))
    assert flag is True and record["fired"] == ["gpu"]
    assert record["tests"]["gpu"]["others"] == 1 and record["tests"]["gpu"]["listed_pids"] == [4242]
    flag, record = one_trial(ContentionWatch(NullSampler(), True, cpu=None,
                                             gpu_device=FakeGpu([100]), own_pid=100))
    assert flag is False and record["tests"]["gpu"]["others"] == 0


def test_pids_of_another_namespace_take_one_for_this_run():
    # this process missing from the list while its step runs on the GPU: one listed
    # process is the run's own (host PIDs in a container); only a second one flags
    alone = ContentionWatch(NullSampler(), True, cpu=None, gpu_device=FakeGpu([7001]), own_pid=100)
    assert one_trial(alone)[0] is False
    two = ContentionWatch(NullSampler(), True, cpu=None, gpu_device=FakeGpu([7001, 7002]),
                          own_pid=100)
    assert one_trial(two)[0] is True
    # a CPU step watched with NVML is not on the list at all: every listed one counts
    cpu_step = ContentionWatch(NullSampler(), False, cpu=None, gpu_device=FakeGpu([7001]),
                               own_pid=100)
    assert one_trial(cpu_step)[0] is True


def test_a_process_list_that_is_not_supported_is_not_a_test_and_not_an_error():
    watch = ContentionWatch(NullSampler(), True, cpu=None,
                            gpu_device=FakeGpu([], NotAvailable("compute processes: Not Supported")))
    flag, record = one_trial(watch)
    assert flag is None and "gpu" not in record["tests"]
    assert "Not Supported" in watch.record()["unavailable"]["gpu"]
    failing = ContentionWatch(NullSampler(), True, cpu=None,
                              gpu_device=FakeGpu([], TelemetryError("GPU is lost")))
    assert one_trial(failing)[0] is None and failing.record()["errors"]["gpu"]["count"] == 2


# --- the throughput scenario on a fake clock, with fake CPU accounts ----------------------

class _Timer(StepTimer):
    def __init__(self, n):
        self.values = np.zeros(n)

    def latencies_s(self):
        return self.values


class Machine:
    """A fake machine: a clock that the protocol and the contention readings read
    (monkeypatched), this process using one core while it runs steps, and a neighbour
    using `neighbour_cores` meanwhile. `slowdown` stretches each step."""

    def __init__(self, monkeypatch, cpus=2):
        self.now_s, self.own_s, self.others_s, self.cpus = 0.0, 0.0, 0.0, cpus
        self.neighbour_cores, self.slowdown = 0.0, 1.0
        self.read_cost_s = 0.0  # what one CPU reading costs (outside the timing)
        monkeypatch.setattr(protocol, "clock", lambda: self.now_s)
        monkeypatch.setattr(contention, "clock", lambda: self.now_s)

    def advance(self, seconds):
        self.now_s += seconds
        self.own_s += seconds
        self.others_s += seconds * self.neighbour_cores

    def read(self):  # CpuAccount's interface
        self.advance(self.read_cost_s)
        return self.own_s + self.others_s, self.own_s


class MachineStep(Step):
    device = DeviceInfo("cpu", None, "test")

    def __init__(self, machine, cost_s=0.001):
        self.machine, self.cost_s = machine, cost_s

    def make_timer(self, iterations):
        return _Timer(iterations)

    def run(self, iterations, timer=None):
        self.machine.advance(iterations * self.cost_s * self.machine.slowdown)

    def synchronize(self):
        pass


def run_scenario(monkeypatch, neighbour=None, slowdown=None, trials=5, read_cost_s=0.0):
    """ThroughputScenario.run on the fake machine; `neighbour` / `slowdown` map a trial
    number to the neighbour's cores / the step's slowdown during it."""
    machine = Machine(monkeypatch)
    machine.read_cost_s = read_cost_s
    monkeypatch.setattr(contention, "open_cpu_account", lambda: (machine, None))
    neighbour, slowdown = neighbour or {}, slowdown or {}

    def progress(event, **fields):
        if event == "trial":
            machine.neighbour_cores = neighbour.get(fields["trial"], 0.0)
            machine.slowdown = slowdown.get(fields["trial"], 1.0)

    from gpubench.workloads import resolve_workload

    rows = []
    request = RunRequest("linreg", "test", mode="infer", batch_size=1,
                         protocol=ProtocolConfig(trials=trials, warmup_s=0.05, min_trial_s=0.5))
    ctx = ScenarioContext(MachineStep(machine), request, resolve_workload("linreg"), 1, None,
                          NullSampler(), progress, rows.append)
    stop, extra = ThroughputScenario().run(ctx)
    return rows, extra


def test_a_trial_beside_another_process_using_the_cpu_is_contended(monkeypatch):
    rows, extra = run_scenario(monkeypatch, neighbour={2: 1.0})
    assert [r["contended"] for r in rows] == [False, False, True, False, False]
    record = extra["contention"]["trials"][2]
    assert record["fired"] == ["cpu"]
    assert record["tests"]["cpu"]["others_cores"] == pytest.approx(1.0)
    assert record["tests"]["cpu"]["cpus"] == 2
    assert all(r["tests"]["cpu"]["others_cores"] == pytest.approx(0.0)
               for i, r in enumerate(extra["contention"]["trials"]) if i != 2)
    warning, = extra["warnings"]
    assert warning.startswith("1 of 5 trials ran under contention (trial 2: others used 1.0 of "
                              "2 CPUs)") and "--include-contended" in warning


def test_a_neighbour_on_the_cpus_suggests_fewer_threads(monkeypatch):
    # issue 28 finding 10: a busy 2-CPU machine ran 50x slower with the default threads
    _, extra = run_scenario(monkeypatch, neighbour={1: 1.0, 2: 1.0})
    warning, = extra["warnings"]
    assert "--threads N, fewer than the machine's 2, leaves them room" in warning
    _, slow_only = run_scenario(monkeypatch, slowdown={0: 2.0})  # not the CPUs: no hint
    assert "--threads" not in slow_only["warnings"][0]


def test_the_table_title_says_how_many_trials_were_contended():
    # issue 28 finding 10: run's and show's table mark a contended run, not only stderr
    import io

    from gpubench.cli.result_table import summary_table
    from gpubench.results.summary import summarize
    from rich.console import Console

    def text(trials):
        table, _ = summary_table(summarize(trials), trials=trials, width=80)
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(table)
        return console.export_text()

    assert "3/4 trials contended" in text(make_trials([100.0, 90.0, 80.0, 101.0],
                                                      [True, True, False, True]))
    assert "contended" not in text(make_trials([100.0, 90.0], [False, False]))


def test_a_trial_twice_the_calibrated_time_is_contended(monkeypatch):
    rows, extra = run_scenario(monkeypatch, slowdown={0: 2.0, 3: 2.0})
    assert [r["contended"] for r in rows] == [True, False, False, True, False]
    trials = extra["contention"]["trials"]
    assert [t["fired"] for t in trials] == [["slow"], [], [], ["slow"], []]
    assert extra["contention"]["calibrated_s_per_iter"] == pytest.approx(0.001)
    assert trials[0]["tests"]["slow"]["ratio"] == pytest.approx(2.0)
    assert "trial 0: 2.0x the reference time per iteration" in extra["warnings"][0]


def test_a_quiet_run_has_no_contended_trial_and_no_warning(monkeypatch):
    rows, extra = run_scenario(monkeypatch)
    assert [r["contended"] for r in rows] == [False] * 5
    assert extra["warnings"] == []
    assert all(set(t["tests"]) == {"slow", "cpu"} for t in extra["contention"]["trials"])
    assert extra["contention"]["rules"]["slow_trial_factor"] == SLOW_TRIAL_FACTOR
    assert "gpu" in extra["contention"]["unavailable"]  # no NVML here


def test_the_readings_are_outside_the_timed_region(monkeypatch):
    # each CPU reading costs a whole second of the fake clock: no trial pays for it
    rows, _ = run_scenario(monkeypatch, read_cost_s=1.0, trials=3)
    for row in rows:
        assert row["duration_s"] == pytest.approx(row["iterations"] * 0.001)
        assert row["contended"] is False


class OrderSampler(Sampler):
    name = "order"

    def __init__(self, events):
        self.events = events

    def start(self):
        pass

    def stop(self):
        pass

    def begin_trial(self, trial):
        self.events.append("sampler begin")

    def end_trial(self):
        self.events.append("sampler end")
        return {"power_avg_w": 1.0}


class OrderCpu:
    cpus = 2

    def __init__(self, events):
        self.events = events

    def read(self):
        self.events.append("cpu")
        return 0.0, 0.0


class OrderGpu:
    def __init__(self, events):
        self.events = events

    def compute_processes(self):
        self.events.append("gpu")
        return []


def test_the_gpu_reading_is_outside_the_samplers_bracket():
    # NVML's process list (a driver call) stays out of the sampler's energy window; the
    # CPU accounts are read just inside it, so the CPU window is the trial's
    events = []
    watch = ContentionWatch(OrderSampler(events), False, cpu=OrderCpu(events),
                            gpu_device=OrderGpu(events))
    watch.begin_trial(0)
    events.append("timed steps")
    assert watch.end_trial() == {"power_avg_w": 1.0}  # the sampler's columns, unchanged
    assert events == ["gpu", "sampler begin", "cpu", "timed steps", "cpu", "sampler end", "gpu"]


def test_contended_is_a_measured_column():
    assert "contended" in MEASURED_COLUMNS and "contended" in ThroughputScenario.columns


# --- compare --------------------------------------------------------------------------

def make_trials(values, contended=None, run_id="r1", schema_version=2):
    rows = []
    for i, v in enumerate(values):
        row = {c: np.nan for c in TRIAL_COLUMNS}
        row.update(run_id=run_id, workload="mnist", backend="torch-cuda", mode="train",
                   precision="fp32", batch_size=64, params="", device_index=0,
                   device_name="Test GPU", device_uuid="GPU-1", driver_version="535.1",
                   framework="torch", framework_version="2.3", gpubench_version="0.1.0",
                   schema_version=schema_version, host="box", trial=i, iterations=100,
                   samples=6400, duration_s=6400 / v, throughput_samples_per_s=v,
                   status="ok")
        if contended is not None:
            row["contended"] = contended[i]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def noisy(n, mean, seed):
    return list(mean * (1 + 0.01 * np.random.default_rng(seed).standard_normal(n)))


def base_and_new():
    base = make_trials(noisy(8, 1000, 1), [False] * 8)
    # the new side: 6 quiet trials like the base, and 8 that ran beside a neighbour
    new = make_trials(noisy(6, 1000, 2) + noisy(8, 500, 3), [False] * 6 + [True] * 8)
    return base, new


def test_compare_leaves_contended_trials_out_and_counts_them():
    base, new = base_and_new()
    row = compare(base, new).iloc[0]
    assert row["n_base"] == 8 and row["n_new"] == 6
    assert row["verdict"] == "same"
    assert "new: 8 contended trials left out (--include-contended keeps them)" in row["note"]
    kept = compare(base, new, include_contended=True).iloc[0]
    assert kept["n_new"] == 14 and kept["verdict"] == "slower"
    assert "new: 8 contended trials kept (--include-contended)" in kept["note"]


def test_a_side_with_only_contended_trials_says_so():
    base, _ = base_and_new()
    new = make_trials(noisy(5, 500, 4), [True] * 5)
    row = compare(base, new).iloc[0]
    assert row["n_new"] == 0 and row["verdict"] == "inconclusive"
    assert "new: 5 contended trials left out" in row["note"]
    assert "no ok trial" not in row["note"]


def test_unjudged_rows_count(tmp_path):
    # v1 rows (the fixture) migrate with `contended` empty, and empty rows are kept
    v1 = read_trials(FIXTURES / "v1_run" / "trials.csv")
    assert "contended" in v1.columns and v1["contended"].isna().all()
    assert len(compare(v1, v1).query("verdict != 'base_only'")) == 1
    assert compare(v1, v1).iloc[0]["n_new"] == len(v1)
    base, _ = base_and_new()
    empty = make_trials(noisy(6, 1000, 5), [None] * 6)
    assert compare(base, empty).iloc[0]["n_new"] == 6


@pytest.fixture
def cli_here(capsys):
    from gpubench.cli import main

    def call(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return call


def test_compare_cli_include_contended(tmp_path, cli_here):
    base, new = base_and_new()
    new["contended"] = new["contended"].astype(object)
    new.loc[0, "contended"] = None  # a row not judged: counts, and the file still reads
    for name, frame in (("base", base), ("new", new)):
        (tmp_path / name).mkdir()
        frame.to_csv(tmp_path / name / "trials.csv", index=False)
    assert "True" in (tmp_path / "new" / "trials.csv").read_text()
    default = cli_here("compare", tmp_path / "base", tmp_path / "new", "--format", "json")
    assert default.returncode == 0, default.stderr
    row, = json.loads(default.stdout)["rows"]
    assert row["verdict"] == "same" and row["n_new"] == 6  # 5 quiet + the unjudged one
    assert "new: 8 contended trials left out" in row["note"]
    kept = cli_here("compare", tmp_path / "base", tmp_path / "new", "--include-contended",
                    "--format", "json")
    assert kept.returncode == 1, kept.stdout  # the contended trials make it a regression
    row, = json.loads(kept.stdout)["rows"]
    assert row["verdict"] == "slower" and row["n_new"] == 14


# --- for real ---------------------------------------------------------------------------

def test_torch_cpu_beside_busy_loops_is_contended(tmp_path):
    """A real run beside real load: only the flag is asserted, never a time."""
    pytest.importorskip("torch")
    import psutil

    from gpubench.measure.runner import execute_run

    loops = max(1, math.ceil(CPU_OTHERS_MACHINE_SHARE * (psutil.cpu_count() or 1) * 1.2))
    spin = "print('spinning', flush=True)\nwhile True: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
               for _ in range(loops)]
    try:
        for proc in burners:  # each spins before the run starts, however slow its start-up
            assert proc.stdout.readline() == "spinning\n"
        outcome = execute_run(RunRequest(
            "linreg", "torch-cpu", telemetry="none", threads=1, out_dir=tmp_path,
            protocol=ProtocolConfig(trials=2, warmup_s=0.1, min_trial_s=0.5)))
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    assert outcome.status == "ok"
    assert outcome.trials["contended"].astype(str).eq("True").all(), outcome.trials["contended"]
    meta = json.loads((outcome.path / "run.json").read_text())
    assert all("cpu" in t["fired"] for t in meta["contention"]["trials"])
    assert any("ran under contention" in w for w in outcome.warnings)


def test_other_process_on_the_gpu_through_the_nvml_double(fake_nvml_dir, tmp_path):
    args = ["--workload", "linreg", "--backend", "fake-cuda", *FAST]
    busy = run_cli(fake_nvml_dir, tmp_path / "busy", args, fake_cuda=True,
                   PROCESSES="self:1048576,4242:1048576")
    assert busy.proc.returncode == 0, busy.proc.stderr
    assert busy.trials["contended"].astype(str).eq("True").all()
    records = busy.run_json["contention"]["trials"]
    assert all("gpu" in t["fired"] and t["tests"]["gpu"]["listed_pids"] == [4242]
               for t in records)
    assert "ran under contention" in busy.proc.stderr
    assert "1 other process on the GPU" in busy.proc.stderr
    alone = run_cli(fake_nvml_dir, tmp_path / "alone", args, fake_cuda=True,
                    PROCESSES="self:1048576")
    assert alone.proc.returncode == 0, alone.proc.stderr
    # only the GPU test is asserted: this machine's own load may trip the others
    records = alone.run_json["contention"]["trials"]
    assert records
    for t in records:
        assert t["tests"]["gpu"]["fired"] is False and t["tests"]["gpu"]["others"] == 0
        assert t["tests"]["gpu"]["own_listed"] is True
