"""The results table (summary.csv rows) as rich renders it, fitted to a width.

A table never cuts a number (cli/fit_table.py fits it; cli/scenario_cells.py says what
each scenario keeps and what its cells mean). Numbers have 3-4 significant digits (6.49,
0.0123, 12,345), never an exponent: FLOP/s and J/sample pick a unit that fits the
column. When the table is wider than the terminal, headers and text wrap at their
spaces, identity columns holding one value for every row move into the title (exec and
threads among them), and then low-priority columns are left out (named under the
table), never one a row's scenario is read by. Bandwidth headers say where the number
came from: `GB/s (model)` (the workload's analytic bytes / time), `GB/s (GPM)` (the
GPU's DRAM counters), `GB/s (est.)` (NVML memory utilisation x peak). A configuration
that a suite ran more than once (`repeats`) shows which run a row is (`2/3`). The 95% CI
reads `n<6` where too few trials give none, and is marked `*` where the run stopped on
a cap short of its --target-rel-ci (missed_target_notes says so under the table). A run
stopped by Ctrl-C or SIGTERM reads `interrupted`, and one with trials flagged contended
says how many (`6/6 trials contended`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from gpubench.cli import generation_table as generation
from gpubench.cli import serving_table as serving
from gpubench.cli.fit_table import UNLIMITED_WIDTH, fitted_table  # noqa: F401 (re-exported)
from gpubench.cli.scenario_cells import (
    COLLECTIVE, TIME_TO_ACCURACY, bandwidth_unit, data_text, exec_text, kept_columns, not_for,
    only_for, trials_text,
)
from gpubench.cli.table_cells import (
    FLOPS_UNITS, JOULE_UNITS, Col, as_float, bytes_text, fixed, num, pct, sig, unit_for, whole,
    yes_no,
)

if TYPE_CHECKING:  # pandas only when a table is made
    import pandas as pd



MIN_CI_TRIALS = 6  # gpubench.stats.MIN_CI_SAMPLES: fewer ok trials have no 95% CI
MISSED_MARK = "*"  # on the CI of a run that stopped short of its --target-rel-ci


def rel_ci_value(row: Any, metric: str) -> Optional[float]:
    """The CI's largest distance from the median, relative to it (None: no CI)."""
    med, low, high = (as_float(row.get(f"{metric}_{k}")) for k in ("median", "ci_low", "ci_high"))
    if med is None or low is None or high is None or not med:
        return None
    return max(med - low, high - med) / abs(med)


def _rel_ci(row: Any, metric: str) -> str:
    """The CI of the median as +/- its largest distance from the median, in percent;
    `n<6` where a median has too few trials for a 95% interval."""
    rel = rel_ci_value(row, metric)
    if rel is not None:
        return "±" + pct(rel)
    n_ok, median = as_float(row.get("n_ok")), as_float(row.get(f"{metric}_median"))
    too_few = n_ok is not None and n_ok < MIN_CI_TRIALS and median is not None
    return f"n<{MIN_CI_TRIALS}" if too_few else ""


# Stop reasons (measure/protocol.py) of a run that gave up on its --target-rel-ci.
MISSED_STOPS = {"time_cap": "the time cap (--max-time-s)", "trial_cap": "the trial cap"}


def missed_target(row: Any, targets: Optional[Dict[str, Dict[str, Any]]]) -> Optional[str]:
    """Why a summary row's run missed its --target-rel-ci ('target ±1% not met: stopped
    at the time cap (--max-time-s) after 4 trials (±2.3%)'), or None when it had no
    target or met it. `targets`: run_id -> {target_rel_ci, stop_reason} (run.json)."""
    meta = (targets or {}).get(str(row.get("run_id")), {})
    stop = row.get("stop_reason")
    stop = stop if isinstance(stop, str) and stop else meta.get("stop_reason")
    return missed_target_text(meta.get("target_rel_ci"), stop, row.get("n_ok"),
                              rel_ci_value(row, THR))


def missed_target_text(target: Any, stop_reason: Any, n_ok: Any,
                       rel_ci: Optional[float]) -> Optional[str]:
    """The line for a run that stopped on a cap before its target (None otherwise)."""
    target = as_float(target)
    if target is None or stop_reason not in MISSED_STOPS:
        return None
    n = as_float(n_ok)
    trials = "" if n is None else f" after {n:.0f} trial{'' if n == 1 else 's'}"
    reached = (f"the 95% CI is ±{pct(rel_ci)}" if rel_ci is not None
               else f"no 95% CI: fewer than {MIN_CI_TRIALS} trials")
    return (f"target ±{target * 100:.3g}% not met: stopped at {MISSED_STOPS[stop_reason]}"
            f"{trials} ({reached})")


def _j_per_sample(row: Any) -> Optional[float]:
    spj = as_float(row.get("samples_per_joule_median"))
    return 1.0 / spj if spj else None


# mem_bw_source (telemetry) -> what the GB/s header says
BANDWIDTH_SOURCES = {"analytic": "model", "gpm": "GPM", "util_estimate": "est."}


def bandwidth_header(source: Optional[str]) -> str:
    if not source:
        return "GB/s"
    return f"GB/s ({BANDWIDTH_SOURCES.get(source, source)})"


THR = "throughput_samples_per_s"
# Left out first when the terminal is narrow (rank 0 first).
DROP_ORDER = ("SM MHz", "compile s", "outputs ok", "p90 ms", "loss", *generation.GENERATE_DROP_ORDER,
              "CV", "trials", "GB/s", "W", "J/sample",
              "algbw GB/s", "p99.9 ms", "p99 ms", "MFU", "FLOP/s", "p50 ms", "ranks", "tokens/s",
              "95% CI", "samples/s", "ops/s", "global samples/s", "busbw GB/s", "size",
              "energy to acc.", "test acc.", "target", "reached", "time to acc.",
              "target QPS", "p99 bound ms", "QPS", "held", "max QPS", "TPOT ms", "out tok/s",
              "TTFT bound ms", "TPOT bound ms", "goodput/s", "max goodput QPS")


def workload_label(r: Any) -> str:
    params = r.get("params")
    return str(r["workload"]) + (f" [{params}]" if isinstance(params, str) and params else "")


def _run_sources(trials: Optional["pd.DataFrame"]) -> Dict[str, str]:
    """run_id -> the mem_bw_source of its bandwidth numbers (the most common one)."""
    if trials is None or "mem_bw_source" not in trials.columns or "run_id" not in trials.columns:
        return {}
    rows = trials.dropna(subset=["mem_bw_source"])
    return {str(run_id): group["mem_bw_source"].astype(str).mode().iloc[0]
            for run_id, group in rows.groupby("run_id")}


def _repeat_numbers(summary: "pd.DataFrame") -> List[str]:
    """'2/3' for the second of three rows of one configuration (suite repeats); all
    empty when no configuration repeats."""
    from gpubench.results.schema import CONFIGURATION_COLUMNS

    keys = [c for c in CONFIGURATION_COLUMNS + ("device_index",) if c in summary.columns]
    if not keys or summary.empty:
        return [""] * len(summary)
    key = summary[keys].map(lambda v: "" if as_float(v) is None and not isinstance(v, str) else str(v)
                            ).agg("\x1f".join, axis=1)
    if not key.duplicated().any():
        return [""] * len(summary)
    number = key.groupby(key).cumcount() + 1
    total = key.map(key.value_counts())
    return [f"{n}/{t}" for n, t in zip(number, total)]


def loss_text(loss: Optional[Dict[str, Any]]) -> str:
    """A training run's loss from its first step to its last trial (run.json `loss`):
    on resident synthetic batches it says the step trains, not how well (a median of
    memorised batches, ~1e-7, would look like a result)."""
    first, last = as_float((loss or {}).get("first_step")), as_float((loss or {}).get("last_trial"))
    if first is None or last is None:
        return ""
    return f"{sig(first)} → {sig(last)}" + (" (rose)" if loss.get("fell") is False else "")


def summary_columns(summary: "pd.DataFrame", trials: Optional["pd.DataFrame"] = None,
                    losses: Optional[Dict[str, Dict[str, Any]]] = None,
                    targets: Optional[Dict[str, Dict[str, Any]]] = None) -> List[Col]:
    """The table's columns for these summary rows: units chosen to fit the values, one
    GB/s column per bandwidth source; `losses` (run_id -> run.json `loss`) fill the
    loss column; a run that missed its target (`targets`, see missed_target) has its
    95% CI marked with MISSED_MARK."""
    losses = losses or {}
    records = [r for _, r in summary.iterrows()]
    flops_unit, flops_scale = unit_for([as_float(r.get("tflops_median")) for r in records], FLOPS_UNITS)
    joule_unit, joule_scale = unit_for([_j_per_sample(r) for r in records], JOULE_UNITS)
    bw_unit, bw_scale = bandwidth_unit(records)
    repeats = dict(zip(summary.index, _repeat_numbers(summary)))
    contended = _contended_counts(trials)
    set_threads = any(_threads_text(r.get("threads")) for r in records)
    other_envs = any(_env_text(r.get("environment")) != "default" for r in records)
    cols = [
        Col("workload", workload_label, title=str),
        Col("backend", lambda r: str(r["backend"]), title=str),
        # the Python environment, when some row ran outside the default one
        Col("env", lambda r: _env_text(r.get("environment")) if other_envs else "",
            title=lambda v: f"env {v}"),
        # a collective has none of these: it trains nothing and moves bytes, not samples
        Col("mode", not_for(COLLECTIVE, lambda r: str(r["mode"])), title=str),
        Col("precision", not_for(COLLECTIVE, lambda r: str(r["precision"])), title=str),
        Col("batch", not_for(COLLECTIVE, lambda r: whole(r["batch_size"])), title=lambda v: f"batch {v}"),
        Col("data", data_text, title=lambda v: f"{v} data"),  # real data (mnist), not synthetic
        *serving.identity_columns(),
        *generation.identity_columns(),
        # --threads, when some row set it (the others ran with the framework's default)
        Col("threads", lambda r: (_threads_text(r.get("threads")) or "default") if set_threads else "",
            title=lambda v: f"threads {v}"),
        # identity: an exec mode moves into the title, never left out (compile, xla)
        Col("exec", lambda r: exec_text(r.get("exec")), title=lambda v: f"exec {v}"),
        Col("run", lambda r: repeats.get(r.name, "")),  # suite repeats: 2/3
        Col("trials", trials_text, "trials"),
        # runs of ranks (--nproc): their number, and the strategy unless DDP (the default);
        # collectives: the message of the row
        Col("ranks", _ranks_text, "ranks"),
        Col("size", lambda r: bytes_text(r.get("message_bytes")), "size"),
        Col("samples/s", not_for(COLLECTIVE, lambda r: num(r.get(f"{THR}_median"))), "samples/s"),
        Col("ops/s", only_for(COLLECTIVE, lambda r: num(r.get(f"{THR}_median"))), "ops/s"),
        *serving.result_columns(),
        *generation.result_columns(),
        Col("global samples/s", lambda r: num(r.get("global_throughput_samples_per_s_median")),
            "global samples/s"),
        Col(f"algbw {bw_unit}", lambda r: num(r.get("algbw_gbs_median"), bw_scale), "algbw GB/s"),
        Col(f"busbw {bw_unit}", lambda r: num(r.get("busbw_gbs_median"), bw_scale), "busbw GB/s"),
        Col("tokens/s", lambda r: num(r.get("tokens_per_s_median")), "tokens/s"),
        # over epochs that train different weights, a CI or CV of their rates means nothing
        Col("95% CI", not_for(TIME_TO_ACCURACY, lambda r: _rel_ci(r, THR)
            + (MISSED_MARK if missed_target(r, targets) else "")), "95% CI"),
        Col("CV", not_for(TIME_TO_ACCURACY, lambda r: pct(r.get(f"{THR}_cv"))), "CV"),
        Col("p50 ms", lambda r: num(r.get("latency_p50_ms_median")), "p50 ms"),
        Col("p90 ms", lambda r: num(r.get("latency_p90_ms_median")), "p90 ms"),
        Col("p99 ms", lambda r: num(r.get("latency_p99_ms_median")), "p99 ms"),
        Col("p99.9 ms", lambda r: num(r.get("latency_p999_ms_median")), "p99.9 ms"),
        Col(flops_unit, lambda r: num(r.get("tflops_median"), flops_scale), "FLOP/s"),
        Col("MFU", lambda r: pct(r.get("mfu_median")), "MFU"),
        Col("W", lambda r: fixed(r.get("power_avg_w_median"), 1), "W"),  # NVML: 0.1 W steps
        Col(joule_unit, lambda r: num(_j_per_sample(r), joule_scale), "J/sample"),
    ]
    sources = _run_sources(trials)
    row_source = {r.name: sources.get(str(r.get("run_id"))) for r in records
                  if as_float(r.get("mem_bw_gbs_median")) is not None}
    for source in sorted(set(row_source.values()), key=lambda s: (s is None, s or "")):
        cols.append(Col(bandwidth_header(source), lambda r, s=source: num(
            r.get("mem_bw_gbs_median")) if row_source.get(r.name, "-") == s else "", "GB/s"))
    return cols + accuracy_columns() + [
        Col("SM MHz", lambda r: num(r.get("sm_clock_mhz_median")), "SM MHz"),
        Col("compile s", lambda r: num(r.get("compile_s_median")), "compile s"),
        Col("outputs ok", lambda r: yes_no(r.get("accuracy_ok_last")), "outputs ok"),
        Col("loss first → last", lambda r: loss_text(losses.get(str(r.get("run_id")))), "loss"),
        Col("status", status_text, title=lambda v: f"status {v}"),
        # trials flagged contended (telemetry/contention.py): 6/6 ran beside a neighbour
        Col("contended", lambda r: contended.get(str(r.get("run_id")), ""),
            title=lambda v: f"{v} trials contended"),
    ]


def status_text(r: Any) -> str:
    """The row's status; a run stopped by Ctrl-C or SIGTERM reads `interrupted`, not
    `ok`, though every trial it kept finished."""
    status = str(r["status"])
    return "interrupted" if status == "ok" and r.get("stop_reason") == "interrupted" else status


def _contended_counts(trials: Optional["pd.DataFrame"]) -> Dict[str, str]:
    """run_id -> 'flagged/judged' for runs with a trial flagged contended."""
    if trials is None or "contended" not in trials.columns or "run_id" not in trials.columns:
        return {}
    flags = trials["contended"].astype(str).str.strip().str.lower()
    counts = {}
    for run_id, group in flags[trials["status"] == "ok"].groupby(trials["run_id"].astype(str)):
        judged = group.isin(("true", "false", "1", "0", "1.0", "0.0"))
        hit = int(group.isin(("true", "1", "1.0")).sum())
        if hit:
            counts[run_id] = f"{hit}/{int(judged.sum())}"
    return counts


def _threads_text(value: Any) -> str:
    """--threads as run (empty: the framework's default)."""
    v = as_float(value)
    return "" if v is None else f"{v:.0f}"


def _ranks_text(r: Any) -> str:
    if not _ranked(r):
        return ""
    strategy = str(r.get("strategy"))
    return whole(r.get("world_size")) + ("" if strategy == "ddp" else f" {strategy}")


def _ranked(r: Any) -> bool:
    strategy = r.get("strategy")
    return isinstance(strategy, str) and bool(strategy)


def _env_text(value: Any) -> str:
    return value if isinstance(value, str) and value else "default"


def accuracy_columns() -> List[Col]:
    """A time-to-accuracy run's result (empty, so not shown, for other scenarios): the
    target, whether it was reached, training seconds and joules to it, the last test
    accuracy (trials = epochs)."""
    return [
        Col("target", lambda r: fixed(r.get("target_accuracy"), 4), "target"),
        Col("reached", lambda r: yes_no(r.get("reached_last")), "reached"),
        Col("time to acc.", lambda r: num(r.get("time_to_accuracy_s_last"))
            + (" s" if as_float(r.get("time_to_accuracy_s_last")) is not None else ""),
            "time to acc."),
        Col("energy to acc.", lambda r: num(r.get("energy_to_accuracy_j_last"))
            + (" J" if as_float(r.get("energy_to_accuracy_j_last")) is not None else ""),
            "energy to acc."),
        Col("test acc.", lambda r: fixed(r.get("test_accuracy_last"), 4), "test acc."),
    ]


def summary_table(summary: "pd.DataFrame", title: Optional[str] = None,
                  trials: Optional["pd.DataFrame"] = None, width: Optional[int] = None,
                  losses: Optional[Dict[str, Dict[str, Any]]] = None,
                  targets: Optional[Dict[str, Dict[str, Any]]] = None):
    """A rich table of summary.csv rows (medians, CI, latency percentiles, energy) that
    fits `width` (None: no limit), and a note naming the columns left out (or None)."""
    cols = summary_columns(summary, trials, losses, targets)
    rows = [r for _, r in summary.iterrows()]
    cells = [serving.searched_cells(r, cols, [col.cell(r) for col in cols]) for r in rows]
    fitted = fitted_table(cols, cells, width, title, DROP_ORDER, kept_columns(rows),
                          lambda col, cell: _status_style(cell) if col.header == "status" else "")
    return fitted.table, fitted.note(width)


def missed_target_notes(summary: "pd.DataFrame",
                        targets: Optional[Dict[str, Dict[str, Any]]]) -> List[str]:
    """The lines under the table for rows whose run missed its --target-rel-ci (the
    row's configuration named when the table has more than one row)."""
    notes = []
    for _, row in summary.iterrows():
        text = missed_target(row, targets)
        if text:
            label = (f"{workload_label(row)} {row.get('backend')} {row.get('mode')} "
                     f"{row.get('precision')}: " if len(summary) > 1 else "")
            notes.append(f"{MISSED_MARK} {label}{text}")
    return notes


def _status_style(status: str) -> str:
    return "" if status == "ok" else "red"
