"""The wall time one run of a suite asks for, from its settings alone (no machine
facts): the planner's estimate (estimate.py) adds refusals and fork servers to it, and
the shards (shards.py) balance on it, so every machine cuts a suite into the same parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gpubench.measure.protocol import ProtocolConfig
from gpubench.suite.config import SuiteRun

# A run's worker process beyond its requested warm-up and trials: its start (a fresh
# interpreter's start and imports, or a fork of a warm server: launch/forked.py),
# building the model and the data, writing the results. Measured by
# benchmarks/isolation_overhead.py (mnist on torch-cpu, medians of 4 interleaved runs;
# the 2-core CPU dev machine, 2026-12-07; docs/suites.md): fresh 2.66 s, fork 0.30 s a
# run (tf-cpu: 4.46 s and 0.44 s). A GPU run adds its CUDA context's start to both.
FIXED_COST_S = {"fresh": 2.7, "fork": 0.3}


@dataclass(frozen=True)
class RunCost:
    seconds: float  # worker start + warm-up + trials x min_trial_s
    max_seconds: float  # the same when target_rel_ci adds trials up to its caps


def run_cost(run: SuiteRun, timeout_override: Optional[float] = None) -> RunCost:
    """The wall time of one run as its settings ask (its isolation's fixed cost on top): each trial lasts about min_trial_s
    (calibration aims at it), warm-up about warmup_s; with target_rel_ci, trials go on
    until max_time_s of trials (or ProtocolConfig.max_trials). Never beyond timeout_s
    per worker process; `processes` of them one after another."""
    s = dict(run.settings)
    timeout = timeout_override or s["timeout_s"]
    fixed_s = FIXED_COST_S[s.get("isolation") or "fork"]
    if s.get("target_accuracy") is not None:  # time-to-accuracy: epochs until the target,
        return RunCost(fixed_s, timeout)  # unknown before the first one; at most the timeout
    trials_s = s["trials"] * s["min_trial_s"]
    worst_s = trials_s
    if run.scenario == "server":  # an overloaded probe waits up to its length again
        if s.get("find_max_qps"):  # a search: typically TYPICAL_PROBES, at most MAX_PROBES
            from gpubench.measure.scenarios.serving.search import MAX_PROBES, TYPICAL_PROBES
            trials_s = TYPICAL_PROBES * s["min_trial_s"]
            worst_s = 2 * MAX_PROBES * s["min_trial_s"]
        else:
            worst_s = 2 * trials_s
    if s["target_rel_ci"] is not None:
        # The time cap is checked before each extra trial: the last one may end past it.
        capped = min(s["max_time_s"] + s["min_trial_s"], ProtocolConfig.max_trials * s["min_trial_s"])
        worst_s = max(trials_s, capped)
    # the timeout is each worker process's
    start = fixed_s + s["warmup_s"]
    k = s.get("processes", 1)  # one after another, each its own start, warm-up and trials
    return RunCost(k * min(start + trials_s, timeout), k * min(start + worst_s, timeout))
