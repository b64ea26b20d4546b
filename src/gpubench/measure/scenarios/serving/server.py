"""The `server` scenario (MLPerf Inference's): queries of one sample arrive as a Poisson
process (arrivals.py, its own thread), wait in the dynamic batcher's queue
(batcher.py), and the serving loop runs them in batches of up to the step's
batch size (--max-batch). A query's latency runs from its scheduled arrival to its
outputs being back in host memory, so it holds the queueing.

At a fixed rate (--target-qps): --trials probes of that rate, each a row (each trial
draws its own arrivals from the seed). With --find-max-qps: a search for the highest
rate whose p99 (the early-stopping bound) meets --latency-bound-ms (search.py: which
rate next, repeats and re-probes), every probe a row, the last one carrying the result
(`max_qps`).

Each probe is judged for contention (`contended`: other processes on the CPUs or GPU,
telemetry/contention.py) and for stalls (`stall`: a batch or an issue held far past its
time); the search runs a failure that either may explain again.

A probe issues its schedule (at least --min-trial-s and --min-queries), then waits for
the queries still queued at most DRAIN_BOUNDS x the latency bound (without a bound: as
long as the schedule ran). What is still unfinished then counts with the latency it had
reached, a lower bound past the bound: an overloaded probe fails without waiting for its
whole backlog.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace
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
from gpubench.measure.scenarios.serving.search import SEARCH_MIN_QUERIES, QpsSearch
from gpubench.measure.scenarios.serving.search_warnings import issue_lag_warnings, search_warnings
from gpubench.telemetry import Sampler
from gpubench.telemetry.contention import ContentionWatch

STOP_SEARCHED = "max_qps_found"
DRAIN_BOUNDS = 2.0  # queued queries are waited for this many latency bounds after the last arrival
LEAD_S = 0.005  # the schedule starts this long after the arrival thread is started
SWITCH_INTERVAL_S = 0.0002  # the GIL's time slice while a probe runs (run_probe says why)
# A probe stalled when a batch took (the machine held the step), or the arrival thread
# issued a query late by (it waited for a core), both STALL_FACTOR x the warm-up's full
# batch and half the bound: its failure may be the machine's, so the search runs it again.
STALL_FACTOR, STALL_BOUND_SHARE = 4.0, 0.5


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


def stall(trial: Trial, full_batch_s: float, bound_s: Optional[float]) -> Dict[str, Any]:
    """The stall test (STALL_FACTOR, STALL_BOUND_SHARE) on a probe: run.json's record of
    it, `fired` whether the machine held the step or the arrival thread."""
    limit_s = max(STALL_FACTOR * full_batch_s, STALL_BOUND_SHARE * (bound_s or 0.0))
    longest_s = float(np.max(trial.service_s)) if trial.service_s is not None and \
        len(trial.service_s) else 0.0
    lag_s = (trial.extra or {}).get("issue_lag_ms", {}).get("max", 0.0) / 1e3
    held, late = longest_s > limit_s, lag_s > limit_s
    return {"fired": bool(held or late), "held": bool(held), "late": bool(late),
            "longest_batch_ms": longest_s * 1e3, "issue_lag_max_ms": lag_s * 1e3,
            "full_batch_ms": full_batch_s * 1e3, "limit_ms": limit_s * 1e3}


def overloaded(row: Dict[str, Any], record: Dict[str, Any], bound_s: float) -> bool:
    """The load failed the probe, whatever else did: queries were still queued at the
    drain limit, or the median missed the bound with queries issued on time (a late
    arrival thread delays every query instead)."""
    p50 = row.get("latency_p50_ms")
    missed = p50 is None or not p50 <= bound_s * 1e3  # NaN: too few queries to claim it
    return bool(row.get("queries_unfinished")) or (missed and not record["stall"]["late"])


def threads_hint(ctx: ScenarioContext) -> bool:
    """A CPU backend that may use every core (--threads not given, or as many as there
    are): fewer threads would leave gpubench's own a core."""
    threads, cpus = ctx.request.threads, os.cpu_count() or 1
    return ctx.step.device.kind == "cpu" and (threads is None or threads >= cpus)


class ServerScenario(ServingScenario):
    name = "server"
    variable_batches = True

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        step = ctx.step
        # every batch size the batcher may form, twice before timing (serving.warm_shapes)
        s, library, clock_facts, warm = self.start(ctx, lambda batch: range(1, batch + 1))
        capacity = s.batch / warm.seconds_per_batch  # queries of one sample
        records: List[Dict[str, Any]] = []
        # other processes on the CPUs or the GPU during each probe (telemetry/contention.py)
        watch = ContentionWatch(ctx.sampler, on_gpu=step.device.kind == "cuda")

        def probe(rate: float, seed: Seed, trial: int, settings: ServingSettings
                  ) -> Dict[str, Any]:
            measured, telemetry = run_probe(step.serve, len(library), rate, seed, settings,
                                            watch, trial)
            row, record = trial_row(ctx, measured, telemetry, s.latency_bound_s)
            # others on the CPUs or GPU; the `slow` test is the stall test's here
            row["contended"] = watch.trial_verdict(trial, 0, measured.duration_s)
            record["stall"] = stall(measured, warm.seconds_per_batch, s.latency_bound_s)
            records.append(record)
            return row

        if not s.find_max_qps:
            for trial in range(s.trials):
                ctx.progress("trial", trial=trial, trials=s.trials,
                             iterations=max(s.min_queries, int(s.min_duration_s * s.target_qps)),
                             seconds_per_iteration=1 / s.target_qps)
                ctx.emit(probe(s.target_qps, (s.seed, trial), trial, s))
            extra = serving_record(ctx, s, clock_facts, warm, records,
                                   capacity_estimate_qps=capacity)
            extra["contention"] = watch.record()
            extra["warnings"] = issue_lag_warnings(records, s.latency_bound_s) + watch.warnings()
            return STOP_FIXED, extra
        search = QpsSearch(capacity)
        longer = replace(s, min_queries=max(s.min_queries, SEARCH_MIN_QUERIES))
        while not search.done:
            trial = len(search.probes)
            ctx.progress("probe", probe=trial, qps=search.rate,
                         bound_ms=s.latency_bound_s * 1e3, best_qps=search.max_qps,
                         repeat=search.repeating, confirming=search.confirming,
                         max_probes=search.max_probes)
            row = probe(search.rate, s.seed, trial, longer)  # every probe on the same arrivals, scaled
            p99 = row.get("latency_p99_ms")
            search.record(bool(row.get("latency_bound_met")), row["contended"],
                          stalled=records[-1]["stall"]["fired"],
                          overloaded=overloaded(row, records[-1], s.latency_bound_s),
                          queries=row["queries"],
                          p99_ms=p99 if p99 is not None and math.isfinite(p99) else None)
            if search.done:
                row["max_qps"] = search.max_qps
            ctx.emit(row)
        extra = serving_record(ctx, longer, clock_facts, warm, records,
                               capacity_estimate_qps=capacity,
                               search={"start_qps": capacity, **search.record_json()})
        extra["contention"] = watch.record()
        extra["warnings"] = search_warnings(search, records, s.latency_bound_s, capacity,
                                            threads_hint=threads_hint(ctx)) \
            + watch.warnings()
        return STOP_SEARCHED, extra
