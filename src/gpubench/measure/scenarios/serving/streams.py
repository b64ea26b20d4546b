"""The serving scenarios whose queries come one after another (base.py has
what they share):

- `single-stream`: one sample a query, the next issued when the last completes; MLPerf
  reports its p90 latency (here p50, p90, p99 and p99.9 too).
- `multi-stream`: queries of S samples (--samples-per-query, default 8) back to back,
  each one batch; MLPerf reports its p99 query latency.
- `offline`: one query of all a trial's samples, issued at once, served in batches of
  the largest size (--max-batch; the last one partial); samples/s from the issue to the
  last batch's outputs, as MLPerf's offline scenario. Unlike `throughput` (batches
  already on the device, cycled back to back without a synchronisation between them,
  its default), every batch here is gathered from host memory and its outputs copied
  back before the next: a server's work, the copies included.

Each runs --trials trials of at least --min-trial-s (and, streams, --min-queries
queries), one row each.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import numpy as np

from gpubench.measure.protocol import STOP_FIXED
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.scenarios.serving.base import (
    ServingScenario, Trial, clock, serve_timed, serving_record, trial_row, warm_shapes,
)
from gpubench.measure.scenarios.serving.options import DEFAULT_SAMPLES_PER_QUERY


class StreamScenario(ServingScenario):
    """single-stream (batch 1) and multi-stream (batch S): queries back to back."""

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        step = ctx.step
        s, library, clock_facts, warm = self.start(ctx, lambda batch: [batch])
        per_query = warm.seconds_per_batch
        expected = max(s.min_queries, math.ceil(s.min_duration_s / max(per_query, 1e-9)))
        records: List[Dict[str, Any]] = []
        for trial in range(s.trials):
            ctx.progress("trial", trial=trial, trials=s.trials, iterations=expected,
                         seconds_per_iteration=per_query)
            queries = np.random.default_rng([s.seed, 3, trial]).integers(
                0, len(library), (expected, s.batch))
            step.synchronize()
            ctx.sampler.begin_trial(trial)
            latencies, seconds = self._queries(step.serve, queries, s.min_duration_s,
                                               s.min_queries)
            telemetry = ctx.sampler.end_trial()
            measured = Trial(trial, seconds, len(latencies),
                             len(latencies) * s.batch, [s.batch] * len(latencies), latencies)
            row, record = trial_row(ctx, measured, telemetry)
            records.append(record)
            ctx.emit(row)
        return STOP_FIXED, serving_record(ctx, s, clock_facts, warm, records)

    @staticmethod
    def _queries(serve: Any, queries: np.ndarray, min_s: float,
                 min_queries: int) -> Tuple[np.ndarray, float]:
        """Issues queries one after another (each when the last completed) until both
        minimums are met: their latencies, and the seconds from the first issue to the
        last completion."""
        latencies: List[float] = []
        started = done = clock()
        i, k = 0, len(queries)
        while len(latencies) < min_queries or done - started < min_s:
            issued = clock()
            done = serve_timed(serve, queries[i % k])
            latencies.append(done - issued)
            i += 1
        return np.asarray(latencies), done - started


class SingleStreamScenario(StreamScenario):
    name = "single-stream"

    def batch_size(self, req: Any, workload: Any) -> int:
        return 1  # one sample a query


class MultiStreamScenario(StreamScenario):
    name = "multi-stream"

    def batch_size(self, req: Any, workload: Any) -> int:
        return req.batch_size or DEFAULT_SAMPLES_PER_QUERY  # S samples a query


class OfflineScenario(ServingScenario):
    name = "offline"
    variable_batches = True  # the last batch of the query is partial

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        step = ctx.step
        s, library, clock_facts, warm = self.start(ctx, lambda batch: [batch])
        # the query: enough samples to last min_trial_s at the warm-up's rate
        n = max(s.batch, math.ceil(s.min_duration_s / warm.seconds_per_batch * s.batch))
        if n % s.batch:  # the partial last batch's shape, warmed as the others were
            warm_shapes(step.serve, [n % s.batch], len(library),
                        np.random.default_rng([s.seed, 4]))
        records: List[Dict[str, Any]] = []
        for trial in range(s.trials):
            ctx.progress("trial", trial=trial, trials=s.trials, iterations=-(-n // s.batch),
                         seconds_per_iteration=warm.seconds_per_batch)
            samples = np.random.default_rng([s.seed, 3, trial]).integers(0, len(library), n)
            batches = [samples[i:i + s.batch] for i in range(0, n, s.batch)]
            step.synchronize()
            ctx.sampler.begin_trial(trial)
            issued = clock()  # the whole query at once
            for batch in batches:
                done = serve_timed(step.serve, batch)
            telemetry = ctx.sampler.end_trial()
            measured = Trial(trial, done - issued, 1, n, [len(b) for b in batches])
            row, record = trial_row(ctx, measured, telemetry)
            records.append(record)
            ctx.emit(row)
        return STOP_FIXED, serving_record(ctx, s, clock_facts, warm, records,
                                          samples_per_query=n)
