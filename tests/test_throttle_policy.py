"""Throttle-aware trials (measure/thermal.py): --on-throttle flag|exclude|rerun|fail,
--throttle-reruns, --cooldown-s and --start-below-c. The protocol's decisions on a fake
clock (no waiting), then the real `gpubench run` against the NVML test double with
clock-event reason and temperature schedules (counted from NVML's start in the run's
process: the double's epoch)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Set

import numpy as np
import pandas as pd
import pytest

import conftest
from conftest import lines_with
from gpubench.measure import thermal
from gpubench.measure.protocol import ProtocolConfig, measure
from gpubench.measure.thermal import MAX_WAIT_S, throttle_warnings
from gpubench.telemetry import Sampler
from gpubench.telemetry.aggregate import throttle_names, throttled
from nvml_double import fake_nvml_dir, run_cli  # noqa: F401
from test_protocol import ClockStep

LINREG = ("--workload", "linreg", "--backend", "torch-cpu", "--no-isolate", "--warmup-s", "0.1",
          "--telemetry", "nvml")


# --- the reasons ---------------------------------------------------------------------

def test_reasons_are_named_in_bit_order_and_only_throttling_counts():
    assert throttle_names([0x40, 0x4]) == "sw_power_cap+hw_thermal"
    assert throttle_names([0x8 | 0x80, 0x20]) == "hw_slowdown+sw_thermal+hw_power_brake"
    # idle, application clocks, sync boost, display clock: not throttling
    assert throttle_names([0x1 | 0x2 | 0x10 | 0x100]) is None
    assert throttled([0x10]) is False and throttled([0x1 | 0x4]) is True


# --- the protocol, on a fake clock ---------------------------------------------------

class ScriptedSampler(Sampler):
    """Throttles the trials (by number) in `throttled`; its GPU's temperature is
    `temp(now)` on the step's fake clock."""

    name = "scripted"

    def __init__(self, step: ClockStep, throttled: Set[int], temp=lambda now: 50.0):
        self.step, self.hit, self.temp = step, throttled, temp
        self.trial: Optional[int] = None

    def start(self):
        pass

    def stop(self):
        pass

    def begin_trial(self, trial):
        self.trial = trial

    def end_trial(self) -> Dict[str, Any]:
        return {"throttle_reasons": "sw_power_cap"} if self.trial in self.hit else {}

    def temperature_c(self):
        return self.temp(self.step.now_s)


def fake_waits(monkeypatch, step):
    def sleep(s):
        step.now_s += s
    monkeypatch.setattr(thermal, "sleep", sleep)
    monkeypatch.setattr(thermal, "clock", lambda: step.now_s)


def run_protocol(monkeypatch, hit, temp=lambda now: 50.0, **config):
    step = ClockStep(monkeypatch, lambda n: 0.001)
    fake_waits(monkeypatch, step)
    results = []
    calibration, stop = measure(step, ProtocolConfig(warmup_s=0.05, min_trial_s=0.05, **config),
                                results.append, ScriptedSampler(step, hit, temp))
    return results, calibration, stop


def test_exclude_replaces_a_throttled_trial_under_the_next_number(monkeypatch):
    results, calibration, stop = run_protocol(monkeypatch, {1}, trials=3)
    assert [r.trial for r in results] == [0, 1, 2, 3]  # numbered uniquely, one more trial
    assert [r.thermal["excluded"] for r in results] == [None, "throttled", None, None]
    record = calibration.throttle
    assert record["reruns_used"] == 1 and not record["budget_exhausted"]
    assert stop == "fixed_trials" and throttle_warnings(record) == []


def test_flag_keeps_the_trial_and_runs_no_more(monkeypatch):
    results, calibration, _ = run_protocol(monkeypatch, {1}, trials=3, on_throttle="flag")
    assert [r.trial for r in results] == [0, 1, 2]
    assert all(r.thermal["excluded"] is None for r in results)
    assert calibration.throttle["throttled_trials"] == [
        {"trial": 1, "reasons": "sw_power_cap", "excluded": False}]


def test_a_spent_budget_counts_the_trial_left_out_and_warns(monkeypatch):
    results, calibration, _ = run_protocol(monkeypatch, {0, 1, 2, 3}, trials=2,
                                           throttle_reruns=1)
    # trial 0 replaced; 1 past the budget counts (left out); 2 and 3 as well: 2 counted
    assert [r.trial for r in results] == [0, 1, 2]
    assert [r.thermal["excluded"] for r in results] == ["throttled"] * 3
    record = calibration.throttle
    assert record["budget_exhausted"] and record["reruns_used"] == 1
    (line,) = throttle_warnings(record)
    assert "--throttle-reruns 1" in line and "(1, 2)" in line


def test_a_replacement_never_runs_past_the_time_cap(monkeypatch):
    # Chasing a CI target that noise-free trials meet only at 6: every trial after the
    # third is throttled; the time cap (0.5 s of 0.05 s trials) stops the run, however
    # many replacements the budget still holds.
    results, calibration, stop = run_protocol(
        monkeypatch, set(range(3, 1000)), trials=3, target_rel_ci=0.01, max_time_s=0.5,
        throttle_reruns=10)
    assert stop == "time_cap"
    assert sum(r.duration_s for r in results) < 0.5 + 0.06  # one trial may start before it
    assert calibration.throttle["reruns_used"] <= 10


def test_fail_writes_the_trial_then_stops(monkeypatch):
    step = ClockStep(monkeypatch, lambda n: 0.001)
    results = []
    with pytest.raises(thermal.ThrottleStop, match=r"trial 1 was throttled \(sw_power_cap\)"):
        measure(step, ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05,
                                     on_throttle="fail"),
                results.append, ScriptedSampler(step, {1}))
    assert [(r.trial, r.thermal["excluded"]) for r in results] == [(0, None), (1, "throttled")]


def test_start_below_waits_on_the_temperature(monkeypatch):
    # 80 C until 1 s on the fake clock, then 60: the first trial waits, the rest do not
    results, _, _ = run_protocol(monkeypatch, set(), lambda now: 80.0 if now < 1.0 else 60.0,
                                 trials=2, start_below_c=70.0)
    first, second = (r.thermal for r in results)
    assert first["start_temp_c"] == 60.0 and 0.5 < first["cooldown_s"] <= 1.0 + thermal.POLL_S
    assert second == {"start_temp_c": 60.0, "cooldown_s": 0.0, "excluded": None}


def test_a_wait_that_never_ends_is_capped_and_said(monkeypatch):
    results, calibration, _ = run_protocol(monkeypatch, set(), lambda now: 90.0, trials=1,
                                           start_below_c=70.0)
    assert results[0].thermal["cooldown_s"] == pytest.approx(MAX_WAIT_S)
    assert results[0].thermal["start_temp_c"] == 90.0
    (line,) = throttle_warnings(calibration.throttle)
    assert "below 70 C" in line and "capped at 300 s" in line


def test_rerun_waits_for_the_first_trials_start_plus_2_c(monkeypatch):
    # 55 C at the start; trial 1 throttled and heats the GPU to 65 C, cooling by 1 C a
    # second: its replacement waits until below 57 C, the trials before it do not wait
    heated = {"at": None}

    def temp(now):
        if heated["at"] is None:
            return 55.0
        return max(55.0, 65.0 - (now - heated["at"]))

    step = ClockStep(monkeypatch, lambda n: 0.001)
    fake_waits(monkeypatch, step)
    sampler = ScriptedSampler(step, {1}, temp)
    end = sampler.end_trial

    def end_trial():
        if sampler.trial == 1:
            heated["at"] = step.now_s
        return end()
    sampler.end_trial = end_trial
    results = []
    measure(step, ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05, on_throttle="rerun"),
            results.append, sampler)
    by_trial = {r.trial: r.thermal for r in results}
    assert "cooldown_s" not in by_trial[0] and "cooldown_s" not in by_trial[1]
    assert by_trial[2]["start_temp_c"] < 57.0 and by_trial[2]["cooldown_s"] > 7.0
    assert "cooldown_s" not in by_trial[3]  # not a replacement: no wait


def test_cooldown_sleeps_before_every_trial(monkeypatch):
    results, _, _ = run_protocol(monkeypatch, set(), trials=2, cooldown_s=3.0)
    assert [r.thermal["cooldown_s"] for r in results] == [3.0, 3.0]


# --- the real CLI against the NVML test double ---------------------------------------

def run_ok(fake_nvml_dir, tmp_path, args, **fake):
    result = run_cli(fake_nvml_dir, tmp_path / "out", [*LINREG, *args], **fake)
    assert result.proc.returncode == 0, result.proc.stderr
    return result


def summary_of(result):
    import pandas as pd
    return pd.read_csv(result.folder / "summary.csv").iloc[0]


# Power-capped, at 300 W, for the first 3 s after NVML starts; 100 W after.
CAPPED = {"CLOCK_REASONS": "0x4@0,0@3", "POWER_W": "300@0,100@3"}


def test_a_power_capped_trial_is_left_out_and_replaced(fake_nvml_dir, tmp_path):
    # trials of 0.5 s: at most 7 fall in the capped 3 s, fewer than the 10 replacements
    result = run_ok(fake_nvml_dir, tmp_path, ["--trials", "3", "--min-trial-s", "0.5",
                                              "--throttle-reruns", "10"], **CAPPED)
    trials = result.trials
    hit = trials[trials["throttle_reasons"].notna()]
    assert len(hit) >= 1, "no trial started inside the power-capped seconds"
    assert (hit["throttle_reasons"] == "sw_power_cap").all()
    assert (hit["excluded"] == "throttled").all()
    kept = trials[trials["excluded"].isna()]
    assert len(kept) == 3 and kept["throttle_reasons"].isna().all()  # replaced: 3 kept
    assert sorted(trials["trial"]) == list(range(len(trials)))
    assert (trials["start_temp_c"] == 55).all()  # the double's temperature, policy or not
    assert trials["cooldown_s"].isna().all()  # no wait asked
    summary = summary_of(result)
    assert summary["n_ok"] == 3 and summary["n_trials"] == len(trials)
    assert summary["throughput_samples_per_s_median"] == pytest.approx(
        np.median(kept["throughput_samples_per_s"]))
    assert summary["power_avg_w_median"] == pytest.approx(100, rel=0.02)  # none at 300 W
    assert result.run_json["calibration"]["throttle"]["reruns_used"] == len(hit)


def test_flag_keeps_the_throttled_trial_in_the_median(fake_nvml_dir, tmp_path):
    result = run_ok(fake_nvml_dir, tmp_path, ["--trials", "3", "--min-trial-s", "0.2",
                                              "--on-throttle", "flag"], **CAPPED)
    trials = result.trials
    assert len(trials) == 3 and trials["excluded"].isna().all()
    assert (trials["throttle_reasons"] == "sw_power_cap").any()
    assert summary_of(result)["power_avg_w_median"] == pytest.approx(
        np.median(trials["power_avg_w"]))


def test_fail_stops_the_run_with_a_failed_row_naming_the_reason(fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path / "out",
                     [*LINREG, "--trials", "3", "--min-trial-s", "0.05", "--on-throttle", "fail"],
                     CLOCK_REASONS="0x40")  # hardware thermal slowdown throughout
    assert result.proc.returncode == 4, result.proc.stderr  # a failed run
    trials = result.trials
    assert list(trials["status"]) == ["ok", "failed"]
    assert trials["excluded"].iloc[0] == "throttled"
    assert "trial 0 was throttled (hw_thermal): --on-throttle fail" in trials["error"].iloc[1]


def test_a_spent_rerun_budget_is_said_in_run_json_and_a_warning(fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path / "out",
                     [*LINREG, "--trials", "2", "--min-trial-s", "0.05",
                      "--throttle-reruns", "1"], quiet=False, CLOCK_REASONS="0x4")
    assert result.proc.returncode == 0, result.proc.stderr
    trials = result.trials
    assert list(trials["trial"]) == [0, 1, 2] and (trials["excluded"] == "throttled").all()
    record = result.run_json["calibration"]["throttle"]
    assert record["budget_exhausted"] is True and record["reruns_used"] == 1
    assert lines_with(result.proc.stderr, "throttle rerun budget (--throttle-reruns 1) ran out")
    assert summary_of(result)["n_ok"] == 0


def test_idle_app_clocks_sync_boost_and_display_do_not_count(fake_nvml_dir, tmp_path):
    result = run_ok(fake_nvml_dir, tmp_path, ["--trials", "2", "--min-trial-s", "0.05"],
                    CLOCK_REASONS="0x113")
    trials = result.trials
    assert len(trials) == 2 and trials["excluded"].isna().all()
    assert trials["throttle_reasons"].isna().all() and not trials["throttled"].any()


def test_start_below_waits_for_the_gpu_to_cool(fake_nvml_dir, tmp_path):
    # 80 C for the first 1.5 s after NVML starts, then 60: the first trial (warm-up is
    # 0.1 s) waits for 60, and says so
    result = run_ok(fake_nvml_dir, tmp_path, ["--trials", "2", "--min-trial-s", "0.05",
                                              "--start-below-c", "70", "--cooldown-s", "0.01"],
                    TEMP_C="80@0,60@1.5")
    trials = result.trials
    assert (trials["start_temp_c"] == 60).all()
    assert (trials["cooldown_s"] >= 0.01).all()  # the asked 0.01 s, and any wait for 60 C
    # the sampler, polling through the wait, saw 80 C before the first trial began
    samples = result.samples
    first = samples[samples["trial"] == 0]["t_s"].min()
    assert (samples.loc[samples["t_s"] < first, "temp_c"] == 80).any(), \
        "the first trial did not start inside the hot 1.5 s"
    assert trials["cooldown_s"].iloc[0] > trials["cooldown_s"].iloc[1]


@pytest.mark.parametrize("args, message", [
    (["--on-throttle", "sometimes"], "invalid choice: 'sometimes'"),
    (["--cooldown-s", "-1"], "--cooldown-s: expected a number >= 0, got '-1'"),
    (["--start-below-c", "-5"], "expected a temperature in (0, 100] degrees C"),
    (["--throttle-reruns", "11"], "expected an integer in 0..10, got '11'"),
    (["--throttle-reruns", "-1"], "expected an integer in 0..10"),
])
def test_bad_thermal_options_are_one_line_exit_2(args, message):
    proc = conftest.run_cli("run", "--workload", "linreg", "--backend", "torch-cpu", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_start_below_on_a_cpu_run_is_one_line_exit_2(tmp_path):
    proc = conftest.run_cli("run", "--workload", "linreg", "--backend", "torch-cpu",
                            "--no-isolate", "--start-below-c", "70", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "gpubench: error: --start-below-c needs a GPU's temperature (NVML): the backend runs "
        "on the CPU (--telemetry nvml watches GPU --device)"]
    assert not list(tmp_path.iterdir())


def test_start_below_without_an_nvml_temperature_is_exit_2(fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path / "out", [*LINREG, "--start-below-c", "70"],
                     UNSUPPORTED="temperature")
    assert result.proc.returncode == 2
    assert "needs a GPU's temperature (NVML): this run's telemetry (nvml) gives none" in \
        result.proc.stderr


def test_the_rerun_budget_is_the_runs_across_its_processes(fake_nvml_dir, tmp_path):
    # throttled throughout; budget 1: process 0 replaces its trial 0 and counts trial 1,
    # process 1 has nothing left and counts trial 2 (with a budget of its own: 4 rows)
    args = [a for a in LINREG if a != "--no-isolate"]
    result = run_cli(fake_nvml_dir, tmp_path / "out",
                     [*args, "--processes", "2", "--trials", "1", "--min-trial-s", "0.05",
                      "--throttle-reruns", "1"], CLOCK_REASONS="0x4")
    assert result.proc.returncode == 0, result.proc.stderr
    trials = result.trials
    assert list(trials["process"]) == [0, 0, 1] and list(trials["trial"]) == [0, 1, 2]
    assert (trials["excluded"] == "throttled").all()


# --- what reads the rows back ----------------------------------------------------------

def test_summary_and_history_leave_out_excluded_rows():
    from gpubench.results.history import run_values
    from gpubench.results.summary import summarize
    from test_history import night_rows

    rows = night_rows(0, 1000.0, np.random.default_rng(0), trials=2, within=0.0)
    slow = rows.assign(trial=[2, 3], throughput_samples_per_s=500.0, excluded="throttled",
                       throttle_reasons="sw_power_cap", throttled=True)
    frame = pd.concat([rows, slow], ignore_index=True)  # all four: a median of 750
    summary = summarize(frame).iloc[0]
    assert summary["throughput_samples_per_s_median"] == pytest.approx(1000.0)
    assert summary["n_ok"] == 2 and summary["n_trials"] == 4
    values = run_values(frame, "throughput_samples_per_s", None, "")
    assert values["value"].tolist() == [pytest.approx(1000.0)]
    assert values["trials"].tolist() == [2]


def test_suite_keys_take_the_policy_and_refuse_bad_values(tmp_path):
    from gpubench.errors import UserError
    from gpubench.suite.config import load_suite

    def suite(settings: str):
        path = tmp_path / "suite.yaml"
        path.write_text(f"defaults:\n  backends: [torch-cpu]\n{settings}"
                        "runs:\n  - workloads: [linreg]\n")
        return dict(load_suite(path)[0].settings)

    got = suite("  on_throttle: rerun\n  throttle_reruns: 3\n  cooldown_s: 1.5\n")
    assert (got["on_throttle"], got["throttle_reruns"], got["cooldown_s"]) == ("rerun", 3, 1.5)
    assert suite("")["on_throttle"] == "exclude" and suite("")["throttle_reruns"] == 2
    with pytest.raises(UserError, match="unknown throttle policy 'never'"):
        suite("  on_throttle: never\n")
    with pytest.raises(UserError, match=r"throttle_reruns: expected an integer in 0\.\.10"):
        suite("  throttle_reruns: 50\n")
