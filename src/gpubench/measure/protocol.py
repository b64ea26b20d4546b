"""The measurement protocol (design.md, Core concepts):

1. Warm up for a time budget, in chunks that double (each chunk synchronised), which
   also estimates the time per iteration.
2. Calibrate iterations per trial so one trial lasts at least `min_trial_s`.
3. Run `trials` trials, each bracketed by a device synchronisation and a monotonic
   clock, with the telemetry sampler bracketed to the same interval. In infer mode each
   step's latency is recorded too: in the same trial where the device has events (or
   the step is synchronous anyway), else in a pass of up to LATENCY_PASS_STEPS steps
   right after the trial, so that waiting for each step never lowers throughput.
4. Optionally keep adding trials until the 95% CI of the median throughput is within
   `target_rel_ci` of it, up to a time and trial cap, and say why it stopped.

Nothing here prints: progress goes to a callback, results to `on_trial`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from gpubench.backends import Step
from gpubench.stats import rel_ci_halfwidth
from gpubench.telemetry import NullSampler, Sampler

clock = time.perf_counter

# Stop reasons recorded in run.json and summary.csv.
STOP_FIXED = "fixed_trials"
STOP_TARGET_MET = "target_ci_met"
STOP_TIME_CAP = "time_cap"
STOP_TRIAL_CAP = "trial_cap"
STOP_INTERRUPTED = "interrupted"
STOP_FAILED = "failed"


@dataclass(frozen=True)
class ProtocolConfig:
    trials: int = 5
    warmup_s: float = 1.0
    min_trial_s: float = 1.0
    record_latency: bool = False
    target_rel_ci: Optional[float] = None  # e.g. 0.01: CI within 1% of the median
    max_time_s: float = 120.0  # cap on the time spent in trials when chasing the target
    max_trials: int = 100


@dataclass
class TrialResult:
    trial: int
    iterations: int
    duration_s: float
    latencies_s: Optional[np.ndarray]
    telemetry: dict
    loss: Optional[float]


@dataclass
class Calibration:
    warmup_iterations: int
    warmup_s: float
    seconds_per_iteration: float
    iterations_per_trial: int


Progress = Callable[..., None]


def no_progress(event: str, **fields: object) -> None:
    """The default progress callback: nothing."""


def warm_up(step: Step, budget_s: float) -> tuple[int, float, float]:
    """Runs doubling chunks until `budget_s` has passed (at least one iteration).
    Returns (iterations, seconds, seconds per iteration from the largest chunk)."""
    start = clock()
    chunk, total, best_chunk, per_iter = 1, 0, 0, 0.0
    while True:
        t0 = clock()
        step.run(chunk)
        step.synchronize()
        dt = clock() - t0
        total += chunk
        if chunk >= best_chunk:
            best_chunk, per_iter = chunk, dt / chunk
        remaining = budget_s - (clock() - start)
        if remaining <= 0:
            return total, clock() - start, per_iter
        # Grow, but never past what the remaining budget holds.
        chunk = max(1, min(chunk * 2, int(remaining / max(per_iter, 1e-9))))


def iterations_for(min_trial_s: float, seconds_per_iteration: float) -> int:
    return max(1, math.ceil(min_trial_s / max(seconds_per_iteration, 1e-9)))


LATENCY_PASS_STEPS = 200  # steps timed one by one when timing would slow the trial


def run_trial(step: Step, trial: int, iterations: int, record_latency: bool,
              sampler: Sampler) -> TrialResult:
    separate_pass = record_latency and step.latency_timing_syncs
    timer = step.make_timer(iterations) if record_latency and not separate_pass else None
    step.synchronize()
    sampler.begin_trial(trial)
    t0 = clock()
    step.run(iterations, timer)
    step.synchronize()
    duration = clock() - t0
    telemetry = sampler.end_trial()
    if separate_pass:  # after the trial's bracket: its throughput is not disturbed
        timer = step.make_timer(min(iterations, LATENCY_PASS_STEPS))
        step.run(min(iterations, LATENCY_PASS_STEPS), timer)
        step.synchronize()
    return TrialResult(trial, iterations, duration,
                       timer.latencies_s() if timer is not None else None,
                       telemetry, step.loss())


def measure(step: Step, config: ProtocolConfig, on_trial: Callable[[TrialResult], None],
            sampler: Optional[Sampler] = None, progress: Progress = no_progress) -> tuple[Calibration, str]:
    """Runs the protocol; calls `on_trial` after every trial (so results are written as
    they come). Returns the calibration and the stop reason."""
    sampler = sampler or NullSampler()
    progress("warmup", seconds=config.warmup_s)
    n_warm, warm_s, per_iter = warm_up(step, config.warmup_s)
    iterations = iterations_for(config.min_trial_s, per_iter)
    calibration = Calibration(n_warm, warm_s, per_iter, iterations)
    throughputs: List[float] = []
    started = clock()
    trial = 0
    stop = STOP_FIXED
    while True:
        if trial >= config.trials:
            if config.target_rel_ci is None:
                break
            if rel_ci_halfwidth(throughputs) <= config.target_rel_ci:
                stop = STOP_TARGET_MET
                break
            if trial >= config.max_trials:
                stop = STOP_TRIAL_CAP
                break
            if clock() - started >= config.max_time_s:
                stop = STOP_TIME_CAP
                break
        progress("trial", trial=trial, trials=config.trials, iterations=iterations)
        result = run_trial(step, trial, iterations, config.record_latency, sampler)
        throughputs.append(result.iterations / result.duration_s)
        on_trial(result)
        # The warm-up estimate can be off (a slow first chunk, a clock change): keep
        # later trials at least min_trial_s long.
        if result.duration_s < 0.8 * config.min_trial_s:
            iterations = iterations_for(config.min_trial_s, result.duration_s / result.iterations)
        trial += 1
    return calibration, stop
