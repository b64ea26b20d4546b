"""The `server` scenario (MLPerf Inference's): queries of one sample arrive as a Poisson
process (arrivals.py, its own thread), wait in the dynamic batcher's queue
(batcher.py), and the serving loop runs them in batches of up to the step's
batch size (--max-batch). A query's latency runs from its scheduled arrival to its
outputs being back in host memory, so it holds the queueing.

At a fixed rate (--target-qps): --trials probes of that rate, each a row (each trial
draws its own arrivals from the seed). With --find-max-qps: a search for the highest
rate whose p99 (the early-stopping bound) meets --latency-bound-ms, every probe a row,
the last one carrying the result (`max_qps`).

A probe issues its schedule (at least --min-trial-s and --min-queries), then waits for
the queries still queued at most DRAIN_BOUNDS x the latency bound (without a bound: as
long as the schedule ran). What is still unfinished then counts with the latency it had
reached, a lower bound past the bound: an overloaded probe fails without waiting for its
whole backlog.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from gpubench.measure.protocol import STOP_FIXED
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.scenarios.serving.arrivals import (
    ArrivalThread, Seed, poisson_schedule, query_samples,
)
from gpubench.measure.scenarios.serving.batcher import QueryQueue
from gpubench.measure.scenarios.serving.base import (
    ServingScenario, ServingSettings, Trial, clock, serve_timed, serving_record, trial_row,
)
from gpubench.telemetry import Sampler

STOP_SEARCHED = "max_qps_found"
DRAIN_BOUNDS = 2.0  # queued queries are waited for this many latency bounds after the last arrival
LEAD_S = 0.005  # the schedule starts this long after the arrival thread is started
SEARCH_REL_TOL = 0.02  # the search stops when the highest pass and lowest fail are this close
MAX_PROBES = 16
GROWTH = 1.5  # the step up while probes pass (the start is near capacity already)
SWITCH_INTERVAL_S = 0.0002  # the GIL's time slice while a probe runs (run_probe says why)
LAG_SHARE, LAG_WARN_MS = 0.2, 1.0  # issue lag (p99) worth a warning: of the bound, or without one


class QpsSearch:
    """Bisection for the highest rate that passes. It starts at `start_qps` (the warm-up's
    capacity estimate: full batches back to back, which no server beats by much); while
    rates pass it steps up by GROWTH, while they fail it halves, and once it has a pass
    and a failure it bisects between the highest pass and the lowest failure until they
    are within `rel_tol` of each other (or `max_probes` ran). `max_qps` is the highest
    rate that passed (None: none did)."""

    def __init__(self, start_qps: float, rel_tol: float = SEARCH_REL_TOL,
                 max_probes: int = MAX_PROBES) -> None:
        self.rate = float(start_qps)
        self.rel_tol, self.max_probes = rel_tol, max_probes
        self.max_qps: Optional[float] = None  # the highest pass
        self.lowest_fail: Optional[float] = None
        self.probes: List[Tuple[float, bool]] = []
        self.done = False

    def record(self, passed: bool) -> None:
        """The probe at `rate` passed or failed: moves `rate` to the next probe."""
        self.probes.append((self.rate, passed))
        if passed:
            self.max_qps = self.rate
        else:
            self.lowest_fail = self.rate
        lo, hi = self.max_qps, self.lowest_fail
        if (lo is not None and hi is not None and hi - lo <= self.rel_tol * hi) \
                or len(self.probes) >= self.max_probes:
            self.done = True
        elif hi is None:
            self.rate = GROWTH * lo
        elif lo is None:
            self.rate = hi / 2
        else:
            self.rate = (lo + hi) / 2


def run_probe(serve: Callable[[np.ndarray], Optional[float]], library_size: int,
              rate_qps: float, seed: Seed, s: ServingSettings, sampler: Sampler,
              trial: int) -> Tuple[Trial, Dict[str, Any]]:
    """One probe at `rate_qps`, arrivals on their thread and batches on this one: what it
    measured, and its telemetry."""
    schedule = poisson_schedule(rate_qps, seed, s.min_duration_s, s.min_queries)
    samples = query_samples(seed, len(schedule), library_size)
    drain_s = DRAIN_BOUNDS * s.latency_bound_s if s.latency_bound_s else float(schedule[-1])
    completed = np.full(len(schedule), np.nan)
    batch_sizes: List[int] = []
    service_s: List[float] = []
    sampler.begin_trial(trial)
    start = clock() + LEAD_S
    deadline = start + float(schedule[-1]) + drain_s
    switch = sys.getswitchinterval()
    queue = QueryQueue(s.batch, s.batch_timeout_s, start + schedule)
    arrivals = ArrivalThread(queue.issue_due)
    # The arrival thread waits for the GIL each time it wakes: at Python's default switch
    # interval (5 ms) the serving loop's Python code could hold it that long and every
    # burst would be issued late. Shorter slices keep the issue lag to a fraction of a ms.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    arrivals.start()
    try:
        while True:
            batch = np.asarray(queue.next_batch(deadline), dtype=np.int64)
            if not batch.size:
                break
            began = clock()
            done = serve_timed(serve, samples[batch])
            service_s.append(clock() - began)
            completed[batch] = done
            batch_sizes.append(len(batch))
    finally:
        sys.setswitchinterval(switch)
        arrivals.join_and_check()
    end = clock()
    telemetry = sampler.end_trial()
    due = start + schedule
    finished = ~np.isnan(completed)
    unfinished = int((~finished).sum())
    last = end if unfinished else float(completed.max())
    lag_ms = (queue.issued_s - due) * 1e3
    extra = {"offered_qps": rate_qps, "unfinished": unfinished, "drain_limit_s": drain_s,
             "service_ms_mean": float(np.mean(service_s)) * 1e3 if service_s else None,
             "issue_lag_ms": {"p50": float(np.nanpercentile(lag_ms, 50)),
                              "p99": float(np.nanpercentile(lag_ms, 99)),
                              "max": float(np.nanmax(lag_ms))}}
    return Trial(trial, last - float(due[0]), len(schedule), int(finished.sum()), batch_sizes,
                 np.where(finished, completed, end) - due, unfinished, rate_qps, extra,
                 np.asarray(service_s)), telemetry


class ServerScenario(ServingScenario):
    name = "server"
    variable_batches = True

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        step = ctx.step
        # every batch size the batcher may form, twice before timing (serving.warm_shapes)
        s, library, clock_facts, warm = self.start(ctx, lambda batch: range(1, batch + 1))
        capacity = s.batch / warm.seconds_per_batch  # queries of one sample
        records: List[Dict[str, Any]] = []

        def probe(rate: float, seed: Seed, trial: int) -> Dict[str, Any]:
            measured, telemetry = run_probe(step.serve, len(library), rate, seed, s,
                                            ctx.sampler, trial)
            row, record = trial_row(ctx, measured, telemetry, s.latency_bound_s)
            records.append(record)
            return row

        if not s.find_max_qps:
            for trial in range(s.trials):
                ctx.progress("trial", trial=trial, trials=s.trials,
                             iterations=max(s.min_queries, int(s.min_duration_s * s.target_qps)),
                             seconds_per_iteration=1 / s.target_qps)
                ctx.emit(probe(s.target_qps, (s.seed, trial), trial))
            extra = serving_record(ctx, s, clock_facts, warm, records,
                                   capacity_estimate_qps=capacity)
            extra["warnings"] = issue_lag_warnings(records, s.latency_bound_s)
            return STOP_FIXED, extra
        search = QpsSearch(capacity)
        while not search.done:
            trial = len(search.probes)
            ctx.progress("probe", probe=trial, qps=search.rate,
                         bound_ms=s.latency_bound_s * 1e3, best_qps=search.max_qps)
            row = probe(search.rate, s.seed, trial)  # every probe on the same arrivals, scaled
            search.record(bool(row.get("latency_bound_met")))
            if search.done:
                row["max_qps"] = search.max_qps
            ctx.emit(row)
        extra = serving_record(ctx, s, clock_facts, warm, records, capacity_estimate_qps=capacity,
                               search={"start_qps": capacity, "rel_tol": SEARCH_REL_TOL,
                                       "max_probes": MAX_PROBES, "max_qps": search.max_qps,
                                       "probes": [{"qps": r, "passed": p}
                                                  for r, p in search.probes]})
        held = [r for r, (_, passed) in zip(records, search.probes) if passed]
        extra["warnings"] = issue_lag_warnings(held, s.latency_bound_s)  # where it mattered
        if search.max_qps is None:
            extra["warnings"].append(
                f"no probed rate met the latency bound ({s.latency_bound_s * 1e3:g} ms p99), "
                f"down to {search.probes[-1][0]:.4g} QPS: max_qps is empty")
        return STOP_SEARCHED, extra


def issue_lag_warnings(records: List[Dict[str, Any]], bound_s: Optional[float]) -> List[str]:
    """A warning when the arrival thread issued queries late by a visible share of the
    bound (LAG_SHARE; without a bound, LAG_WARN_MS): at such rates gpubench's own
    Python threads are part of the latency measured."""
    worst = max(records, key=lambda r: r["issue_lag_ms"]["p99"], default=None)
    if worst is None:
        return []
    lag_ms = worst["issue_lag_ms"]["p99"]
    limit_ms = LAG_SHARE * bound_s * 1e3 if bound_s else LAG_WARN_MS
    if lag_ms <= limit_ms:
        return []
    return [f"the arrival thread issued queries up to {lag_ms:.3g} ms late (p99, at "
            f"{worst['offered_qps']:,.0f} QPS): at this rate gpubench's own Python threads "
            "are a visible part of the latency measured (run.json serving.trials[].issue_lag_ms)"]
