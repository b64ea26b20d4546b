"""The real `gpubench run ... --telemetry nvml` (and `gpubench env`) in a subprocess
against the NVML test double: energy and power per trial, stepped power in the right
trials, --device, NVML failures at start and mid-run, throttling, the GPU facts."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import lines_with
from nvml_double import FAST, call_log, double_env, fake_nvml_dir, run_cli  # noqa: F401

LINREG = ("--workload", "linreg", "--backend", "torch-cpu")
# In process (one interpreter less per run, for speed); the NVML failure tests below go
# through the isolated worker, the default, to show its warnings and errors reach the user.
IN_PROCESS = ("--no-isolate",)
SAMPLING_CALLS = {"nvmlDeviceGetFieldValues", "nvmlDeviceGetTotalEnergyConsumption",
                  "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetClockInfo"}


def ok(result):
    assert result.proc.returncode == 0, result.proc.stderr
    trials = result.trials
    assert (trials["status"] == "ok").all()
    return trials


def window_spans(run_json):
    """Trial -> seconds of the sampler's window around it (run.json's trial_windows)."""
    return {w["trial"]: w["t_end_s"] - w["t_begin_s"]
            for w in run_json["telemetry"]["trial_windows"] if not w.get("discarded")}


def test_constant_power_on_gpu_1_only(fake_nvml_dir, tmp_path):
    log = tmp_path / "nvml-calls.log"
    result = run_cli(fake_nvml_dir, tmp_path / "out",
                     [*LINREG, *IN_PROCESS, *FAST, "--telemetry", "nvml", "--device", "1"],
                     GPUS=2, POWER_W=50, POWER_W_1=150, CALL_LOG=log)
    trials = ok(result)
    # nothing said about NVML, its telemetry or the GPUs (a contention warning may come
    # on any run that measured: it is not this test's subject)
    assert lines_with(result.proc.stderr, "nvml", "NVML", "telemetry", "GPU", "error",
                      "Traceback") == []
    assert len(trials) == 2
    spans = window_spans(result.run_json)
    for _, row in trials.iterrows():
        assert row["energy_source"] == "counter"
        # the counter's delta over the sampler's window, which brackets the timed trial
        # (how much longer the window is depends on the machine, not on the code)
        span = spans[row["trial"]]
        assert span >= row["duration_s"] - 1e-6
        assert row["power_avg_w"] == pytest.approx(150, rel=0.02)
        assert row["energy_j"] == pytest.approx(150 * span, rel=0.02)
        assert row["samples_per_joule"] == pytest.approx(row["samples"] / row["energy_j"])
        assert row["gpu_util_pct"] == 97 and row["sm_clock_mhz"] == 1980 and row["temp_c"] == 55
        assert row["mem_bw_source"] == "util_estimate" and row["throttled"] == False  # noqa: E712
    assert (trials["driver_version"].astype(str) == "550.54.15").all()
    samples = result.samples
    assert set(samples["device_index"]) == {1}
    assert (samples["power_w"] == 150).all()
    assert set(samples["trial"].dropna().astype(int)) == {0, 1}
    meta = result.run_json
    assert meta["telemetry"]["device"]["nvml_index"] == 1
    assert meta["environment"]["gpu"]["uuid"].endswith("000000000001")
    assert meta["environment"]["cuda_driver_version"] == "12.4"
    calls = call_log(log)
    assert {fn for fn, _ in calls} >= SAMPLING_CALLS
    assert not [c for c in calls if c[1] != "1"], "GPU 0 was queried"


def test_no_energy_counter_integrates_power_and_warns_of_throttling(fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path,
                     [*LINREG, *IN_PROCESS, *FAST, "--telemetry", "nvml",
                      "--on-throttle", "flag"],  # kept in the statistics, named
                     quiet=False, POWER_W=120, NO_ENERGY=1, CLOCK_REASONS="0x5")  # idle + power cap
    trials = ok(result)
    samples = result.samples
    for _, row in trials.iterrows():
        assert row["energy_source"] == "integrated"
        # constant power integrated over the trial's samples (one at each edge of its
        # window, which brackets the timed trial): 120 W x the samples' span
        times = samples.loc[samples["trial"] == row["trial"], "t_s"]
        assert times.max() - times.min() >= row["duration_s"] - 1e-6
        assert row["energy_j"] == pytest.approx(120 * (times.max() - times.min()), rel=1e-3)
        assert row["throttled"] == True  # noqa: E712
        assert row["throttle_reasons"] == "sw_power_cap"  # the idle bit is not throttling
    unavailable = result.run_json["telemetry"]["unavailable"]
    assert "energy counter: Not Supported" in unavailable["energy counter"]
    out = result.proc.stdout
    assert "J/sample" in out and "120.0" in out
    assert ("warning: GPU clocks were throttled during trial(s) 0 (sw_power_cap), 1 "
            "(sw_power_cap) of 2; kept in the statistics") in out


def schedule(levels_w, step_s):
    text = ",".join(f"{w}@{i * step_s:g}" for i, w in enumerate(levels_w))

    def energy_j(a, b):  # the schedule's integral between two times since the epoch
        total = 0.0
        for i, w in enumerate(levels_w):
            lo, hi = max(a, i * step_s), min(b, (i + 1) * step_s if i + 1 < len(levels_w) else b)
            total += w * max(0.0, hi - lo)
        return total
    return text, energy_j


def test_stepped_power_lands_in_the_right_trials(fake_nvml_dir, tmp_path):
    # 1 s steps for 64 s (the double's 64 steps at most): the trials, which start some
    # seconds after the epoch (an interpreter, torch; many more on a loaded machine),
    # fall well inside the schedule, and 8 trials of 0.2 s cannot all fit in one step
    levels = [100 if i % 2 == 0 else 300 for i in range(64)]
    text, energy_between = schedule(levels, 1.0)
    epoch = time.monotonic()  # CLOCK_MONOTONIC, shared with the subprocess
    result = run_cli(fake_nvml_dir, tmp_path,
                     [*LINREG, *IN_PROCESS, "--trials", "8", "--warmup-s", "0.1",
                      "--min-trial-s", "0.2", "--telemetry", "nvml", "--sample-hz", "20"],
                     EPOCH_S=repr(epoch), POWER_W=text)
    trials = ok(result)
    notes = result.run_json["telemetry"]
    t0 = notes["t0_monotonic_s"]  # the sampler's clock is CLOCK_MONOTONIC, as is the epoch
    windows = {w["trial"]: w for w in notes["trial_windows"] if not w.get("discarded")}
    for _, row in trials.iterrows():
        begin = t0 + windows[row["trial"]]["t_begin_s"] - epoch
        end = t0 + windows[row["trial"]]["t_end_s"] - epoch
        assert end - begin >= row["duration_s"] - 1e-6  # the window brackets the timed trial
        assert row["energy_source"] == "counter"
        assert row["energy_j"] == pytest.approx(energy_between(begin, end), rel=0.02)
        assert 100 * 0.98 <= row["power_avg_w"] <= 300 * 1.02
    assert trials["power_avg_w"].max() - trials["power_avg_w"].min() > 50  # the steps show


def test_nvml_init_failure_with_auto_runs_without_gpu_columns(fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path,
                     ["--workload", "linreg", "--backend", "fake-cuda", *FAST],
                     fake_cuda=True, INIT_FAIL=1)
    trials = ok(result)
    why = "NVML could not be initialised: Driver Not Loaded (NVML error 9)"
    # said once; other lines (a contention warning) may come on any run that measured
    assert lines_with(result.proc.stderr, "nvml", "NVML", "telemetry") == [
        f"gpubench: warning: no nvml telemetry: {why}"]
    for column in ("power_avg_w", "energy_j", "energy_source", "samples_per_joule",
                   "gpu_util_pct", "sm_clock_mhz", "temp_c", "throttled", "driver_version"):
        assert trials[column].isna().all(), column
    assert (trials["mem_bw_source"] == "analytic").all()  # the workload's own bytes / time
    notes = result.run_json["telemetry"]
    assert notes["sampler"] == "none" and notes["unavailable"] == {"nvml": why}
    assert not (result.folder / "samples.csv").exists()


@pytest.mark.parametrize("args, fake, message", [
    ((), {"INIT_FAIL": 1},
     "--telemetry nvml: NVML could not be initialised: Driver Not Loaded (NVML error 9)"),
    (("--device", "5"), {"GPUS": 2},
     "--telemetry nvml: no GPU with index 5 (GPUs: 0: NVIDIA Fake H100, 1: NVIDIA Fake H100)"),
])
def test_forced_nvml_that_cannot_run_is_exit_2(fake_nvml_dir, tmp_path, args, fake, message):
    out = tmp_path / "out"
    result = run_cli(fake_nvml_dir, out, [*LINREG, *FAST, "--telemetry", "nvml", *args], **fake)
    assert result.proc.returncode == 2
    assert result.proc.stderr.splitlines() == [f"gpubench: error: {message}"]
    assert not out.exists() or not any(out.iterdir())  # nothing half-written is left


def test_driver_errors_mid_run_leave_a_gap_and_the_run_goes_on(fake_nvml_dir, tmp_path):
    # The queries fail from 0.3 s to 3.3 s after the double's epoch (the run's first
    # nvmlInit, as its sampler starts). The first trial begins 0.1-0.5 s after it (the
    # counter probe, the warm-up; more on a loaded machine): within the failure, and 20
    # trials of at least 0.2 s run on past its end, whatever the machine's speed.
    result = run_cli(fake_nvml_dir, tmp_path,
                     [*LINREG, *IN_PROCESS, "--trials", "20", "--warmup-s", "0.1",
                      "--min-trial-s", "0.2", "--telemetry", "nvml", "--sample-hz", "20"],
                     POWER_W=100, FAIL_AFTER_S=0.3, FAIL_FOR_S=3.0)
    trials = ok(result)
    assert len(trials) == 20
    notes = result.run_json["telemetry"]
    assert notes["gaps"] and all("GPU is lost" in g["error"] for g in notes["gaps"])
    warnings = [line for line in result.proc.stderr.splitlines() if "gap" in line]
    assert len(warnings) == 1 and warnings[0].startswith("gpubench: warning: nvml telemetry had")
    measured = trials["energy_j"].notna()
    assert measured.any() and not measured.all()
    spans = window_spans(result.run_json)
    for _, row in trials[measured].iterrows():  # what was measured is right, never partial
        assert row["energy_j"] == pytest.approx(100 * spans[row["trial"]], rel=0.02)
    samples = result.samples
    for gap in notes["gaps"]:
        inside = samples[(samples["t_s"] > gap["start_t_s"]) & (samples["t_s"] < gap["end_t_s"])]
        assert inside.empty


def gpubench(lib, *args, **fake):
    return subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True,
                          text=True, env=double_env(lib, **fake), timeout=120)


def test_env_shows_driver_and_gpus_or_why_not(fake_nvml_dir):
    shown = gpubench(fake_nvml_dir, "env", GPUS=2, BUS_WIDTH_BITS_1=384,
                     MAX_MEM_CLOCK_MHZ_1=9751, NAME="NVIDIA Fake")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in shown.stdout.splitlines() if line.count("│") == 3}
    assert rows["driver_version"] == "550.54.15" and rows["cuda_driver_version"] == "12.4"
    assert rows["gpu0.peak_mem_bw_gbs"] == "3352.3"
    assert rows["gpu1.peak_mem_bw_gbs"] == "936.1"  # an RTX 3090's GDDR6X
    assert rows["gpu1.power_limit_w"] == "700.0" and rows["gpu1.name"] == "NVIDIA Fake"


def test_env_says_why_there_are_no_gpus():
    from gpubench.cli.env import gpu_rows  # the inventory itself: test_nvml_api.py

    why = "NVML could not be initialised: Driver Not Loaded (NVML error 9)"
    assert gpu_rows({"available": False, "reason": why}) == [("gpus", f"not available: {why}")]
    rows = dict(gpu_rows({"available": True, "driver_version": "550.54.15",
                          "cuda_driver_version": None, "gpus": []}))
    assert rows == {"driver_version": "550.54.15", "cuda_driver_version": "", "gpus": "none"}
