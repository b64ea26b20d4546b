"""The measurement protocol on a step with known cost (no framework): calibration,
trial brackets, sampler bracketing, adaptive trials and their stop reasons."""

import time
from typing import Dict, List

import numpy as np
import pytest

from gpubench.backends import DeviceInfo, Step, StepTimer
from gpubench.measure.protocol import (
    STOP_FIXED, STOP_TARGET_MET, STOP_TIME_CAP, STOP_TRIAL_CAP, ProtocolConfig, measure,
    warm_up,
)
from gpubench.telemetry import Sampler


class _Timer(StepTimer):
    def __init__(self, n):
        self.values = np.empty(n)

    def latencies_s(self):
        return self.values


class SleepStep(Step):
    """Each iteration busy-waits `cost_s` (plus optional noise); counts what it ran."""

    device = DeviceInfo("cpu", None, "test")

    def __init__(self, cost_s=0.0005, noise=0.0, seed=0):
        self.cost_s, self.noise = cost_s, noise
        self.rng = np.random.default_rng(seed)
        self.iterations_run = 0
        self.syncs = 0

    def make_timer(self, iterations):
        return _Timer(iterations)

    def run(self, iterations, timer=None):
        for i in range(iterations):
            t0 = time.perf_counter()
            cost = self.cost_s * (1 + self.noise * abs(self.rng.standard_normal()))
            while time.perf_counter() - t0 < cost:
                pass
            if timer is not None:
                timer.values[i] = time.perf_counter() - t0
        self.iterations_run += iterations

    def synchronize(self):
        self.syncs += 1


class RecordingSampler(Sampler):
    name = "recording"

    def __init__(self):
        self.events: List[tuple] = []

    def start(self):
        self.events.append(("start",))

    def stop(self):
        self.events.append(("stop",))

    def begin_trial(self, trial):
        self.events.append(("begin", trial, time.perf_counter()))

    def end_trial(self) -> Dict[str, float]:
        self.events.append(("end", time.perf_counter()))
        return {"power_avg_w": 42.0}


def test_warm_up_respects_budget_and_estimates_cost():
    step = SleepStep(cost_s=0.001)
    n, seconds, per_iter = warm_up(step, 0.1)
    assert n == step.iterations_run and n >= 1
    # The budget bounds the warm-up from below; a loaded machine may stretch the last
    # chunk, so the upper bound is loose. A busy-wait step never costs less than asked.
    assert 0.1 <= seconds < 1.0
    assert 0.001 <= per_iter < 0.01


def test_warm_up_runs_at_least_one_iteration():
    step = SleepStep(cost_s=0.01)
    n, _, per_iter = warm_up(step, 1e-6)
    assert n == 1 and per_iter >= 0.01


def test_trials_are_calibrated_and_bracketed():
    step = SleepStep(cost_s=0.0005)
    sampler = RecordingSampler()
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05, record_latency=True)
    with sampler:
        calibration, stop = measure(step, config, results.append, sampler)
    assert stop == STOP_FIXED
    assert [r.trial for r in results] == [0, 1, 2]
    assert calibration.iterations_per_trial == pytest.approx(100, rel=0.5)
    for r in results:
        assert r.duration_s >= 0.8 * config.min_trial_s
        assert r.telemetry == {"power_avg_w": 42.0}
        assert len(r.latencies_s) == r.iterations
        assert np.all(r.latencies_s >= 0.0005 * 0.9)
    kinds = [e[0] for e in sampler.events]
    assert kinds == ["start"] + ["begin", "end"] * 3 + ["stop"]
    assert [e[1] for e in sampler.events if e[0] == "begin"] == [0, 1, 2]


def test_short_trials_are_lengthened():
    # The warm-up sees a slow step, then the step gets 4x faster: trial 0 comes out
    # too short, so later trials get more iterations to last min_trial_s again.
    step = SleepStep(cost_s=0.0008)
    results = []

    def progress(event, **fields):
        if event == "trial":
            step.cost_s = 0.0002

    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    measure(step, config, results.append, progress=progress)
    assert results[0].duration_s < 0.8 * config.min_trial_s
    assert results[1].iterations > 2 * results[0].iterations
    assert results[1].duration_s >= 0.8 * config.min_trial_s


def test_target_ci_met_on_a_steady_step():
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.02, min_trial_s=0.02, target_rel_ci=0.2,
                            max_time_s=10)
    _, stop = measure(SleepStep(0.0005), config, results.append)
    assert stop == STOP_TARGET_MET
    assert len(results) >= 3


def test_target_ci_stops_at_trial_cap():
    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.005, target_rel_ci=1e-9,
                            max_trials=6, max_time_s=60)
    _, stop = measure(SleepStep(0.0005, noise=1.0), config, results.append)
    assert stop == STOP_TRIAL_CAP and len(results) == 6


def test_target_ci_stops_at_time_cap():
    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.02, target_rel_ci=1e-9,
                            max_trials=10_000, max_time_s=0.2)
    _, stop = measure(SleepStep(0.0005, noise=1.0), config, results.append)
    assert stop == STOP_TIME_CAP
    assert 2 <= len(results) < 50


class SyncTimedStep(SleepStep):
    """A step whose per-step timing would synchronise the device (as TF on a GPU)."""

    latency_timing_syncs = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.runs = []

    def run(self, iterations, timer=None):
        self.runs.append((iterations, timer is not None))
        super().run(iterations, timer)


def test_latency_in_a_separate_pass_when_timing_would_sync():
    step = SyncTimedStep(cost_s=0.0002)
    results = []
    measure(step, ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.1, record_latency=True),
            results.append)
    trials = [r for r in step.runs if r[0] == results[0].iterations and not r[1]]
    passes = [r for r in step.runs if r[1]]
    assert results[0].iterations > 200  # the pass is shorter than the trial
    assert len(trials) == 2 and len(passes) == 2  # throughput untimed, then a timed pass
    assert all(n == 200 for n, _ in passes)
    assert all(len(r.latencies_s) == 200 and (r.latencies_s >= 0.0002).all() for r in results)
