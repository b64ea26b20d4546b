"""The measurement protocol on a step with known cost (no framework): calibration,
trial brackets, sampler bracketing, adaptive trials and their stop reasons."""

import time
from typing import Dict, List

import numpy as np
import pytest

from gpubench.backends import DeviceInfo, Step, StepTimer
from gpubench.measure import protocol
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


def test_warm_up_on_the_real_clock_never_stops_short():
    # A real (busy-wait) step on the real clock: what holds at any speed. The budget
    # bounds the warm-up from below, and a busy-wait step never costs less than asked;
    # how far above them it lands is this machine's load (the fake clock below is exact).
    step = SleepStep(cost_s=0.001)
    warm = warm_up(step, 0.1)
    assert warm.iterations == step.iterations_run and warm.iterations >= 1 + MIN_WARMUP_STEPS
    assert warm.seconds >= 0.1
    assert warm.seconds_per_iteration >= 0.001 and warm.first_step_s >= 0.001


class ClockStep(Step):
    """A step whose cost is exact: it advances a fake clock that the protocol reads
    (monkeypatched), so the tests of the protocol's decisions do not depend on how
    busy this machine is. `costs_s(n)` is the cost of the step run n-th (from 0)."""

    device = DeviceInfo("cpu", None, "test")

    def __init__(self, monkeypatch, costs_s):
        self.now_s, self.costs_s, self.iterations_run = 0.0, costs_s, 0
        monkeypatch.setattr(protocol, "clock", lambda: self.now_s)

    def make_timer(self, iterations):
        return _Timer(iterations)

    def run(self, iterations, timer=None):
        for i in range(iterations):
            cost = self.costs_s(self.iterations_run)
            self.now_s += cost
            self.iterations_run += 1
            if timer is not None:
                timer.values[i] = cost

    def synchronize(self):
        pass


def test_warm_up_respects_budget_and_estimates_cost(monkeypatch):
    step = ClockStep(monkeypatch, lambda n: 0.001)
    warm = warm_up(step, 0.1)
    assert warm.iterations == step.iterations_run and warm.iterations >= 1 + MIN_WARMUP_STEPS
    assert warm.steady
    # chunks grow only as far as the budget left holds: it stops as the budget passes
    assert 0.1 <= warm.seconds < 0.12
    assert warm.seconds == pytest.approx(warm.iterations * 0.001)
    assert warm.seconds_per_iteration == pytest.approx(0.001)
    assert warm.first_step_s == pytest.approx(0.001)


def test_a_slow_first_step_is_not_the_estimate(monkeypatch):
    # The first step (compilation, autotuning) takes longer than the whole warm-up
    # budget: warm-up must go on, leave it out of the per-step estimate, and size trials
    # from the steady steps. (The old warm-up returned after it: trials of 1 step.)
    step = ClockStep(monkeypatch, lambda n: 1.5 if n == 0 else 0.001)
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    calibration, _ = measure(step, config, results.append)
    assert calibration.first_step_s == pytest.approx(1.5)
    assert calibration.warmup_iterations >= 1 + MIN_WARMUP_STEPS and calibration.warmup_steady
    assert calibration.seconds_per_iteration == pytest.approx(0.001)
    assert calibration.iterations_per_trial == 50
    assert [r.iterations for r in results] == [50, 50, 50]
    assert calibration.discarded_trials == []


def test_warm_up_goes_on_until_steps_are_steady(monkeypatch):
    # Steps that get faster for a while after the first (autotuning several shapes, a
    # JIT), past the budget: warm-up goes on until two chunks agree.
    step = ClockStep(monkeypatch, lambda n: 0.01 / n if 0 < n < 6 else 0.001)
    warm = warm_up(step, 0.01, min_steps=2)
    assert warm.steady and warm.iterations == 8
    assert warm.seconds_per_iteration == pytest.approx(0.001)


def test_warm_up_needs_a_minimum_of_steps(monkeypatch):
    # Steady at once, and the budget passes after 3 steps: warm-up still runs 10.
    step = ClockStep(monkeypatch, lambda n: 0.01)
    warm = warm_up(step, 0.03)
    assert warm.steady and warm.iterations >= 1 + MIN_WARMUP_STEPS


def test_warm_up_that_never_settles_stops_at_its_cap(monkeypatch):
    step = ClockStep(monkeypatch, lambda n: 0.001 * (1 + n % 2 * 3))  # alternates 1 and 4 ms
    warm = warm_up(step, 0.02, min_steps=10**9)
    assert not warm.steady
    assert WARMUP_CAP_FACTOR * 0.02 <= warm.seconds < WARMUP_CAP_FACTOR * 0.02 + 0.2


def test_trials_are_calibrated_and_bracketed(monkeypatch):
    step = ClockStep(monkeypatch, lambda n: 0.0005)
    sampler = RecordingSampler()
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05, record_latency=True)
    with sampler:
        calibration, stop = measure(step, config, results.append, sampler)
    assert stop == STOP_FIXED
    assert [r.trial for r in results] == [0, 1, 2]
    assert calibration.iterations_per_trial == 100
    for r in results:
        assert r.duration_s == pytest.approx(config.min_trial_s)
        assert r.telemetry == {"power_avg_w": 42.0}
        assert len(r.latencies_s) == r.iterations
        np.testing.assert_allclose(r.latencies_s, 0.0005)
    kinds = [e[0] for e in sampler.events]
    assert kinds == ["start"] + ["begin", "end"] * 3 + ["stop"]
    assert [e[1] for e in sampler.events if e[0] == "begin"] == [0, 1, 2]


def test_short_trials_are_lengthened(monkeypatch):
    # The step gets 1.6x faster once trials start: trial 0 lasts 62% of min_trial_s,
    # short but kept, and later trials get more iterations to last min_trial_s again.
    step = ClockStep(monkeypatch, lambda n: 0.0)
    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    results = []

    def progress(event, **fields):
        if event == "trial" and fields["trial"] == 0:
            step.costs_s = lambda n: 0.001 / 1.6

    step.costs_s = lambda n: 0.001
    calibration, _ = measure(step, config, results.append, progress=progress)
    assert results[0].duration_s == pytest.approx(0.05 / 1.6)
    assert [r.iterations for r in results] == [50, 80, 80]
    assert calibration.discarded_trials == []


def test_a_far_too_short_trial_is_run_again(monkeypatch):
    # 4x faster once trials start: trial 0 lasts a quarter of min_trial_s. It is not
    # kept: recorded, its samples released, and trial 0 run again with more iterations.
    step = ClockStep(monkeypatch, lambda n: 0.001)
    sampler = RecordingSampler()
    discarded = []
    sampler.discard_trial = discarded.append
    results = []

    def progress(event, **fields):
        if event == "trial":
            step.costs_s = lambda n: 0.00025

    config = ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05)
    with sampler:
        calibration, _ = measure(step, config, results.append, sampler, progress=progress)
    assert [(r.trial, r.iterations) for r in results] == [(0, 200), (1, 200), (2, 200)]
    assert discarded == [0]
    assert calibration.discarded_trials == [
        {"trial": 0, "iterations": 50, "duration_s": pytest.approx(0.0125)}]


def test_discarding_is_bounded(monkeypatch):
    # A step that gets 4x faster before every trial: at most MAX_DISCARDED_TRIALS re-runs.
    step = ClockStep(monkeypatch, lambda n: 0.004)
    results = []

    def progress(event, **fields):
        cost = step.costs_s(0) / 4
        step.costs_s = lambda n: cost

    calibration, _ = measure(step, ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.05),
                             results.append, progress=progress)
    assert len(results) == 2
    assert len(calibration.discarded_trials) == MAX_DISCARDED_TRIALS


def _noisy(n):
    """0.5 ms a step, give or take up to 50%, in a fixed pseudo-random pattern."""
    return 0.0005 * (1 + 0.5 * ((n * 7919) % 13) / 13)


def test_target_ci_met_on_a_steady_step(monkeypatch):
    results = []
    config = ProtocolConfig(trials=3, warmup_s=0.02, min_trial_s=0.02, target_rel_ci=0.2,
                            max_time_s=10)
    _, stop = measure(ClockStep(monkeypatch, lambda n: 0.0005), config, results.append)
    assert stop == STOP_TARGET_MET
    assert len(results) == 6  # no 95% CI of the median before 6 trials


def test_target_ci_stops_at_trial_cap(monkeypatch):
    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.005, target_rel_ci=1e-9,
                            max_trials=6, max_time_s=60)
    _, stop = measure(ClockStep(monkeypatch, _noisy), config, results.append)
    assert stop == STOP_TRIAL_CAP and len(results) == 6


def test_target_ci_stops_at_time_cap(monkeypatch):
    results = []
    config = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.02, target_rel_ci=1e-9,
                            max_trials=10_000, max_time_s=0.2)
    _, stop = measure(ClockStep(monkeypatch, _noisy), config, results.append)
    assert stop == STOP_TIME_CAP
    assert 8 <= len(results) <= 11  # 0.2 s of ~0.02 s trials


class SyncTimedStep(ClockStep):
    """A step whose per-step timing would synchronise the device (as TF on a GPU)."""

    latency_timing_syncs = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.runs = []

    def run(self, iterations, timer=None):
        self.runs.append((iterations, timer is not None))
        super().run(iterations, timer)


def test_latency_in_a_separate_pass_when_timing_would_sync(monkeypatch):
    step = SyncTimedStep(monkeypatch, lambda n: 0.0002)
    results = []
    measure(step, ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.1, record_latency=True),
            results.append)
    trials = [r for r in step.runs if r[0] == results[0].iterations and not r[1]]
    passes = [r for r in step.runs if r[1]]
    assert results[0].iterations == 500  # the pass is shorter than the trial
    assert len(trials) == 2 and len(passes) == 2  # throughput untimed, then a timed pass
    assert all(n == 200 for n, _ in passes)
    assert all(len(r.latencies_s) == 200 and (r.latencies_s == 0.0002).all() for r in results)
