"""The measurement protocol on a step with known cost (no framework): calibration,
trial brackets, sampler bracketing, adaptive trials and their stop reasons."""

import time
from typing import Dict, List

import numpy as np
import pytest

from gpubench.backends import DeviceInfo, Step, StepTimer
from gpubench.measure.protocol import (
    DISCARD_FRACTION, MAX_DISCARDED_TRIALS, MIN_WARMUP_STEPS, STOP_FIXED, STOP_TARGET_MET,
    STOP_TIME_CAP, STOP_TRIAL_CAP, WARMUP_CAP_FACTOR, ProtocolConfig, measure, warm_up,
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
    warm = warm_up(step, 0.1)
    assert warm.iterations == step.iterations_run and warm.iterations >= 1 + MIN_WARMUP_STEPS
    # The budget bounds the warm-up from below; a loaded machine may stretch it up to
    # its cap, so the upper bound is loose. A busy-wait step never costs less than asked.
    assert 0.1 <= warm.seconds < 1.0
    assert 0.001 <= warm.seconds_per_iteration < 0.01
    assert 0.001 <= warm.first_step_s


class SlowStartStep(SleepStep):
    """The first `slow_steps` steps cost `first_cost_s` each (compilation, cuDNN
    autotuning), the rest `cost_s`."""

    def __init__(self, first_cost_s, slow_steps=1, **kw):
        super().__init__(**kw)
        self.first_cost_s, self.slow_steps = first_cost_s, slow_steps

    def run(self, iterations, timer=None):
        for _ in range(iterations):
            cost = self.first_cost_s if self.iterations_run < self.slow_steps else self.cost_s
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < cost:
                pass
            self.iterations_run += 1


def test_a_slow_first_step_is_not_the_estimate():
    # The first step takes longer than the whole warm-up budget: warm-up must go on,
    # leave it out of the per-step estimate, and size trials from the steady steps.
    step = SlowStartStep(first_cost_s=0.3, cost_s=0.0005)
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    calibration, _ = measure(step, config, results.append)
    assert calibration.first_step_s >= 0.3
    assert calibration.warmup_iterations >= 1 + MIN_WARMUP_STEPS
    assert calibration.seconds_per_iteration < 0.005
    assert calibration.iterations_per_trial >= 50  # 0.05 s / 0.5 ms = 100
    assert [r.iterations > 1 for r in results] == [True] * 3
    assert all(r.duration_s >= DISCARD_FRACTION * config.min_trial_s for r in results)


def test_warm_up_goes_on_until_steps_are_steady():
    # Five slow steps after the first (autotuning several shapes): a warm-up that stopped
    # at the budget would still be in them.
    step = SlowStartStep(first_cost_s=0.01, slow_steps=6, cost_s=0.001)
    warm = warm_up(step, 0.03)
    assert warm.steady
    assert warm.iterations > 6
    assert warm.seconds_per_iteration < 0.002


def test_warm_up_that_never_settles_stops_at_its_cap():
    step = SleepStep(cost_s=0.0005, noise=3.0)
    warm = warm_up(step, 0.02, min_steps=10**9)
    assert not warm.steady
    assert warm.seconds < WARMUP_CAP_FACTOR * 0.02 + 0.5


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


def _speed_up_at_first_trial(step, factor):
    def progress(event, **fields):
        if event == "trial":
            step.cost_s = 0.0008 / factor
    return progress


def test_short_trials_are_lengthened():
    # The warm-up sees a slow step, then the step gets 1.8x faster: trial 0 comes out
    # short (kept: not far too short), so later trials get more iterations.
    step = SleepStep(cost_s=0.0008)
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    calibration, _ = measure(step, config, results.append,
                             progress=_speed_up_at_first_trial(step, 1.8))
    assert DISCARD_FRACTION * config.min_trial_s < results[0].duration_s < 0.8 * config.min_trial_s
    assert results[1].iterations > 1.3 * results[0].iterations
    assert results[1].duration_s >= 0.8 * config.min_trial_s
    assert calibration.discarded_trials == []


def test_a_far_too_short_trial_is_run_again():
    # 4x faster once trials start: trial 0 lasts a quarter of min_trial_s. It is not
    # kept: recorded, its samples released, and trial 0 run again with more iterations.
    step = SleepStep(cost_s=0.0008)
    sampler = RecordingSampler()
    discarded = []
    sampler.discard_trial = discarded.append
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    with sampler:
        calibration, _ = measure(step, config, results.append, sampler,
                                 progress=_speed_up_at_first_trial(step, 4))
    assert [r.trial for r in results] == [0, 1, 2]
    assert all(r.duration_s >= DISCARD_FRACTION * config.min_trial_s for r in results)
    assert discarded == [0]
    [record] = calibration.discarded_trials
    assert record["trial"] == 0 and record["duration_s"] < DISCARD_FRACTION * config.min_trial_s
    assert results[0].iterations > 3 * record["iterations"]


def test_discarding_is_bounded():
    # A step that gets faster before every trial: at most MAX_DISCARDED_TRIALS re-runs.
    step = SleepStep(cost_s=0.004)
    results = []

    def progress(event, **fields):
        if event == "trial":
            step.cost_s /= 4

    calibration, _ = measure(step, ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.05),
                             results.append, progress=progress)
    assert len(results) == 2
    assert len(calibration.discarded_trials) == MAX_DISCARDED_TRIALS


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
