"""The measurement protocol (docs/how-it-measures.md, docs/architecture.md):

1. Warm up: the first step alone (compilation, autotuning), then chunks that double
   (each synchronised) until the time budget has passed, a minimum number of steps has
   run and the per-step time is steady; the last chunk estimates the time per step.
2. Calibrate iterations per trial so one trial lasts at least `min_trial_s`. A trial
   that comes out far shorter (the estimate was wrong) is not kept: it is recorded in
   the calibration, the iterations are recalibrated from it, and it is run again.
   The later worker processes of a run (--processes) warm up too, but take the first
   process's iterations as they are (`iterations_per_trial`): every process times the
   same work, so their trials compare like with like.
3. Run `trials` trials, each bracketed by a device synchronisation and a monotonic
   clock, with the telemetry sampler bracketed to the same interval. In infer mode each
   step's latency is recorded too: in the same trial where the device has events (or
   the step is synchronous anyway), else in a pass of up to LATENCY_PASS_STEPS steps
   right after the trial, so that waiting for each step never lowers throughput.
4. Optionally keep adding trials until the 95% CI of the median throughput is within
   `target_rel_ci` of it, up to a time and trial cap, and say why it stopped. Fewer
   than 6 trials have no 95% interval (gpubench.stats): the target is not met by them.
5. Throttle-aware trials (measure/thermal.py): before each trial the wait asked for
   (--cooldown-s, --start-below-c); after it, a trial whose GPU clocks were throttled
   is flagged, or written with `excluded` and left out of the CI, and (exclude, rerun)
   replaced by another trial under the next number, at most `throttle_reruns` times:
   a replaced trial does not count towards `trials`, one past the budget does. The time
   and trial caps hold as before: the caps are checked before every trial, a
   replacement included, so a replacement never runs past --max-time-s when chasing
   --target-rel-ci (the waits count as time spent); the first `trials` trials and their
   replacements run whatever the time, as fixed trials always did.

Across the ranks of a data-parallel run (gpubench/ranks.py) every rank runs the same
steps: warm-up's chunks, the iterations per trial and every decision to stop are rank
0's (its figures broadcast), each trial starts after a barrier and ends with a device
synchronisation and a barrier on every rank, and its duration is rank 0's clock. A
run of one process goes through the same code with collectives that do nothing.

Nothing here prints: progress goes to a callback, results to `on_trial`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from gpubench.backends import Step
from gpubench.measure import interrupt
from gpubench.measure.protocol_config import ProtocolConfig
from gpubench.measure.thermal import ThermalPolicy, ThrottleStop
from gpubench.ranks import SINGLE_RANK, RankContext
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


@dataclass
class TrialResult:
    trial: int
    iterations: int
    duration_s: float
    latencies_s: Optional[np.ndarray]
    telemetry: dict
    loss: Optional[float]
    # what the thermal policy made of it (measure/thermal.py): excluded, start_temp_c,
    # cooldown_s; the scenario adds them to the row
    thermal: dict = field(default_factory=dict)


@dataclass
class Calibration:
    """What warm-up and calibration found (run.json's `calibration`)."""

    warmup_iterations: int  # every step warm-up ran, the first included
    warmup_s: float  # all of warm-up, the first step included
    first_step_s: float  # the first step alone (compilation, autotuning): never an estimate
    warmup_steady: bool  # False: warm-up hit its cap before two chunks agreed
    seconds_per_iteration: float  # from the last warm-up chunk, the first step left out
    iterations_per_trial: int
    discarded_trials: List[dict] = field(default_factory=list)  # far too short, run again
    first_loss: Optional[float] = None  # after the first step: where training started from
    throttle: dict = field(default_factory=dict)  # thermal.py's account: policy, reruns, waits


Progress = Callable[..., None]


def no_progress(event: str, **fields: object) -> None:
    """The default progress callback: nothing."""


MIN_WARMUP_STEPS = 10  # steps after the first before warm-up may end
STEADY_REL = 0.10  # two chunks agree when their per-step times are within this
WARMUP_CAP_FACTOR = 4.0  # warm-up never runs past this many budgets (after the first step)


@dataclass(frozen=True)
class WarmUp:
    iterations: int
    seconds: float
    first_step_s: float
    seconds_per_iteration: float
    steady: bool
    first_loss: Optional[float] = None


def warm_up(step: Step, budget_s: float, min_steps: int = MIN_WARMUP_STEPS,
            ranks: RankContext = SINGLE_RANK) -> WarmUp:
    """Runs the first step alone (its cost may be compilation or autotuning: cuDNN
    benchmark, XLA, PTX JIT, ONNX Runtime's search), then doubling chunks, each
    synchronised, until `budget_s` has passed, `min_steps` more steps have run and the
    last two chunks agree within STEADY_REL per step; or until WARMUP_CAP_FACTOR x
    `budget_s`, and then it says it was not steady. The per-step estimate is the last
    chunk's: the first step never enters it. Every rank sizes its chunks by rank 0's
    timings, so all run the same steps."""
    ranks.barrier()
    t0 = clock()
    step.run(1)
    step.synchronize()
    start = clock()
    first_s = ranks.agree(start - t0)
    first_loss = step.loss()  # already synchronised: reading it costs no timed work
    cap_s = WARMUP_CAP_FACTOR * budget_s
    n, chunk, largest = 0, 1, 0
    previous: Optional[float] = None
    while True:
        interrupt.check()  # one swallowed in the first step (a compile's callback)
        t = clock()
        step.run(chunk)
        step.synchronize()
        per_iter, elapsed = ranks.agree(((clock() - t) / chunk, clock() - start))
        n += chunk
        largest = max(largest, chunk)
        steady = (elapsed >= budget_s and n >= min_steps and previous is not None
                  and abs(per_iter - previous) <= STEADY_REL * previous)
        if steady or elapsed >= cap_s:
            return WarmUp(n + 1, clock() - t0, first_s, per_iter, steady, first_loss)
        previous = per_iter
        if elapsed < budget_s:  # grow, but never past what the remaining budget holds
            chunk = max(1, min(chunk * 2, int((budget_s - elapsed) / max(per_iter, 1e-9))))
        else:  # past the budget: chunks as large as any so far, so they compare like with like
            chunk = largest


def iterations_for(min_trial_s: float, seconds_per_iteration: float) -> int:
    # The tolerance keeps clock rounding (0.05 / 0.000999999...) from adding a step.
    return max(1, math.ceil(min_trial_s / max(seconds_per_iteration, 1e-9) - 1e-6))


# A trial shorter than this fraction of min_trial_s is run again (at most
# MAX_DISCARDED_TRIALS times in a run, so a step that keeps speeding up cannot loop).
DISCARD_FRACTION = 0.5
MAX_DISCARDED_TRIALS = 3

LATENCY_PASS_STEPS = 200  # steps timed one by one when timing would slow the trial


def run_trial(step: Step, trial: int, iterations: int, record_latency: bool,
              sampler: Sampler, ranks: RankContext = SINGLE_RANK) -> TrialResult:
    separate_pass = record_latency and step.latency_timing_syncs
    timer = step.make_timer(iterations) if record_latency and not separate_pass else None
    step.synchronize()
    ranks.barrier()  # every rank starts together
    sampler.begin_trial(trial)
    t0 = clock()
    step.run(iterations, timer)
    step.synchronize()
    ranks.barrier()  # and the trial ends when the slowest rank's device is done
    duration = clock() - t0
    telemetry = sampler.end_trial()
    duration = ranks.agree(duration)  # rank 0's clock
    if separate_pass:  # after the trial's bracket: its throughput is not disturbed
        timer = step.make_timer(min(iterations, LATENCY_PASS_STEPS))
        step.run(min(iterations, LATENCY_PASS_STEPS), timer)
        step.synchronize()
    return TrialResult(trial, iterations, duration,
                       timer.latencies_s() if timer is not None else None,
                       telemetry, step.loss())


def _stop_reason(config: ProtocolConfig, done: int, throughputs: List[float],
                 spent_s: float) -> Optional[str]:
    """Why the trials stop after `done` of them, or None to run another."""
    if done < config.trials:
        return None
    if config.target_rel_ci is None:
        return STOP_FIXED
    if rel_ci_halfwidth(throughputs) <= config.target_rel_ci:  # inf below 6 trials
        return STOP_TARGET_MET
    if done >= config.max_trials:
        return STOP_TRIAL_CAP
    if spent_s >= config.max_time_s:
        return STOP_TIME_CAP
    return None


def measure(step: Step, config: ProtocolConfig, on_trial: Callable[[TrialResult], None],
            sampler: Optional[Sampler] = None, progress: Progress = no_progress,
            ranks: RankContext = SINGLE_RANK) -> tuple[Calibration, str]:
    """Runs the protocol; calls `on_trial` after every kept trial (so results are written
    as they come). Returns the calibration and the stop reason."""
    sampler = sampler or NullSampler()
    progress("warmup", seconds=config.warmup_s)
    warm = warm_up(step, config.warmup_s, ranks=ranks)
    fixed = config.iterations_per_trial is not None  # calibrated by the run's first process
    iterations = (config.iterations_per_trial if fixed
                  else iterations_for(config.min_trial_s, warm.seconds_per_iteration))
    calibration = Calibration(warm.iterations, warm.seconds, warm.first_step_s, warm.steady,
                              warm.seconds_per_iteration, iterations,
                              first_loss=warm.first_loss)
    throughputs: List[float] = []
    policy = ThermalPolicy(config, sampler, ranks)
    started = clock()
    trial = config.first_trial
    replaced = 0  # trials run and replaced (throttled): they do not count
    replacement = False  # the coming trial replaces a throttled one
    per_iter = warm.seconds_per_iteration  # the warm-up's estimate, then the last trial's
    while True:
        done = trial - config.first_trial - replaced
        # rank 0's decision (the time cap reads each rank's own clock)
        stop = ranks.agree(_stop_reason(config, done, throughputs, clock() - started)
                           if done >= config.trials else None)
        if stop is not None:
            break
        thermal = policy.before_trial(trial, replacement)
        # seconds_per_iteration and target_rel_ci: for the progress display's ETA
        progress("trial", trial=done, trials=config.trials,
                 iterations=iterations, seconds_per_iteration=per_iter,
                 target_rel_ci=config.target_rel_ci)
        result = run_trial(step, trial, iterations, config.record_latency, sampler, ranks)
        per_iter = result.duration_s / result.iterations
        if (not fixed and result.duration_s < DISCARD_FRACTION * config.min_trial_s
                and len(calibration.discarded_trials) < MAX_DISCARDED_TRIALS):
            # A trial this short measures the estimate's error, not the step: run it again.
            sampler.discard_trial(trial)
            calibration.discarded_trials.append(
                {"trial": trial, "iterations": result.iterations, "duration_s": result.duration_s})
            iterations = iterations_for(config.min_trial_s, per_iter)
            continue
        verdict = policy.judge(trial, result.telemetry)
        result.thermal = {**thermal, "excluded": verdict.excluded}
        if verdict.excluded is None:
            throughputs.append(result.iterations / result.duration_s)
        on_trial(result)
        if verdict.stop is not None:
            raise ThrottleStop(verdict.stop)
        # The warm-up estimate can be off (a clock change): keep later trials at least
        # min_trial_s long.
        if not fixed and result.duration_s < 0.8 * config.min_trial_s:
            iterations = iterations_for(config.min_trial_s, per_iter)
        trial += 1
        replacement = verdict.replaced
        replaced += verdict.replaced
    calibration.throttle = policy.record()
    return calibration, stop
