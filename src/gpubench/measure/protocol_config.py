"""The measurement protocol's settings and their defaults (measure/protocol.py runs it),
apart so that the option declaration (measure/options.py) takes its defaults from here
without importing the protocol's loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


# The defaults of `gpubench run` and of suites (docs/compare.md, "Statistical defaults", has the
# figures they were chosen from): one process timing 6 trials (the fewest whose range
# is a 95% CI of the median), or several processes timing 2 each.
DEFAULT_PROCESSES = 1

# Throttle-aware trials (measure/thermal.py; docs/how-it-measures.md, "Throttled trials"):
# what a trial whose GPU clocks were throttled becomes. `exclude` by default: a throttled
# trial measures the cooling, not the software, and replacing it keeps the trial count.
THROTTLE_POLICIES = ("flag", "exclude", "rerun", "fail")
DEFAULT_ON_THROTTLE = "exclude"
DEFAULT_THROTTLE_RERUNS = 2
MAX_THROTTLE_RERUNS = 10  # replacements per run at most: past this, fix the cooling
TRIALS_ONE_PROCESS = 6
TRIALS_PER_PROCESS = 2


def default_trials(processes: int) -> int:
    """Trials per process when the user names none."""
    return TRIALS_ONE_PROCESS if processes == 1 else TRIALS_PER_PROCESS


@dataclass(frozen=True)
class ProtocolConfig:
    """The protocol's settings (their options, measure/options.py, take these defaults)
    and what the run adds."""

    trials: int = TRIALS_ONE_PROCESS  # the option's default: default_trials(processes)
    warmup_s: float = 1.0
    min_trial_s: float = 1.0
    record_latency: bool = False
    target_rel_ci: Optional[float] = None  # e.g. 0.01: CI within 1% of the median
    max_time_s: float = 120.0  # cap on the time spent in trials when chasing the target
    max_trials: int = 100
    # Set for the later worker processes of a run (--processes): the first process
    # calibrated the iterations, the rest time the same work, numbering trials on.
    iterations_per_trial: Optional[int] = None
    first_trial: int = 0
    # Throttle-aware trials (measure/thermal.py): the policy for a throttled trial, the
    # replacements a run may make, and the wait before each trial (seconds; below a GPU
    # temperature in C). None: no wait asked.
    on_throttle: str = DEFAULT_ON_THROTTLE
    throttle_reruns: int = DEFAULT_THROTTLE_RERUNS
    cooldown_s: Optional[float] = None
    start_below_c: Optional[float] = None
