"""The clock and power policy (--lock-clocks, --power-limit; telemetry/clock_policy.py)
through the real CLI against the NVML test double, whose locked clocks and power limit
live in a state file (FAKE_NVML_STATE_FILE) that the launcher's parent, its worker and
this test all read: set before the run and restored after it, also when the worker is
killed or crashes and when the parent gets SIGTERM or Ctrl-C; bad input refused with
the GPU untouched; a suite's power_limits axis and the report's chart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nvml_double import call_log, double_env, fake_nvml_dir  # noqa: F401

LINREG = ("--workload", "linreg", "--backend", "torch-cpu", "--telemetry", "nvml",
          "--threads", "1")
FAST = ("--trials", "2", "--warmup-s", "0.1", "--min-trial-s", "0.1")
SLOW = ("--trials", "40", "--warmup-s", "0.1", "--min-trial-s", "0.3")  # to interrupt
ORIGINAL = "0 350000 -1 -1"  # the board's limit, 350 W, no clocks locked
SETTERS = ("nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetGpuLockedClocks",
           "nvmlDeviceResetGpuLockedClocks")


class Gpu:
    """The double's scripted GPU, its state file and call log, and gpubench's record dir."""

    def __init__(self, lib: Path, tmp: Path, **fake) -> None:
        self.tmp, self.state, self.log = tmp, tmp / "nvml-state", tmp / "nvml-calls.log"
        self.records = tmp / "gpubench-state"
        self.env = double_env(lib, STATE_FILE=self.state, CALL_LOG=self.log,
                              POWER_LIMIT_W=350, **fake)
        self.env["GPUBENCH_STATE_DIR"] = str(self.records)

    def cmd(self, *args: str, command: str = "run") -> list:
        return [sys.executable, "-m", "gpubench", command, *args]

    def run(self, *args: str, out: str = "out", command: str = "run") -> subprocess.CompletedProcess:
        extra = ("--out", str(self.tmp / out), "-q") if command == "run" else ()
        return subprocess.run(self.cmd(*args, *extra, command=command), env=self.env,
                              capture_output=True, text=True, timeout=300)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*args, "--out", str(self.tmp / "out"), "-q"),
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    def state_text(self) -> str:
        return self.state.read_text().strip() if self.state.exists() else ""

    def setters(self) -> list:
        return [fn for fn, _ in call_log(self.log) if fn in SETTERS]

    def wait_for_state(self, wanted: str, proc: subprocess.Popen, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.state_text() != wanted:
            assert proc.poll() is None, f"gpubench ended first: {proc.communicate()}"
            assert time.monotonic() < deadline, f"state {self.state_text()!r}"
            time.sleep(0.05)

    def folder(self) -> Path:
        (folder,) = [p for p in (self.tmp / "out").iterdir() if p.is_dir()]
        return folder

    def leftover_records(self) -> list:
        folder = self.records / "clock-policy"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def gpu(fake_nvml_dir, tmp_path):  # noqa: F811
    return Gpu(fake_nvml_dir, tmp_path)


def test_set_and_restore_recorded_in_rows_and_run_json(gpu):
    done = gpu.run(*LINREG, *FAST, "--power-limit", "250", "--lock-clocks", "1500")
    assert done.returncode == 0, done.stderr
    # set in the parent before the worker, restored after: unlock, then the limit read
    # before (350 W, not merely the board's default)
    assert gpu.setters() == ["nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetGpuLockedClocks",
                             "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceSetPowerManagementLimit"]
    assert gpu.state_text() == ORIGINAL
    assert gpu.leftover_records() == []
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "ok").all()
    assert (trials["power_limit_w"] == 250).all() and (trials["lock_clocks"] == 1500).all()
    assert (trials["enforced_power_limit_w"] == 250).all()  # read back in the worker
    assert (trials["locked_sm_clock_mhz"] == 1500).all()
    assert (trials["sm_clock_mhz"] == 1500).all()  # the double's clock obeys the lock
    policy = json.loads((gpu.folder() / "run.json").read_text())["clock_policy"]
    assert policy["asked"] == {"lock_clocks": "1500", "power_limit_w": 250.0}
    assert policy["before"] == {"power_limit_w": 350.0}
    assert policy["constraints_w"] == [200.0, 700.0]
    assert policy["set"] == {"power_limit_w": 250.0, "locked_sm_clock_mhz": 1500}
    assert policy["restored"] == {"clocks": "unlocked", "power_limit_w": 350.0}


def test_without_a_policy_rows_carry_the_enforced_limit_and_nothing_is_set(gpu):
    done = gpu.run(*LINREG, *FAST)
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert (trials["enforced_power_limit_w"] == 350).all()
    assert trials["locked_sm_clock_mhz"].isna().all()
    assert trials["power_limit_w"].isna().all() and trials["lock_clocks"].isna().all()
    assert gpu.setters() == [] and gpu.state_text() == ""
    assert "clock_policy" not in json.loads((gpu.folder() / "run.json").read_text())


@pytest.mark.parametrize("ask,mhz", [("max", 1980), ("base", 1755)])
def test_max_and_base_in_process(gpu, ask, mhz):
    """--no-isolate: the inline launcher sets and restores around the run in this process;
    max is the max SM clock, base the default applications clock."""
    done = gpu.run(*LINREG, *FAST, "--no-isolate", "--lock-clocks", ask)
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert (trials["locked_sm_clock_mhz"] == mhz).all() and (trials["lock_clocks"] == ask).all()
    assert gpu.setters() == ["nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks"]
    assert gpu.state_text() == ""  # unlocked; the limit never touched


def _worker_pid(parent: int, timeout: float = 60) -> int:
    import psutil
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(parent).children(recursive=True):
            try:
                if "gpubench.launch.worker" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError("no worker process")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["sigkill", "crash"])
def test_parent_restores_after_the_worker_dies(gpu, sig):
    proc = gpu.start(*LINREG, *SLOW, "--isolation", "fresh", "--power-limit", "250",
                     "--lock-clocks", "max")
    gpu.wait_for_state("0 250000 1980 1980", proc)
    worker = _worker_pid(proc.pid)
    time.sleep(1.0)  # into its trials
    os.kill(worker, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err  # a failed run, recorded
    assert gpu.state_text() == ORIGINAL
    assert gpu.leftover_records() == []
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert "killed by" in trials["error"].dropna().iloc[-1]
    policy = json.loads((gpu.folder() / "run.json").read_text())["clock_policy"]
    assert policy["restored"] == {"clocks": "unlocked", "power_limit_w": 350.0}


@pytest.mark.parametrize("sig,extra", [(signal.SIGTERM, ()), (signal.SIGINT, ()),
                                       (signal.SIGTERM, ("--no-isolate",))],
                         ids=["sigterm", "ctrl-c", "sigterm-inline"])
def test_restored_when_the_parent_is_stopped(gpu, sig, extra):
    proc = gpu.start(*LINREG, *SLOW, *extra, "--power-limit", "300", "--lock-clocks", "1500")
    gpu.wait_for_state("0 300000 1500 1500", proc)
    time.sleep(1.5)  # the worker is measuring
    os.kill(proc.pid, sig)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert gpu.state_text() == ORIGINAL
    assert gpu.leftover_records() == []
    assert gpu.setters()[-2:] == ["nvmlDeviceResetGpuLockedClocks",
                                  "nvmlDeviceSetPowerManagementLimit"]


@pytest.mark.parametrize("args,fake,expected", [
    (("--power-limit", "900"), {}, "--power-limit 900 W is outside GPU 0's range 200-700 W"),
    (("--power-limit", "150"), {"POWER_LIMIT_MIN_W": 160},
     "--power-limit 150 W is outside GPU 0's range 160-700 W"),
    (("--lock-clocks", "2500"), {}, "--lock-clocks 2500: GPU 0 supports SM clocks 210-1980 MHz"),
    (("--power-limit", "250", "--lock-clocks", "max"), {"NO_PERMISSION": 1},
     "setting the power limit on GPU 0 needs root (sudo)"),
    (("--lock-clocks", "max", "--no-isolate"), {"NO_PERMISSION": 1},
     "locking the clocks on GPU 0 needs root (sudo)"),
    (("--power-limit", "250", "--telemetry", "cpu"), {},
     "--power-limit sets a GPU's clocks or power: backend torch-cpu runs on the CPU"),
    (("--power-limit", "250"), {"GPUS": 0}, "--power-limit needs an NVIDIA GPU: NVML reports no GPU"),
    (("--lock-clocks", "max"), {"INIT_FAIL": 1}, "--lock-clocks needs NVML"),
], ids=["limit-high", "limit-low", "clock", "no-permission", "no-permission-inline", "cpu-run",
        "no-gpu", "no-nvml"])
def test_bad_input_is_one_line_and_leaves_the_gpu_alone(fake_nvml_dir, tmp_path, args, fake,  # noqa: F811
                                                        expected):
    gpu = Gpu(fake_nvml_dir, tmp_path, **fake)
    gpu.state.write_text("0 330000 -1 -1\n")  # a limit someone set before
    done = gpu.run(*LINREG, *FAST, *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert gpu.state_text() == "0 330000 -1 -1"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert gpu.leftover_records() == []


def test_a_killed_parents_policy_is_restored_by_the_next_run(gpu):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a gpubench parent SIGKILLed mid-run left its record and the GPU set
    folder = gpu.records / "clock-policy"
    folder.mkdir(parents=True)
    uuid = "GPU-fa4e0000-0000-4000-8000-000000000000"
    (folder / f"gpu-{uuid}.json").write_text(json.dumps({
        "pid": dead.pid, "uuid": uuid, "nvml_index": 0, "limit_before_w": 350.0,
        "limit_set": True, "locked": True}))
    gpu.state.write_text("0 250000 1500 1500\n")
    done = gpu.run(*LINREG, *FAST)
    assert done.returncode == 0, done.stderr
    assert gpu.state_text() == ORIGINAL
    assert gpu.leftover_records() == []
    assert f"gpubench process {dead.pid} was killed before restoring" in done.stderr
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert (trials["enforced_power_limit_w"] == 350).all()


def test_suite_power_limits_sweep_and_the_report_chart(gpu):
    suite = gpu.tmp / "sweep.yaml"
    suite.write_text("defaults: {trials: 2, warmup_s: 0.1, min_trial_s: 0.1, telemetry: nvml,"
                     " threads: 1}\nruns:\n  - workloads: linreg\n    backends: torch-cpu\n"
                     "    power_limits: [200, 300]\n")
    done = gpu.run(str(suite), "--out", str(gpu.tmp / "out"), command="suite")
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(gpu.folder() / "trials.csv")
    assert sorted(trials["power_limit_w"].unique()) == [200, 300]
    assert trials["run_id"].nunique() == 2  # two configurations, one run each
    for limit, rows in trials.groupby("power_limit_w"):
        assert (rows["enforced_power_limit_w"] == limit).all()
    assert gpu.state_text() == ORIGINAL
    report = gpu.tmp / "report.html"
    done = gpu.run(str(gpu.tmp / "out"), "--out", str(report), command="report")
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "<h2>Power limit sweep</h2>" in html
    assert "Energy efficiency against the power limit" in html
    assert "Throughput against the power limit" in html
    assert "board power limit (W)" in html
