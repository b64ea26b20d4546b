"""The serving scenarios' options (gathered with every other run option in
measure/options.py), their record in a run request (RunRequest.serving), and what they
accept together. No framework and no loop is imported."""

from __future__ import annotations

from typing import Any, Tuple

from gpubench.errors import Unsupported, UserError
from gpubench.measure.generation import BATCHING
from gpubench.measure.generation.prompts import (
    histogram_names, parse_prompt_dist, prompt_dist_error,
)
from gpubench.measure.option import (
    NONNEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, SWITCH, Kind, Option, record_class,
)
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS

DEFAULT_SAMPLES_PER_QUERY = 8  # multi-stream's S, as MLPerf's
QUERY_SCENARIOS = ("single-stream", "multi-stream", "server")  # many queries a trial
SERVER = ("server",)
GENERATE = ("generate",)  # --mode generate's server: token-level bounds, its batching
PROMPT_DIST = Kind(str, "fixed, uniform:LO-HI (1 <= LO <= HI) or a shipped histogram ("
                   + ", ".join(histogram_names()) + ")",
                   lambda v: parse_prompt_dist(v) is not None, lambda t: t.strip().lower())

SERVING_OPTIONS: Tuple[Option, ...] = (
    # another name for the batch, as each scenario calls it (a suite's batch_sizes)
    Option("samples_per_query", f"multi-stream: samples a query (default "
                                f"{DEFAULT_SAMPLES_PER_QUERY})", POSITIVE_INT, metavar="S",
           shown_default=str(DEFAULT_SAMPLES_PER_QUERY), scenarios=("multi-stream",),
           alias_of="batch_size", suite=None, in_request=None),
    Option("max_batch", "server, offline: the largest batch (default: --batch-size or the "
                        "workload's)", POSITIVE_INT, metavar="N", shown_default="the workload's",
           scenarios=("server", "offline"), alias_of="batch_size", suite=None, in_request=None),
    Option("target_qps", "server: the Poisson arrival rate, queries per second",
           POSITIVE_FLOAT, metavar="QPS", group="serving", scenarios=SERVER, identity=True,
           suite="matrix", label="at {:g} QPS"),
    Option("find_max_qps", "server: search (bisection) for the highest rate whose p99 "
                           "latency meets --latency-bound-ms; every probe a row", SWITCH,
           default=False, group="serving", scenarios=SERVER, label="max QPS"),
    Option("latency_bound_ms", "server: the p99 latency bound; rows say whether it held",
           POSITIVE_FLOAT, metavar="MS", group="serving", scenarios=SERVER, identity=True,
           label="p99 <= {:g} ms"),
    Option("batch_timeout_ms", "server: how long the batcher holds the oldest waiting query "
                               "for more (default 0: what waits goes as soon as the model is "
                               "free)", NONNEGATIVE_FLOAT, metavar="MS", means=0.0,
           group="serving", scenarios=SERVER, identity=True),
    Option("min_queries", "single-stream, multi-stream, server: queries a trial holds at "
                          "least (default 662: the fewest that can claim p99 at 99%% "
                          "confidence)", POSITIVE_INT, metavar="N", shown_default="662",
           group="serving", scenarios=QUERY_SCENARIOS),
    # --mode generate's server (scenarios/serving/generate_server.py)
    Option("batching", "server, --mode generate: continuous (default): requests join and "
                       "leave the decode batch at every step; static: a batch of up to "
                       "--max-batch runs to its last token before the next is formed",
           choices=lambda: BATCHING, means=BATCHING[0], group="serving", scenarios=SERVER,
           modes=GENERATE, identity=True, label="{} batching"),
    Option("ttft_bound_ms", "server, --mode generate: the p99 time-to-first-token bound "
                            "(queueing included); goodput counts requests within both bounds",
           POSITIVE_FLOAT, metavar="MS", group="serving", scenarios=SERVER, modes=GENERATE,
           identity=True, label="TTFT p99 <= {:g} ms"),
    Option("tpot_bound_ms", "server, --mode generate: the p99 time-per-output-token bound",
           POSITIVE_FLOAT, metavar="MS", group="serving", scenarios=SERVER, modes=GENERATE,
           identity=True, label="TPOT p99 <= {:g} ms"),
    Option("prompt_dist", "server, --mode generate: prompt lengths: fixed (default: each "
                          "--prompt-len), uniform:LO-HI, or a shipped histogram (sharegpt, "
                          "alpaca: a log-normal with the data set's published mean, scaled "
                          "to fit seq_len; docs/generation.md)", PROMPT_DIST,
           metavar="DIST", means="fixed", group="serving", scenarios=SERVER, modes=GENERATE,
           identity=True, label="prompts {}"),
)

SERVING = {o.name: o for o in SERVING_OPTIONS}
ServingOptions = record_class(
    "ServingOptions", SERVING_OPTIONS, __name__,
    "The serving scenarios' part of a run request (None or False: not given).")


def validate_serving_request(req: Any) -> None:
    """One line (UserError) for a serving option outside its scenario, a serving
    scenario asked to train or to chase what only throughput does, or a server run
    with neither a rate nor a search."""
    name, serving = req.scenario, req.serving
    for o in SERVING_OPTIONS:
        value = getattr(serving, o.name, None)
        if value is None or value is False or (o.applies(name)
                                               and o.applies_to_mode(req.mode)):
            continue
        if o.applies(name):  # the scenario's, another mode's
            raise UserError(f"{o.flag} is for --mode {' and '.join(o.modes)} (scenario "
                            f"{name}), not --mode {req.mode}")
        if o.scenarios == SERVER:
            raise UserError(f"{o.flag} is for the server scenario (--scenario server), not {name}")
        raise UserError(f"{o.flag} is for the scenarios of many queries "
                        f"({', '.join(o.scenarios)}), not {name}")
    if name not in SERVING_SCENARIOS:
        return
    if req.mode not in ("infer",) + (GENERATE if name in SERVER else ()):
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
    if name == "server" and req.mode == "generate":
        validate_generate_server(serving)
        if req.prompt_len is not None and serving.prompt_dist not in (None, "fixed"):
            raise UserError(f"--prompt-len is every prompt's length (--prompt-dist fixed); "
                            f"--prompt-dist {serving.prompt_dist} draws the lengths")
    elif name == "server":
        if serving.find_max_qps == (serving.target_qps is not None):
            raise UserError("scenario server needs one of --target-qps QPS (a fixed Poisson "
                            "rate) and --find-max-qps (a search for the highest rate whose p99 "
                            "meets --latency-bound-ms)")
        if serving.find_max_qps and serving.latency_bound_ms is None:
            raise UserError("--find-max-qps searches for the highest rate whose p99 latency "
                            "meets a bound: give --latency-bound-ms")


def validate_generate_server(serving: Any) -> None:
    """A generate server: a rate or a search, the search on both token-level bounds, and
    none of the request-level server's batcher options."""
    if serving.find_max_qps == (serving.target_qps is not None):
        raise UserError("scenario server needs one of --target-qps QPS (a fixed Poisson rate "
                        "of requests) and --find-max-qps (a search for the highest rate whose "
                        "p99 TTFT and TPOT meet --ttft-bound-ms and --tpot-bound-ms)")
    if serving.find_max_qps and None in (serving.ttft_bound_ms, serving.tpot_bound_ms):
        raise UserError("--find-max-qps in --mode generate searches for the highest rate whose "
                        "p99 TTFT and p99 TPOT meet their bounds: give --ttft-bound-ms and "
                        "--tpot-bound-ms")
    if serving.latency_bound_ms is not None:
        raise UserError("--latency-bound-ms bounds a query of --mode infer; a generate "
                        "server's bounds are --ttft-bound-ms and --tpot-bound-ms")
    if serving.batch_timeout_ms is not None:
        raise UserError("--batch-timeout-ms is the dynamic batcher's (--mode infer); a "
                        "generate server forms its batches by --batching")


def check_prompt_dist(req: Any, workload: Any) -> None:
    """Preflight: --prompt-dist's longest prompt and --output-len fit the model's seq_len
    (a histogram is scaled to fit, up to an output that leaves no room)."""
    from gpubench.measure.generation.plan import resolved_lengths, seq_len_of

    prompt_len, output_len = resolved_lengths(req, workload)
    why = prompt_dist_error(parse_prompt_dist(req.prompt_dist), prompt_len, output_len,
                            seq_len_of(workload))
    if why:
        raise UserError(why)


def check_serving_plan(req: Any, scenario: Any, exec_mode: str, workload: Any) -> None:
    """Preflight: an exec mode replaying one captured shape cannot run a scenario of
    batches of every size."""
    if req.mode == "generate" and req.prompt_dist is not None:
        check_prompt_dist(req, workload)
    if scenario.variable_batches and exec_mode == "cuda-graphs":
        raise Unsupported(f"exec mode cuda-graphs replays one captured batch shape; scenario "
                          f"{scenario.name} runs batches of every size up to "
                          f"{scenario.batch_size(req, workload)} (single-stream and "
                          "multi-stream run one)")
