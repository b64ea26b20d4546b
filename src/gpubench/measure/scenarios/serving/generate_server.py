"""The `server` scenario of --mode generate: requests of a prompt (--prompt-dist) and
--output-len greedy tokens arrive as a Poisson process (arrivals.py's schedule, from the
seed) and are served over the step's GenerationEngine (a static KV cache of --max-batch
slots) with --batching continuous or static (measure/generation/batching.py). Each
request's TTFT runs from its scheduled arrival (queueing included); TPOT, ITL and
goodput as measure/generation/latency.py defines them.

At a fixed rate (--target-qps): --trials probes of that rate, each a row (each trial its
own arrivals and prompts from the seed). With --find-max-qps: search.py's search for the
highest rate whose p99 TTFT and p99 TPOT meet --ttft-bound-ms and --tpot-bound-ms (and
no request left unfinished), MLPerf's rule for LLM servers; every probe a row, the last
carrying the answer (`max_goodput_qps`); every probe on the same arrivals, scaled.

A probe issues its schedule (at least --min-trial-s and --min-queries requests), then
drains for at most DRAIN_BOUNDS x a request's budget: with both bounds, TTFT bound +
(output_len - 1) x TPOT bound; without, the warm-up's full-batch request time (and at
least as long as the schedule ran). What is unfinished then misses its bounds.

Before timing, every batch size 1..max_batch runs a prefill and two decode steps (a
framework that compiles per shape does it then), then full batches of requests run back
to back for --warmup-s (at least WARMUP_ROUNDS): their prefill and decode step times
give the capacity estimate the search starts from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from gpubench.measure.generation.batching import SCHEDULERS, Served
from gpubench.measure.generation.engine import GENERATE_CAPABILITY, GenerationEngine
from gpubench.measure.generation.latency import (
    goodput_columns, latency_columns, output_tokens,
)
from gpubench.measure.generation.plan import resolved_lengths, seq_len_of
from gpubench.measure.generation.prompts import (
    PromptDist, describe, parse_prompt_dist, prompt_lengths, prompt_tokens,
)
from gpubench.measure.protocol import STOP_FIXED
from gpubench.measure.scenarios.base import Scenario, ScenarioContext
from gpubench.measure.scenarios.serving.arrivals import Seed, poisson_schedule
from gpubench.measure.scenarios.serving.base import DEFAULT_MIN_QUERIES, batch_summary
from gpubench.measure.scenarios.serving.options import SERVING
from gpubench.measure.scenarios.serving.search import QpsSearch
from gpubench.telemetry import TRIAL_TELEMETRY_COLUMNS
from gpubench.telemetry.contention import ContentionWatch

clock = time.perf_counter

STOP_SEARCHED = "max_goodput_qps_found"
DRAIN_BOUNDS = 2.0  # a probe drains at most this many request budgets after its last arrival
LEAD_S = 0.005  # the schedule starts this long after the probe is set up
WARMUP_ROUNDS = 2  # full batches of requests in the warm-up, at least

GENERATE_SERVER_COLUMNS = (
    "trial", "iterations", "duration_s", "offered_qps", "achieved_qps", "queries_unfinished",
    "samples", "throughput_samples_per_s", "tokens_per_s", "ttft_p50_ms", "ttft_p90_ms",
    "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms", "tpot_p99_ms", "itl_p50_ms", "itl_p90_ms",
    "itl_p99_ms", "output_tokens_per_s", "prefill_tokens_per_s", "energy_j_per_output_token",
    "requests", "requests_within_bounds", "goodput_rps", "max_goodput_qps",
    "latency_bound_met", "batch_size_mean", "batch_size_p50", "batch_size_max",
    "peak_mem_bytes", "kv_cache_bytes", "contended",
) + tuple(TRIAL_TELEMETRY_COLUMNS)


@dataclass(frozen=True)
class GenerateSettings:
    max_batch: int  # KV-cache slots (--max-batch)
    prompt_len: int
    output_len: int
    dist: PromptDist
    room: int  # the longest prompt the model holds beside output_len tokens
    vocab: int
    min_duration_s: float
    min_requests: int
    warmup_s: float
    trials: int
    seed: int
    batching: str
    target_qps: Optional[float] = None
    find_max_qps: bool = False
    ttft_bound_ms: Optional[float] = None
    tpot_bound_ms: Optional[float] = None

    @property
    def max_len(self) -> int:
        """Positions a slot needs: the longest prompt and its output tokens."""
        return min(self.room, self.dist.longest(self.prompt_len)) + self.output_len

    def request_budget_s(self) -> Optional[float]:
        """What the bounds allow one request (None without both)."""
        if self.ttft_bound_ms is None or self.tpot_bound_ms is None:
            return None
        return (self.ttft_bound_ms + (self.output_len - 1) * self.tpot_bound_ms) / 1e3


def settings_of(ctx: ScenarioContext) -> GenerateSettings:
    req, workload = ctx.request, ctx.workload
    seq_len = seq_len_of(workload)
    prompt_len, output_len = resolved_lengths(req, workload)
    dist = parse_prompt_dist(SERVING["prompt_dist"].in_effect(req.prompt_dist))
    return GenerateSettings(
        max_batch=ctx.batch_size, prompt_len=prompt_len, output_len=output_len, dist=dist,
        room=seq_len - output_len, vocab=int(workload.num_outputs),
        min_duration_s=req.protocol.min_trial_s,
        min_requests=req.min_queries or DEFAULT_MIN_QUERIES, warmup_s=req.protocol.warmup_s,
        trials=req.protocol.trials, seed=req.seed,
        batching=SERVING["batching"].in_effect(req.batching), target_qps=req.target_qps,
        find_max_qps=bool(req.find_max_qps), ttft_bound_ms=req.ttft_bound_ms,
        tpot_bound_ms=req.tpot_bound_ms)


def prompts_for(s: GenerateSettings, count: int, seed: List[int]) -> List[np.ndarray]:
    return prompt_tokens(prompt_lengths(s.dist, count, s.prompt_len, s.room, seed),
                         s.vocab, seed)


def warm_up(engine: GenerationEngine, s: GenerateSettings) -> Dict[str, Any]:
    """Every batch size once, then full batches for the budget (module docstring): the
    seconds of a prefill and a decode step at full batch, and a request's at full batch."""
    t0 = clock()
    for size in range(1, s.max_batch + 1):
        slots = list(range(size))
        engine.prefill(slots, prompts_for(s, size, [s.seed, 2, size]))
        for _ in range(min(2, s.output_len - 1)):
            engine.decode(slots)
        for slot in slots:
            engine.free(slot)
    prefill_s: List[float] = []
    decode_s: List[float] = []
    slots = list(range(s.max_batch))
    while len(prefill_s) < WARMUP_ROUNDS or clock() - t0 < s.warmup_s:
        prompts = prompts_for(s, s.max_batch, [s.seed, 2, 0, len(prefill_s)])
        began = clock()
        engine.prefill(slots, prompts)
        prefill_s.append(clock() - began)
        for _ in range(s.output_len - 1):
            began = clock()
            engine.decode(slots)
            decode_s.append(clock() - began)
        for slot in slots:
            engine.free(slot)
    prefill = float(np.median(prefill_s[len(prefill_s) // 2:]))
    decode = float(np.median(decode_s[len(decode_s) // 2:])) if decode_s else 0.0
    return {"seconds": clock() - t0, "rounds": len(prefill_s), "prefill_s": prefill,
            "decode_step_s": decode, "request_s": prefill + (s.output_len - 1) * decode}


def sleep_until(t: float) -> None:
    left = t - clock()
    if left > 0:
        time.sleep(left)


def run_probe(engine: GenerationEngine, s: GenerateSettings, rate_qps: float, seed: Seed,
              drain_s: float, sampler: Any, trial: int
              ) -> Tuple[Served, np.ndarray, Dict[str, Any]]:
    """One probe at `rate_qps`: what was served, the absolute arrival times, telemetry."""
    schedule = poisson_schedule(rate_qps, seed, s.min_duration_s, s.min_requests)
    prompts = prompts_for(s, len(schedule), [*np.atleast_1d(seed).tolist(), 5])
    sampler.begin_trial(trial)
    start = clock() + LEAD_S
    arrivals = start + schedule
    served = SCHEDULERS[s.batching](engine, arrivals.tolist(), prompts, s.output_len, clock,
                                    sleep_until, float(arrivals[-1]) + drain_s)
    return served, arrivals, sampler.end_trial()


def bounds_held(row: Dict[str, Any], s: GenerateSettings) -> bool:
    """Every request finished, and the p99 TTFT and TPOT within their bounds (a bound
    not given holds; a TPOT of one-token requests does not exist and holds)."""
    def within(column: str, bound: Optional[float]) -> bool:
        value = row.get(column)
        return bound is None or value is None or value <= bound
    return (not row["queries_unfinished"] and row.get("ttft_p99_ms") is not None
            and within("ttft_p99_ms", s.ttft_bound_ms) and within("tpot_p99_ms", s.tpot_bound_ms))


def rate(count: int, seconds: List[float]) -> Optional[float]:
    total = float(sum(seconds))
    return count / total if total > 0 else None


def probe_row(ctx: ScenarioContext, s: GenerateSettings, served: Served, arrivals: np.ndarray,
              rate_qps: float, telemetry: Dict[str, Any], trial: int
              ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A probe's row (measured columns) and its record for run.json. Its interval runs
    from the first arrival to the last token (to the drain limit when requests were
    cut)."""
    requests = served.requests
    finished = [r for r in requests if r.finished]
    last = (max(r.token_s[-1] for r in finished) if finished and not served.unfinished
            else served.end_s)
    duration = max(last - float(arrivals[0]), 1e-9)
    tokens = output_tokens(requests)
    batches, histogram = batch_summary(served.decode_batches)
    peak = getattr(ctx.step, "peak_mem_bytes", lambda: None)()
    row: Dict[str, Any] = {
        "trial": trial, "iterations": len(served.decode_batches), "duration_s": duration,
        "offered_qps": rate_qps, "achieved_qps": len(finished) / duration,
        "queries_unfinished": served.unfinished, "samples": len(finished),
        "throughput_samples_per_s": len(finished) / duration, "tokens_per_s": tokens / duration,
        # decode's and prefill's own rates, over their calls' device seconds (as the
        # throughput scenario's rows)
        "output_tokens_per_s": rate(sum(served.decode_batches), served.decode_s),
        "prefill_tokens_per_s": rate(served.prompt_tokens, served.prefill_s),
        **latency_columns(requests),
        **goodput_columns(requests, duration, s.ttft_bound_ms, s.tpot_bound_ms),
        **batches, "peak_mem_bytes": peak,
        **{k: v for k, v in telemetry.items() if k in TRIAL_TELEMETRY_COLUMNS}}
    if s.ttft_bound_ms is not None or s.tpot_bound_ms is not None:
        row["latency_bound_met"] = bounds_held(row, s)
    if row.get("energy_j") and tokens:
        row["energy_j_per_output_token"] = row["energy_j"] / tokens
    record = {"trial": trial, "offered_qps": rate_qps, "unfinished": served.unfinished,
              "output_tokens": tokens, "decode_batch_histogram": histogram,
              "prefill_batch_histogram": batch_summary(served.prefill_batches)[1]}
    return row, record


class GenerateServerScenario(Scenario):
    name = "server"
    needs = frozenset({GENERATE_CAPABILITY})
    columns = GENERATE_SERVER_COLUMNS

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        s = settings_of(ctx)
        engine = ctx.step.generation_engine(s.max_batch, s.max_len)  # checked there
        ctx.progress("warmup", seconds=s.warmup_s)
        warm = warm_up(engine, s)
        capacity_rps = s.max_batch / warm["request_s"]
        budget_s = s.request_budget_s()
        records: List[Dict[str, Any]] = []
        watch = ContentionWatch(ctx.sampler, on_gpu=ctx.step.device.kind == "cuda")

        def probe(rate: float, seed: Seed, trial: int) -> Dict[str, Any]:
            span_s = max(s.min_duration_s, s.min_requests / rate)
            drain_s = DRAIN_BOUNDS * (budget_s or max(warm["request_s"], span_s))
            served, arrivals, telemetry = run_probe(engine, s, rate, seed, drain_s, watch, trial)
            row, record = probe_row(ctx, s, served, arrivals, rate, telemetry, trial)
            row["kv_cache_bytes"] = engine.facts().get("kv_cache_bytes")
            row["contended"] = watch.trial_verdict(trial, 0, row["duration_s"])
            records.append({**record, "drain_limit_s": drain_s})
            return row

        record: Dict[str, Any] = {
            "scenario": self.name, "mode": "generate", "batching": s.batching,
            "max_batch": s.max_batch, "output_len": s.output_len, "max_len": s.max_len,
            "prompts": describe(s.dist, s.prompt_len, s.room),
            "min_duration_s": s.min_duration_s, "min_requests": s.min_requests,
            "bounds_ms": {"ttft_p99": s.ttft_bound_ms, "tpot_p99": s.tpot_bound_ms},
            "percentiles": "observed (numpy), over the requests with a token",
            "warmup": warm, "capacity_estimate_rps": capacity_rps,
            "engine": engine.facts(), "trials": records}
        if not s.find_max_qps:
            for trial in range(s.trials):
                ctx.progress("trial", trial=trial, trials=s.trials,
                             iterations=max(s.min_requests, int(s.min_duration_s * s.target_qps)),
                             seconds_per_iteration=1 / s.target_qps)
                ctx.emit(probe(s.target_qps, (s.seed, trial), trial))
            return STOP_FIXED, self._extra(record, watch, [])
        search = QpsSearch(capacity_rps, min_queries=s.min_requests)
        while not search.done:
            trial = len(search.probes)
            ctx.progress("probe", probe=trial, qps=search.rate, bound_ms=s.ttft_bound_ms,
                         best_qps=search.max_qps, repeat=search.repeating,
                         confirming=search.confirming, max_probes=search.max_probes)
            row = probe(search.rate, s.seed, trial)
            p50 = row.get("ttft_p50_ms")
            search.record(bool(row["latency_bound_met"]), row["contended"],
                          overloaded=bool(row["queries_unfinished"]) or p50 is None
                          or p50 > s.ttft_bound_ms,
                          queries=row["requests"], p99_ms=row.get("ttft_p99_ms"))
            if search.done:
                row["max_goodput_qps"] = search.max_qps
            ctx.emit(row)
        record["search"] = {"start_qps": capacity_rps, **search.record_json()}
        warnings = [] if search.max_qps is not None else [
            f"no probed rate met the bounds (p99 TTFT <= {s.ttft_bound_ms:g} ms, p99 TPOT <= "
            f"{s.tpot_bound_ms:g} ms), down to {min(p.qps for p in search.probes):.3g} "
            "requests/s: max_goodput_qps is empty"]
        return STOP_SEARCHED, self._extra(record, watch, warnings)

    @staticmethod
    def _extra(record: Dict[str, Any], watch: ContentionWatch,
               warnings: List[str]) -> Dict[str, Any]:
        return {"serving": record, "contention": watch.record(),
                "warnings": warnings + watch.warnings()}
