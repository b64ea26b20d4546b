"""What the serving scenarios (MLPerf Inference's LoadGen scenarios: streams.py,
server.py) share: their settings, the sample library, the warm-up, and the row
a trial or probe becomes.

Every serving scenario drives the step's `serve` capability (backends/base.py): a
query's samples are gathered from a library in host memory, run as one batch of any
size up to the step's batch size, and their outputs copied back to host memory, as a
server receives requests and answers them. A query's latency runs from its issue (its
scheduled arrival in the server scenario) to its outputs being complete: on the
device's clock where the step has events (mapped onto the host's), else on the host
clock after the step synchronised (run.json `serving.latency_clock`).

Latency percentiles are LoadGen's early-stopping estimates (early_stopping.py):
a trial too short to claim a percentile leaves it empty. A trial lasts at least
`min_trial_s` and holds at least `min_queries` queries (default: the fewest that can
claim p99 at the stated confidence, 662 as LoadGen's), as LoadGen's minimum duration and
query count.

Before anything is timed, every batch size a scenario will serve runs WARMUP_RUNS_PER_SHAPE
(2) times: a framework that compiles per shape does it on the first run, and CUDA-graph
trees (torch.compile's reduce-overhead) run a new shape eagerly once and record its graph
on the second; only the third and later replay it. Twice for every exec mode: the
second run of a shape costs one batch, with nothing left to compile.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gpubench.measure.scenarios.base import Scenario, ScenarioContext
from gpubench.measure.scenarios.serving.early_stopping import (
    CONFIDENCE, claimed_percentiles_ms, observed_percentiles_ms, queries_needed,
)
from gpubench.measure.scenarios.serving.options import SERVING
from gpubench.telemetry import TRIAL_TELEMETRY_COLUMNS

clock = time.perf_counter

DEFAULT_MIN_QUERIES = queries_needed(0.99, CONFIDENCE)  # p99 claimable: 662, as LoadGen
LIBRARY_SAMPLES = 1024  # host samples queries draw from (at least 4 batches)
LIBRARY_MAX_BYTES = 256 << 20
WARMUP_MIN_BATCHES = 10
WARMUP_RUNS_PER_SHAPE = 2  # eager once, then a CUDA-graph tree records (module docstring)

# The measured columns the serving scenarios fill.
SERVING_COLUMNS = (
    "trial", "iterations", "samples", "queries", "duration_s", "throughput_samples_per_s",
    "offered_qps", "achieved_qps", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
    "latency_p99_ms", "latency_p999_ms", "latency_bound_met", "queries_unfinished",
    "batch_size_mean", "batch_size_p50", "batch_size_max", "tflops", "mfu", "tokens_per_s",
    "peak_mem_bytes", "samples_per_joule", "energy_j_per_query", "max_qps", "contended",
) + tuple(TRIAL_TELEMETRY_COLUMNS)


@dataclass(frozen=True)
class ServingSettings:
    batch: int  # the largest batch: 1, S (multi-stream), --max-batch (server, offline)
    min_duration_s: float  # each trial or probe at least (--min-trial-s)
    min_queries: int
    warmup_s: float
    trials: int
    seed: int
    target_qps: Optional[float] = None  # server at a fixed rate
    latency_bound_s: Optional[float] = None
    batch_timeout_s: float = 0.0
    find_max_qps: bool = False


def settings_of(ctx: Any) -> ServingSettings:
    req = ctx.request
    bound = req.latency_bound_ms
    # not given: greedy, a batch goes as soon as the model is free (the option's `means`)
    timeout = SERVING["batch_timeout_ms"].in_effect(req.batch_timeout_ms)
    return ServingSettings(
        batch=ctx.batch_size, min_duration_s=req.protocol.min_trial_s,
        min_queries=req.min_queries or DEFAULT_MIN_QUERIES, warmup_s=req.protocol.warmup_s,
        trials=req.protocol.trials, seed=req.seed, target_qps=req.target_qps,
        latency_bound_s=None if bound is None else bound / 1e3,
        batch_timeout_s=timeout / 1e3,
        find_max_qps=req.find_max_qps)


def sample_library(ctx: Any, batch: int) -> np.ndarray:
    """The host samples queries are drawn from (LoadGen's query sample library): the
    run's data (synthetic or real), LIBRARY_SAMPLES of them, at least 4 batches and at
    most LIBRARY_MAX_BYTES, made before anything is timed."""
    from gpubench.data.sources import resident_batches

    workload, req = ctx.workload, ctx.request
    per_sample = int(np.prod(workload.input_shape)) * workload.input_itemsize
    size = max(4 * batch, min(LIBRARY_SAMPLES, LIBRARY_MAX_BYTES // max(per_sample, 1)))
    (x, _), = resident_batches(workload, size, 1, req.seed, req.data, req.data_dir)
    return np.ascontiguousarray(x)


Serve = Callable[[np.ndarray], Optional[float]]


def serve_timed(serve: Serve, samples: np.ndarray) -> float:
    """Runs one batch; the moment its outputs were complete (the step's device clock,
    else the host's after it returned)."""
    done = serve(samples)
    return clock() if done is None else done


@dataclass(frozen=True)
class WarmUp:
    seconds: float
    batches: int
    shapes: Tuple[int, ...]  # batch sizes run WARMUP_RUNS_PER_SHAPE times before the timed warm-up
    seconds_per_batch: float  # of `batch` samples, from the warm-up's second half

    def record(self) -> Dict[str, Any]:
        return {"seconds": self.seconds, "batches": self.batches,
                "batch_sizes_run_first": f"{min(self.shapes)}-{max(self.shapes)}"
                if len(self.shapes) > 2 else list(self.shapes),
                "runs_per_batch_size": WARMUP_RUNS_PER_SHAPE,
                "seconds_per_batch": self.seconds_per_batch}


def warm_shapes(serve: Serve, shapes: Sequence[int], library_size: int,
                rng: np.random.Generator) -> int:
    """Serves a batch of every size in `shapes` WARMUP_RUNS_PER_SHAPE times in a row
    (each shape's compile, then its CUDA graph's recording, before any timing); the
    batches it ran."""
    for size in shapes:
        for _ in range(WARMUP_RUNS_PER_SHAPE):
            serve(rng.integers(0, library_size, size))
    return WARMUP_RUNS_PER_SHAPE * len(shapes)


def warm_up(serve: Serve, library_size: int, batch: int, shapes: Sequence[int],
            budget_s: float, seed: int) -> WarmUp:
    """Runs every batch size in `shapes` WARMUP_RUNS_PER_SHAPE times (warm_shapes), then
    batches of `batch` back to back for `budget_s` (at least WARMUP_MIN_BATCHES); the
    second half estimates seconds per batch."""
    rng = np.random.default_rng([seed, 2])
    t0 = clock()
    shaped = warm_shapes(serve, shapes, library_size, rng)
    times: List[float] = []
    while clock() - t0 < budget_s or len(times) < WARMUP_MIN_BATCHES:
        idx = rng.integers(0, library_size, batch)
        start = clock()
        serve_timed(serve, idx)
        times.append(clock() - start)
    return WarmUp(clock() - t0, len(times) + shaped, tuple(shapes),
                  float(np.median(times[len(times) // 2:])))


def batch_summary(batch_sizes: Sequence[int]) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """The rows' batch-size columns and the full histogram (size -> batches) for
    run.json."""
    sizes = np.asarray(batch_sizes, dtype=int)
    if not sizes.size:
        return {}, {}
    counts = np.bincount(sizes)
    histogram = {str(s): int(c) for s, c in enumerate(counts) if c}
    return {"batch_size_mean": float(sizes.mean()), "batch_size_p50": float(np.median(sizes)),
            "batch_size_max": int(sizes.max())}, histogram


@dataclass
class Trial:
    """What one trial or probe measured, before it becomes a row."""

    trial: int
    duration_s: float  # from the first issue to the last completion
    queries: int  # issued
    samples: int  # completed
    batch_sizes: List[int]
    latencies_s: Optional[np.ndarray] = None  # per query; None: offline (one query)
    unfinished: int = 0  # queries not complete when the probe's drain limit passed
    offered_qps: Optional[float] = None
    extra: Optional[Dict[str, Any]] = None  # for run.json
    service_s: Optional[np.ndarray] = None  # server: each batch's seconds in serve()


def trial_row(ctx: Any, trial: Trial, telemetry: Dict[str, Any],
              bound_s: Optional[float] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The row of a trial (measured columns) and its record for run.json."""
    duration = trial.duration_s
    completed = trial.queries - trial.unfinished
    flops = ctx.workload.stats.flops_per_sample("infer") * trial.samples / duration / 1e12
    tokens = ctx.workload.tokens_per_sample
    columns, histogram = batch_summary(trial.batch_sizes)
    row: Dict[str, Any] = {
        "trial": trial.trial, "iterations": len(trial.batch_sizes), "samples": trial.samples,
        "queries": trial.queries, "duration_s": duration,
        "throughput_samples_per_s": trial.samples / duration,
        "offered_qps": trial.offered_qps,
        "queries_unfinished": trial.unfinished if trial.offered_qps is not None else None,
        "tflops": flops, "mfu": flops / ctx.peak_tflops if ctx.peak_tflops else None,
        "tokens_per_s": trial.samples * tokens / duration if tokens else None,
        "peak_mem_bytes": ctx.step.peak_mem_bytes(), **columns,
        **{k: v for k, v in telemetry.items() if k in TRIAL_TELEMETRY_COLUMNS}}
    record: Dict[str, Any] = {"trial": trial.trial, "batch_histogram": histogram,
                              **(trial.extra or {})}
    if trial.latencies_s is not None and len(trial.latencies_s):
        latencies = trial.latencies_s
        row.update(claimed_percentiles_ms(latencies), achieved_qps=completed / duration,
                   latency_mean_ms=float(np.mean(latencies)) * 1e3)
        record["observed_ms"] = observed_percentiles_ms(latencies)
        if bound_s is not None:
            p99 = row["latency_p99_ms"]
            row["latency_bound_met"] = bool(trial.unfinished == 0 and math.isfinite(p99)
                                            and p99 <= bound_s * 1e3)
    energy = row.get("energy_j")
    if energy:
        row["samples_per_joule"] = trial.samples / energy
        if trial.latencies_s is not None and completed:  # offline's one query: J/sample says it
            row["energy_j_per_query"] = energy / completed
    return row, record


def serving_record(ctx: Any, settings: ServingSettings, clock_facts: Dict[str, Any],
                   warm: WarmUp, trials: List[Dict[str, Any]], **more: Any) -> Dict[str, Any]:
    """run.json's `serving`: how it was measured, the warm-up, each trial's record."""
    return {"serving": {
        "scenario": ctx.request.scenario, "batch": settings.batch,
        "min_duration_s": settings.min_duration_s, "min_queries": settings.min_queries,
        "early_stopping": {"confidence": CONFIDENCE,
                           "method": "each latency_pXX_ms is MLPerf LoadGen's early-stopping "
                                     "estimate: the t-th largest latency, t the most "
                                     "overlatency queries the run may hold at this "
                                     "confidence (binomial); empty when too few queries"},
        "inputs": "samples gathered from a host library, outputs copied back to host memory",
        **clock_facts, "warmup": warm.record(), **more, "trials": trials}}


class ServingScenario(Scenario):
    """What every serving scenario starts with: its settings, the sample library handed
    to the step, and the warm-up (every batch size in `shapes` twice first: the module docstring)."""

    needs = frozenset({"serve"})
    columns = SERVING_COLUMNS

    @staticmethod
    def start(ctx: ScenarioContext, shapes: Callable[[int], Sequence[int]]
              ) -> Tuple[ServingSettings, np.ndarray, Dict[str, Any], WarmUp]:
        s = settings_of(ctx)
        library = sample_library(ctx, s.batch)
        clock_facts = ctx.step.start_serving(library)
        ctx.progress("warmup", seconds=s.warmup_s)
        warm = warm_up(ctx.step.serve, len(library), s.batch, shapes(s.batch), s.warmup_s,
                       s.seed)
        return s, library, clock_facts, warm
