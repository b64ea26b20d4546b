"""Result schema: the columns of trials.csv, summary.csv and samples.csv, and the one
declaration of what identifies a configuration.

The schema version is kept apart from the package version: it changes only when the
files change, and readers migrate older versions step by step (results/reader.py).

History:
  1 (gpubench 0.1): first version. trials.csv with identity, environment and measured
    columns (units in the names); summary.csv one row per configuration; run.json.
  2: identity columns `scenario`, `exec`, `world_size`, `environment` (what the coming
    launchers and scenarios vary), and per-row context `rank`, `started_utc`,
    `git_commit` (a history needs a time axis and a commit on every row). A v1 row
    reads as a single-process `throughput` run in the `default` environment, `exec`
    `xla` for the tf-*-xla backends and `eager` otherwise. Identity column
    `onnx_sha256`: the SHA-256 of a user's ONNX file (`--onnx`), empty for the
    workload's own model (every v1 row). Identity columns `threads` (`--threads`;
    empty: the framework's default) and `data` (`synthetic`: resident synthetic
    batches): both change what is measured, so runs differing in them are never
    matched or pooled. A v1 row reads as `data` synthetic (every v1 run was) and
    `threads` empty: v1 rows did not record it, so a v1 row is taken as a
    default-threads run (its run.json `config.threads` says whether it was).
  3: per-row context `process`: which of a run's worker processes timed the trial
    (`--processes K` spreads a run's trials over K processes so that every run carries
    its own between-process variation; compare then takes the process as its unit).
    A v2 row reads as process 0 (every v2 run was one process).
  4: real data and accuracy. Identity column `target_accuracy` (the test accuracy a
    `time-to-accuracy` run trains to; empty for other scenarios). Measured columns of
    that scenario's per-epoch rows (`epoch`, `train_loss`, `test_accuracy`, `epoch_s`,
    `eval_s`, `elapsed_s`) and of its result, on the run's last epoch row
    (`time_to_accuracy_s`, `energy_to_accuracy_j`, `epochs_to_accuracy`, `reached`);
    the accuracy gate's (`top1_agreement`, `max_abs_diff`, `accuracy_ok`: also a
    non-eager exec mode's check against eager), `compile_s` (compile or capture time,
    apart from the trials) and `tokens_per_s` (token models). `exec` gains torch's `compile`, `compile:MODE` and
    `cuda-graphs`. A v3 row reads with them all empty (no v3 run had them).
  5: data-parallel runs of ranks (the torchrun launcher, `--nproc`). Identity column
    `strategy` (`ddp`; empty for a plain run: world size 1, no process group), and
    one row per rank and trial (`rank`), each with its own device's telemetry and its
    own samples/s (per GPU), all timed on rank 0's clock. Measured columns of the
    whole run's trial, the same on every rank's row: `global_throughput_samples_per_s`
    (all ranks' samples over the trial) and `global_energy_j` (all ranks' devices;
    empty unless every rank measured its own). Both empty for a plain run. Collective
    workloads (allreduce, allgather; the `collective` scenario): identity column
    `message_bytes` (the message swept in the run; empty for other workloads) and
    measured `algbw_gbs` and `busbw_gbs` as nccl-tests defines them. A v4 row reads
    as a plain run of a model (no v4 run had ranks or collectives).
  6: the serving scenarios (MLPerf Inference's: `single-stream`, `multi-stream`,
    `server`, `offline` in `scenario`). Identity columns of server runs (empty for every
    other scenario): `target_qps` (the Poisson rate; empty when --find-max-qps searched
    it), `latency_bound_ms` (the p99 bound asked for) and `batch_timeout_ms` (the
    dynamic batcher's). Measured: `queries`, `offered_qps`, `achieved_qps`,
    `latency_mean_ms`, `latency_p999_ms`, `latency_bound_met`, `queries_unfinished`,
    `batch_size_mean`, `batch_size_p50`, `batch_size_max`, `energy_j_per_query`, and
    `max_qps` (a search's result, on its last probe's row). In these scenarios the
    latency percentile columns hold early-stopping bounds (measure/scenarios/serving/early_stopping.py),
    in `throughput` the percentiles of its steps as before. A v5 row reads with them
    all empty (no v5 run served).
  7: comparisons a fleet can trust. Context `suite_id` (the suite a run belongs to;
    empty for a lone run) and `round` (the slot of the suite's interleaving in which the
    row's worker process ran: compare pairs round k of one side with round k of the
    other). Identity `power_limit_w` (the board power limit a run asked for, --power-limit;
    empty: the board's own) and `lock_clocks` (--lock-clocks: MHz, max or base; empty:
    none). Measured: the limit and locked SM clock in force (`enforced_power_limit_w`,
    `locked_sm_clock_mhz`), the clock-event reasons that throttled a trial
    (`throttle_reasons`, named and joined by "+"), why a trial is left out of the
    statistics (`excluded`, e.g. "throttled"; empty: kept), the GPU temperature at the
    trial's start (`start_temp_c`) and the seconds waited before it for a cool start
    (`cooldown_s`). A v6 row reads with them all empty: not in a suite, no limit or lock
    asked, throttling not named, every trial kept.
  8: generation and shards. Identity columns of `--mode generate` runs (empty for every
    other mode): `prompt_len` (tokens of a prompt; with a distribution, its mean),
    `output_len` (tokens decoded a request), `prompt_dist` (fixed, uniform:LO-HI or a
    shipped histogram's name), `batching` (continuous or static: how the server
    scenario forms its decode batch) and the token-level bounds `ttft_bound_ms` and
    `tpot_bound_ms` (server scenario; p99, MLPerf's). Measured: time to first token,
    time per output token and inter-token latency percentiles (`ttft_p50_ms` ...
    `itl_p99_ms`), `output_tokens_per_s`, `prefill_tokens_per_s`,
    `energy_j_per_output_token`, `kv_cache_bytes`, the work of the description
    (`prefill_flops`, `decode_flops_per_token`, `decode_bytes_per_token`: weights and
    cache read a decoded token) and the memory-bandwidth bound of decode it gives
    (`decode_bound_tokens_per_s`), the requests of a row, those within both bounds
    (`requests_within_bounds`), `goodput_rps` (those a second) and a --find-max-qps
    search's result on goodput (`max_goodput_qps`). Context `shard` ("i/N": the part of
    a suite run with --shard; empty: the whole suite). A v7 row reads with them all
    empty (no v7 run generated or was sharded).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

SCHEMA_VERSION = 8

# The configuration: what a user asks to measure, declared once. compare's matching,
# the suite's resume key, de-duplication of rows read twice, the summary's groups and
# the labels shown to people all derive from it (read at call time, so one edit here
# changes them all together).
CONFIGURATION_COLUMNS: Tuple[str, ...] = (
    "workload", "backend", "mode", "precision", "batch_size", "params",
    "scenario", "exec", "world_size",
    "strategy",  # ddp across ranks (--nproc, --strategy); empty for a plain run
    "environment",
    "onnx_sha256",  # a user's ONNX file (--onnx) is not the workload's own model
    "threads",  # CPU threads of the framework (--threads; empty: its default)
    "data",  # the data source: synthetic (resident batches) or mnist (the real set)
    "target_accuracy",  # time-to-accuracy: the test accuracy trained to (empty otherwise)
    "message_bytes",  # collectives: the message size of the row (empty otherwise)
    # server: the Poisson rate (empty: --find-max-qps searched it), the p99 latency
    # bound, the dynamic batcher's timeout (all empty for other scenarios)
    "target_qps", "latency_bound_ms", "batch_timeout_ms",
    # the board power limit asked for (W; empty: the board's own) and the clock lock
    # asked for (MHz, max or base; empty: none): --power-limit, --lock-clocks
    "power_limit_w", "lock_clocks",
    # --mode generate: prompt and output tokens, the prompt-length distribution, the
    # server's batching (continuous | static) and its token-level p99 bounds (ms)
    "prompt_len", "output_len", "prompt_dist", "batching", "ttft_bound_ms", "tpot_bound_ms",
)
# The columns this schema version declares (CONFIGURATION_COLUMNS may add more: below).
VERSIONED_CONFIGURATION_COLUMNS = CONFIGURATION_COLUMNS
# Not configuration (the work measured is the same): `seed` (other values, same work),
# the protocol's settings (how long and how often it is measured), telemetry and its
# rate (what is watched beside it), the device index (placement), the output paths.
# What today's runs hold, and what a row written before the column existed means.
CONFIGURATION_DEFAULTS = {"scenario": "throughput", "exec": "eager", "world_size": 1,
                          "strategy": None, "environment": "default", "onnx_sha256": "",
                          "threads": None, "data": "synthetic",
                          "target_accuracy": None, "message_bytes": None,
                          "target_qps": None, "latency_bound_ms": None,
                          "batch_timeout_ms": None, "power_limit_w": None,
                          "lock_clocks": None, "prompt_len": None, "output_len": None,
                          "prompt_dist": None, "batching": None, "ttft_bound_ms": None,
                          "tpot_bound_ms": None}
# How a label shows a long identity value: `onnx=ab12cd34` (the row keeps all of it).
LABEL_NAMES = {"onnx_sha256": ("onnx", 8)}
# Where a configuration ran: compare matches on the kind of device, not on which one.
PLACEMENT_COLUMNS = ("device_index", "device_name", "device_uuid")
MATCHED_PLACEMENT = ("device_name",)

IDENTITY_COLUMNS = ("run_id",) + CONFIGURATION_COLUMNS + PLACEMENT_COLUMNS
# Per-row context: which rank wrote the row, which of the run's worker processes timed
# it (--processes), when its run started, the code measured, the suite it ran in and
# the round of that suite's interleaving (empty for a lone run), and the part of the
# suite (--shard i/N) that ran it (empty: the whole suite).
CONTEXT_COLUMNS = ("rank", "process", "started_utc", "git_commit", "suite_id", "round",
                   "shard")
ENVIRONMENT_COLUMNS = (
    "driver_version", "cuda_version", "cudnn_version", "framework", "framework_version",
    "gpubench_version", "schema_version", "host",
)
MEASURED_COLUMNS = (
    "trial", "iterations", "samples", "duration_s", "throughput_samples_per_s",
    "tokens_per_s",  # token models (gpt, bert): samples/s x tokens a sample
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "tflops", "mfu",
    "peak_mem_bytes", "power_avg_w", "energy_j", "energy_source", "samples_per_joule",
    "gpu_util_pct", "mem_util_pct", "sm_clock_mhz", "mem_bw_gbs", "mem_bw_source",
    "temp_c", "throttled",
    # the clock policy in force (telemetry/): the board power limit (W) and the SM clock
    # locked (MHz; empty: none)
    "enforced_power_limit_w", "locked_sm_clock_mhz",
    # throttling named (NVML clock-event reasons joined by "+": "power_cap+thermal"), why
    # a trial is left out of the statistics ("throttled"; empty: kept), the GPU
    # temperature at its start and the seconds waited before it for a cool start
    "throttle_reasons", "excluded", "start_temp_c", "cooldown_s",
    "loss",  # training loss after the trial's last step: a broken step shows as flat loss
    # True: the trial ran slow, or beside other processes' CPU or GPU use
    # (telemetry/contention.py; compare leaves it out); empty: not judged (v1 rows)
    "contended",
    # time-to-accuracy (measure/scenarios/time_to_accuracy.py): one row per epoch; the run's
    # result on its last epoch row. Evaluation is timed apart from training.
    "epoch", "train_loss", "test_accuracy", "epoch_s", "eval_s", "elapsed_s",
    "time_to_accuracy_s", "energy_to_accuracy_j", "epochs_to_accuracy", "reached",
    # the accuracy gate (measure/accuracy_gate.py): the backend's outputs against fp32
    # torch's on real test images, and whether they agree within the tolerance
    "top1_agreement", "max_abs_diff", "accuracy_ok",
    # a non-eager exec mode's compile or capture seconds, before and apart from the trials
    "compile_s",
    # a run of ranks: the trial across all of them (rank 0 adds them up), on every rank's row
    "global_throughput_samples_per_s", "global_energy_j",
    # collectives: algorithm and bus bandwidth (nccl-tests' algbw, busbw), GB/s
    "algbw_gbs", "busbw_gbs",
    # the serving scenarios (measure/scenarios/serving/): queries issued, the rate offered and
    # achieved, latency (percentiles: early-stopping bounds) with queueing, whether the
    # bound held, queries left unfinished, batch sizes the batcher formed, energy per
    # query; a --find-max-qps search's result on its last probe
    "queries", "offered_qps", "achieved_qps", "latency_mean_ms", "latency_p999_ms",
    "latency_bound_met", "queries_unfinished", "batch_size_mean", "batch_size_p50",
    "batch_size_max", "energy_j_per_query", "max_qps",
    # --mode generate (measure/generation/): time to first token, time per output token
    # and inter-token latency percentiles; output and prefill tokens/s; energy a token;
    # the KV cache; the description's work (FLOPs of prefill and a decoded token, bytes
    # a decoded token reads) and decode's bandwidth bound; requests, those within both
    # bounds and their rate (goodput); a --find-max-qps search's result on goodput
    "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms",
    "tpot_p99_ms", "itl_p50_ms", "itl_p90_ms", "itl_p99_ms", "output_tokens_per_s",
    "prefill_tokens_per_s", "energy_j_per_output_token", "kv_cache_bytes", "prefill_flops",
    "decode_flops_per_token", "decode_bytes_per_token", "decode_bound_tokens_per_s",
    "requests", "requests_within_bounds", "goodput_rps", "max_goodput_qps",
    "status", "error",
)


def trial_columns() -> Tuple[str, ...]:
    """trials.csv's columns, in order."""
    return (("run_id",) + CONFIGURATION_COLUMNS + PLACEMENT_COLUMNS + CONTEXT_COLUMNS
            + ENVIRONMENT_COLUMNS + MEASURED_COLUMNS)


TRIAL_COLUMNS = trial_columns()  # as declared at import

TEXT_COLUMNS = ("run_id", "workload", "backend", "mode", "precision", "params",
                "scenario", "exec", "strategy", "environment", "onnx_sha256", "data", "device_name",
                "device_uuid",
                "started_utc", "git_commit", "driver_version", "cuda_version",
                "cudnn_version", "framework", "framework_version", "gpubench_version",
                "host", "energy_source", "mem_bw_source", "status", "error",
                "suite_id", "lock_clocks", "throttle_reasons", "excluded", "prompt_dist",
                "batching", "shard")

STATUSES = ("ok", "failed", "timeout", "unsupported")

# Summary statistics: full description for these, medians for the rest.
DESCRIBED_METRICS = ("throughput_samples_per_s", "latency_p50_ms")
MEDIAN_METRICS = (
    "latency_p90_ms", "latency_p99_ms", "tflops", "mfu", "peak_mem_bytes", "power_avg_w",
    "energy_j", "samples_per_joule", "gpu_util_pct", "mem_util_pct", "sm_clock_mhz",
    "mem_bw_gbs", "temp_c", "loss", "compile_s", "tokens_per_s",
    "global_throughput_samples_per_s", "global_energy_j", "algbw_gbs", "busbw_gbs",
    "latency_p999_ms", "latency_mean_ms", "offered_qps", "achieved_qps", "batch_size_mean",
    "energy_j_per_query", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms",
    "itl_p50_ms", "itl_p99_ms", "output_tokens_per_s", "prefill_tokens_per_s",
    "energy_j_per_output_token", "goodput_rps", "decode_bound_tokens_per_s",
)
STAT_NAMES = ("median", "iqr", "mean", "std", "cv", "ci_low", "ci_high")

RUN_FILES = ("trials.csv", "summary.csv", "run.json")


# Everything below derives from CONFIGURATION_COLUMNS when called.


def declare_configuration_column(name: str, default: Any = None) -> None:
    """A configuration column beyond this version's, for this process: a run option
    marked identity (measure/options.py) that the schema does not list (a new option
    before its schema version and migration, which a test asks for). Rows gain it after
    the others; compare matches on it; a file read without it holds `default`."""
    global CONFIGURATION_COLUMNS
    if name not in CONFIGURATION_COLUMNS:
        CONFIGURATION_COLUMNS = CONFIGURATION_COLUMNS + (name,)
        CONFIGURATION_DEFAULTS[name] = default

# What a Python environment decides: comparing by one of them (torch 2.13 against 2.14)
# pairs rows across environments, whose names differ because these do.
ENVIRONMENT_DECIDES = ("framework_version", "cuda_version", "cudnn_version")


def match_columns(by: Optional[str] = None) -> Tuple[str, ...]:
    """compare: rows of the two sides are the same configuration when these agree
    (`by`, the column being compared, left out; `environment` too when `by` is
    something an environment decides)."""
    left_out = {by, "environment"} if by in ENVIRONMENT_DECIDES else {by}
    return tuple(c for c in CONFIGURATION_COLUMNS + MATCHED_PLACEMENT if c not in left_out)


def group_columns() -> Tuple[str, ...]:
    """summary.csv: one row per configuration and device of a run."""
    return ("run_id",) + CONFIGURATION_COLUMNS + ("device_index", "device_name")


def dedup_columns() -> Tuple[str, ...]:
    """A row read twice (a run folder copied beside its suite) is the same row."""
    return ("run_id",) + CONFIGURATION_COLUMNS + ("device_index", "rank", "process", "trial",
                                                  "status")


def key_text(value: Any) -> str:
    """A value as it takes part in a key: empty for missing, 64.0 and "64" alike."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return key_text(value.item())
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text


def configuration_key(values: Mapping[str, Any],
                      columns: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """The configuration of a row or a request as a tuple of texts (the suite's resume
    key; compare's match key with `columns=match_columns(by)`)."""
    columns = CONFIGURATION_COLUMNS if columns is None else columns
    return tuple(key_text(values.get(c)) for c in columns)


def non_default_configuration(values: Mapping[str, Any]) -> Tuple[Tuple[str, str], ...]:
    """The identity columns beyond the classic six whose value is not today's default,
    for labels (`exec=xla`, `world_size=8`, `onnx=ab12cd34`, `threads=1`); nothing for
    an ordinary run."""
    classic = ("workload", "backend", "mode", "precision", "batch_size", "params")
    out = []
    for column in CONFIGURATION_COLUMNS:
        if column in classic:
            continue
        text = key_text(values.get(column))
        if text and text != key_text(CONFIGURATION_DEFAULTS.get(column)):
            name, width = LABEL_NAMES.get(column, (column, None))
            out.append((name, text[:width]))
    return tuple(out)
