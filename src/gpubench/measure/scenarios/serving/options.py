"""The serving scenarios' part of a run request (measure/request.py): what they accept,
the batch size each runs at, and their identity columns. No framework is imported."""

from __future__ import annotations

from typing import Any, Dict, Optional

from gpubench.errors import Unsupported, UserError
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS
from gpubench.measure.scenarios.serving.base import (
    DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_SAMPLES_PER_QUERY,
)

# Settings and the scenarios that take them (their CLI flags, for messages).
SERVER_ONLY = {"target_qps": "--target-qps", "latency_bound_ms": "--latency-bound-ms",
               "batch_timeout_ms": "--batch-timeout-ms", "find_max_qps": "--find-max-qps"}
QUERY_SCENARIOS = ("single-stream", "multi-stream", "server")  # --min-queries: many queries


def batch_size_of(req: Any, workload: Any) -> int:
    """Samples per batch: single-stream 1, multi-stream S (default 8), the others
    --batch-size (server and offline: the largest batch, --max-batch) or the
    workload's default."""
    if req.scenario == "single-stream":
        return 1
    if req.scenario == "multi-stream":
        return req.batch_size or DEFAULT_SAMPLES_PER_QUERY
    return req.batch_size or workload.default_batch_size


def serving_identity(req: Any) -> Dict[str, Optional[float]]:
    """The server's identity columns (empty for every other scenario): its rate (empty
    when --find-max-qps searches it), its latency bound, its batcher's timeout."""
    if req.scenario != "server":
        return {"target_qps": None, "latency_bound_ms": None, "batch_timeout_ms": None}
    timeout = DEFAULT_BATCH_TIMEOUT_MS if req.batch_timeout_ms is None else req.batch_timeout_ms
    return {"target_qps": req.target_qps, "latency_bound_ms": req.latency_bound_ms,
            "batch_timeout_ms": timeout}


def _given(req: Any, field: str) -> bool:
    value = getattr(req, field)
    return value is not None and value is not False


def validate_serving_request(req: Any) -> None:
    """One line (UserError) for a serving setting outside its scenario, a serving
    scenario asked to train or to chase what only throughput does, or a server run
    with neither a rate nor a search."""
    name = req.scenario
    for field, flag in SERVER_ONLY.items():
        if _given(req, field) and name != "server":
            raise UserError(f"{flag} is for the server scenario (--scenario server), not {name}")
    if req.min_queries is not None and name not in QUERY_SCENARIOS:
        raise UserError(f"--min-queries is for the scenarios of many queries "
                        f"({', '.join(QUERY_SCENARIOS)}), not {name}")
    for field, floor in (("target_qps", 0.0), ("latency_bound_ms", 0.0), ("min_queries", 1)):
        value = getattr(req, field)
        if value is not None and not (value >= floor if field == "min_queries" else value > floor):
            raise UserError(f"--{field.replace('_', '-')} must be positive, got {value}")
    if req.batch_timeout_ms is not None and not req.batch_timeout_ms >= 0:
        raise UserError(f"--batch-timeout-ms must be >= 0, got {req.batch_timeout_ms}")
    if name not in SERVING_SCENARIOS:
        return
    if req.mode != "infer":
        raise UserError(f"scenario {name} serves inference: it cannot run in --mode {req.mode}")
    if req.protocol.target_rel_ci is not None:
        raise UserError(f"--target-rel-ci adds trials to the throughput scenario; scenario "
                        f"{name} runs --trials trials of at least --min-trial-s")
    if req.processes != 1:
        raise UserError(f"--processes spreads the throughput scenario's trials over worker "
                        f"processes; scenario {name} runs in one")
    if name == "single-stream" and req.batch_size not in (None, 1):
        raise UserError("single-stream issues one sample a query (batch 1); queries of "
                        "several samples are multi-stream's (--samples-per-query)")
    if name == "server":
        if req.find_max_qps == (req.target_qps is not None):
            raise UserError("scenario server needs one of --target-qps QPS (a fixed Poisson "
                            "rate) and --find-max-qps (a search for the highest rate whose p99 "
                            "meets --latency-bound-ms)")
        if req.find_max_qps and req.latency_bound_ms is None:
            raise UserError("--find-max-qps searches for the highest rate whose p99 latency "
                            "meets a bound: give --latency-bound-ms")


def check_serving_plan(req: Any, scenario: Any, exec_mode: str, workload: Any) -> None:
    """Preflight: an exec mode replaying one captured shape cannot run a scenario of
    batches of every size."""
    if scenario.variable_batches and exec_mode == "cuda-graphs":
        raise Unsupported(f"exec mode cuda-graphs replays one captured batch shape; scenario "
                          f"{scenario.name} runs batches of every size up to "
                          f"{batch_size_of(req, workload)} (single-stream and multi-stream run one)")
