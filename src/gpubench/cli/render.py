"""Terminal rendering of results (rich tables) and JSON output."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Optional

import pandas as pd


def _num(value: Any, fmt: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else format(v, fmt)


def _console():
    from rich.console import Console
    # Piped output keeps a wide table on one line per row rather than wrapping at 80.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)


def _rel_ci(row: Any, metric: str) -> str:
    """The CI of the median as +/- its largest distance from the median, in percent."""
    try:
        med, low, high = (float(row[f"{metric}_{k}"]) for k in ("median", "ci_low", "ci_high"))
    except (TypeError, ValueError):
        return ""
    if any(math.isnan(v) for v in (med, low, high)) or not med:
        return ""
    return f"±{max(med - low, high - med) / abs(med):.1%}"


def _j_per_sample(row: Any) -> str:
    spj = _num(row.get("samples_per_joule_median"), "g")
    return _num(1.0 / float(spj), ".3g") if spj and float(spj) else ""


THR = "throughput_samples_per_s"
# (header, cell) pairs; a column that is empty in every row is left out of the table.
COLUMNS = (
    ("workload", lambda r: str(r["workload"]) + (f" [{r['params']}]" if isinstance(r["params"], str) and r["params"] else "")),
    ("backend", lambda r: str(r["backend"])),
    ("mode", lambda r: str(r["mode"])),
    ("precision", lambda r: str(r["precision"])),
    ("batch", lambda r: str(r["batch_size"])),
    ("trials", lambda r: f"{r['n_ok']}/{r['n_trials']}"),
    ("samples/s", lambda r: _num(r[f"{THR}_median"], ",.0f")),
    ("95% CI", lambda r: _rel_ci(r, THR)),
    ("CV", lambda r: _num(r[f"{THR}_cv"], ".1%")),
    ("p50 ms", lambda r: _num(r["latency_p50_ms_median"], ".3f")),
    ("p90 ms", lambda r: _num(r["latency_p90_ms_median"], ".3f")),
    ("p99 ms", lambda r: _num(r["latency_p99_ms_median"], ".3f")),
    ("TFLOP/s", lambda r: _num(r["tflops_median"], ".4g")),
    ("MFU", lambda r: _num(r["mfu_median"], ".1%")),
    ("W", lambda r: _num(r["power_avg_w_median"], ".1f")),
    ("J/sample", _j_per_sample),
    ("GB/s", lambda r: _num(r["mem_bw_gbs_median"], ".1f")),
    ("SM MHz", lambda r: _num(r["sm_clock_mhz_median"], ".0f")),
    ("loss", lambda r: _num(r["loss_median"], ".4g")),
    ("status", lambda r: str(r["status"]) if r["status"] == "ok" else f"[red]{r['status']}[/red]"),
)


def summary_table(summary: pd.DataFrame, title: Optional[str] = None):
    """A rich table of summary.csv rows (medians, CI, latency percentiles, energy)."""
    from rich.table import Table

    cells = [[cell(r) for _, cell in COLUMNS] for _, r in summary.iterrows()]
    keep = [i for i in range(len(COLUMNS)) if any(row[i] for row in cells) or i < 6]
    table = Table(title=title, title_justify="left")
    for i in keep:
        table.add_column(COLUMNS[i][0], justify="left" if i < 4 or COLUMNS[i][0] == "status" else "right")
    from rich.markup import escape

    for row in cells:  # values from result files are text, never markup
        table.add_row(*(row[i] if COLUMNS[i][0] == "status" else escape(row[i]) for i in keep))
    return table


def throttle_warning(trials: pd.DataFrame) -> Optional[str]:
    """One line naming the trials whose GPU clocks were throttled (power, thermal or
    hardware slowdown), or None."""
    if "throttled" not in trials.columns:
        return None
    flags = trials["throttled"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    hit = trials.loc[flags, "trial"].tolist()
    if not hit:
        return None
    names = ", ".join(str(t) for t in hit)
    return (f"GPU clocks were throttled during trial(s) {names} of {len(trials)}; those numbers "
            "are not peak performance (clock_event_reasons in samples.csv says why)")


def escape_text(text: str) -> str:
    from rich.markup import escape
    return escape(text)


def print_run(outcome: Any, fmt: str, quiet: bool) -> None:
    """The run folder's path, then the summary (table or JSON) unless quiet."""
    if fmt == "json":
        payload = {"path": str(outcome.path), "status": outcome.status,
                   "stop_reason": outcome.stop_reason, "error": outcome.error,
                   "summary": json.loads(outcome.summary.to_json(orient="records"))}
        print(json.dumps(payload, indent=2))
        return
    print(outcome.path)
    if quiet:
        return
    console = _console()
    console.print(summary_table(outcome.summary))
    warning = throttle_warning(outcome.trials)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {escape_text(warning)}")
    if outcome.error:
        last = outcome.error.strip().splitlines()[-1]
        console.print(f"[red]run failed:[/red] {last} (full error in {outcome.path / 'trials.csv'})")


def print_suite_plan(plan: Any) -> None:
    """--dry-run: the expanded matrix, one run a line."""
    for planned in plan.runs:
        print(planned.label())
    skipped = f", {len(plan.skipped)} already ok (skipped by --resume)" if plan.skipped else ""
    print(f"{len(plan.runs)} runs from {plan.config_path}{skipped}")


def print_suite(outcome: Any, plan: Any) -> None:
    """The final table of every row of the suite folder, then the failures' last lines."""
    console = _console()
    console.print(summary_table(outcome.summary, title=f"Suite {plan.config_path.name}"))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.statuses.items()))
    console.print(f"this invocation: {counts or 'nothing to run'}")
    from rich.markup import escape

    for _, row in outcome.summary[outcome.summary["status"] != "ok"].iterrows():
        error = row["error"] if isinstance(row["error"], str) else ""
        last = error.strip().splitlines()[-1] if error.strip() else ""
        console.print(f"[red]{row['status']}[/red] {escape(str(row['workload']))} "
                      f"{escape(str(row['backend']))} {row['mode']} {row['precision']}: {escape(last)}")
