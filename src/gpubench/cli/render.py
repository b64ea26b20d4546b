"""Terminal rendering of results and JSON output: the run's and the suite's closing
output, the suite plan. The tables themselves (numbers never cut, columns fitted to the
width, bandwidth labelled with its source) are made in cli/result_table.py (cells and
numbers: cli/table_cells.py).
Output that is not a terminal is as wide as the table needs, or COLUMNS wide when that
is set.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from gpubench.cli.result_table import (
    UNLIMITED_WIDTH, missed_target_notes, summary_table, workload_label,
)

if TYPE_CHECKING:  # pandas only when a table is made: `gpubench list` imports this module
    import pandas as pd


def stdout_width() -> Optional[int]:
    """The width to render stdout at: None on a terminal (rich asks it, COLUMNS first);
    else COLUMNS when set; else no limit, so piped output is never cut or wrapped."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else UNLIMITED_WIDTH


def stdout_console():
    from rich.console import Console
    return Console(file=sys.stdout, width=stdout_width())


def _run_metas(folder: Any) -> List[Dict[str, Any]]:
    """The run.json of a run folder, or of a suite's runs, that parse and name a run."""
    from pathlib import Path

    metas = []
    folder = Path(folder)
    for path in [folder / "run.json", *sorted(folder.glob("runs/*/run.json"))]:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # the table is still worth showing; readers report corrupt files
        if isinstance(meta, dict) and meta.get("run_id"):
            metas.append(meta)
    return metas


def run_losses(folder: Any) -> Dict[str, Dict[str, Any]]:
    """run_id -> run.json's `loss` (training runs) for a run folder or a suite's runs."""
    return {str(meta["run_id"]): meta["loss"] for meta in _run_metas(folder)
            if isinstance(meta.get("loss"), dict)}


def run_targets(folder: Any) -> Dict[str, Dict[str, Any]]:
    """run_id -> {target_rel_ci, stop_reason} from run.json, for runs that had a target."""
    targets = {}
    for meta in _run_metas(folder):
        protocol = meta.get("protocol")
        if isinstance(protocol, dict) and protocol.get("target_rel_ci") is not None:
            targets[str(meta["run_id"])] = {"target_rel_ci": protocol["target_rel_ci"],
                                            "stop_reason": meta.get("stop_reason")}
    return targets


def run_search(folder: Any) -> Optional[Dict[str, Any]]:
    """run.json's serving.search of a single run's folder (a --find-max-qps run), or None."""
    for meta in _run_metas(folder)[:1]:
        serving = meta.get("serving")
        if isinstance(serving, dict) and isinstance(serving.get("search"), dict):
            return serving["search"]
    return None


def print_table(console: Any, summary: "pd.DataFrame", title: Optional[str] = None,
                trials: Optional["pd.DataFrame"] = None, folder: Any = None) -> None:
    losses = run_losses(folder) if folder is not None else None
    targets = run_targets(folder) if folder is not None else None
    table, note = summary_table(summary, title, trials, console.width, losses, targets)
    console.print(table)
    if note:
        console.print(note, style="dim", markup=False)
    for line in missed_target_notes(summary, targets):  # the runs that stopped short of --target-rel-ci
        console.print(line, style="yellow", markup=False)


def throttle_warning(trials: "pd.DataFrame") -> Optional[str]:
    """One line naming the trials whose GPU clocks were throttled (power cap, thermal,
    hardware slowdown or power brake), their reasons, and what --on-throttle made of
    them (left out of the statistics, or kept); None when none was."""
    if "throttled" not in trials.columns:
        return None
    flags = trials["throttled"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    hit = trials.loc[flags]
    if hit.empty:
        return None

    def text(row: Any, column: str) -> str:
        value = row.get(column)
        return "" if value is None or value != value else str(value).strip()

    names = ", ".join(f"{row['trial']} ({text(row, 'throttle_reasons')})"
                      if text(row, "throttle_reasons") else str(row["trial"])
                      for _, row in hit.iterrows())
    left_out = sum(bool(text(row, "excluded")) for _, row in hit.iterrows())
    if left_out == len(hit):
        fate = ("left out of the statistics (--on-throttle; trials.csv keeps them with "
                "excluded=throttled)")
    elif left_out:
        fate = f"{left_out} left out of the statistics, the rest kept in them"
    else:
        fate = "kept in the statistics: those numbers are not peak performance"
    return (f"GPU clocks were throttled during trial(s) {names} of {len(trials)}; {fate} "
            "(clock_event_reasons in samples.csv says when)")


def escape_text(text: str) -> str:
    from rich.markup import escape
    return escape(text)


def _records(frame: "pd.DataFrame") -> List[Dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def print_run(outcome: Any, fmt: str, quiet: bool) -> None:
    """The run folder's path, then the summary (table or JSON) unless quiet."""
    if fmt == "json":
        payload = {"path": str(outcome.path), "status": outcome.status,
                   "stop_reason": outcome.stop_reason, "error": outcome.error,
                   "summary": _records(outcome.summary)}
        loss = getattr(outcome, "loss", None) or run_losses(outcome.path).get(
            str(outcome.trials["run_id"].iloc[0]) if len(outcome.trials) else "")
        if loss:  # training: the loss from the first step to the last trial
            payload["loss"] = loss
        print(json.dumps(payload, indent=2))
        return
    print(outcome.path)
    if quiet:
        return
    console = stdout_console()
    print_table(console, outcome.summary, trials=outcome.trials, folder=outcome.path)
    from gpubench.cli.serving_table import probes_table
    # a --find-max-qps search: each probe, and what the search made of it
    probes = probes_table(outcome.trials, run_search(outcome.path), console.width)
    if probes is not None:
        console.print(probes.table)
        if probes.note(console.width):
            console.print(probes.note(console.width), style="dim", markup=False)
    warning = throttle_warning(outcome.trials)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {escape_text(warning)}")
    if outcome.error:
        last = outcome.error.strip().splitlines()[-1]
        console.print(f"[red]run failed:[/red] {escape_text(last)} "
                      f"(full error in {escape_text(str(outcome.path / 'trials.csv'))})")


def print_suite_plan(plan: Any, fmt: str = "table", estimate: Any = None) -> None:
    """--dry-run: the expanded matrix, one run a line (or JSON); with a SuiteEstimate
    (suite/estimate.py), each run known to be refused here says why, the count line
    counts them, and stderr gets the estimated wall time and a warning when it is large."""
    if fmt == "json":
        doc = {"config": str(plan.config_path), "runs": [p.label() for p in plan.runs],
               "skipped": [p.label() for p in plan.skipped]}
        if plan.shard is not None:
            doc["shard"] = str(plan.shard)
        if estimate is not None:
            doc["estimate"] = estimate.as_dict(plan)
        print(json.dumps(doc, indent=2))
        return
    refused = estimate.refused if estimate is not None else {}
    for planned in plan.runs:
        refusal = refused.get(planned.key)
        print(planned.label() + (f"  {refusal[0]}: {refusal[1]}" if refusal else ""))
    skipped = f", {len(plan.skipped)} already ok (skipped by --resume)" if plan.skipped else ""
    if estimate is not None and estimate.refused_runs:
        kinds = " or ".join(sorted({status for status, _ in refused.values()}))
        skipped += f", {estimate.refused_runs} of them {kinds} here"
    part = f" (shard {plan.shard})" if plan.shard is not None else ""
    print(f"{len(plan.runs)} runs from {plan.config_path}{part}{skipped}")
    if estimate is not None:
        _print_estimate(estimate)


def _print_estimate(estimate: Any) -> None:
    """--dry-run's wall-time estimate (suite/estimate.py) and its warnings, on stderr:
    stdout stays the matrix, one run a line, and the count."""
    from gpubench.suite.estimate import FIXED_COST_S, REFUSAL_S, SERVER_START_S, format_duration

    capped = estimate.max_seconds > estimate.seconds * 1.05
    text = f"estimated wall time: {format_duration(estimate.seconds)}"
    if capped:
        text += (f" (up to {format_duration(estimate.max_seconds)} if every target_rel_ci run "
                 "reaches its cap and every time-to-accuracy run its timeout)")
    if estimate.devices > 1:
        text += f"; over {estimate.devices} devices: {format_duration(estimate.wall_s)}"
        text += f" (up to {format_duration(estimate.max_wall_s)})" if capped else ""
    print(text, file=sys.stderr)
    print(f"  (per run: warmup_s + trials x min_trial_s + {FIXED_COST_S['fork']:g} s to fork its "
          f"worker, build and write ({FIXED_COST_S['fresh']:g} s with isolation: fresh), "
          f"{REFUSAL_S:g} s for a refused one; {SERVER_START_S:g} s to start each fork server)",
          file=sys.stderr)
    for warning in estimate.warnings():
        print(f"gpubench: warning: {warning}", file=sys.stderr)


def suite_json(path: Any, summary: "pd.DataFrame", statuses: Dict[str, int],
               config: Optional[str], trials: Optional["pd.DataFrame"] = None) -> str:
    doc = {"path": str(path), "kind": "suite", "config": config,
           "statuses": dict(sorted(statuses.items())), "summary": _records(summary)}
    if trials is not None:
        from gpubench.results.accuracy_score import score_runs
        scores = score_runs(trials)
        if not scores.empty:  # time-to-accuracy configurations, MLPerf-scored
            doc["accuracy_scores"] = _records(scores)
    from gpubench.results.scaling import scaling_efficiency
    scaling = scaling_efficiency(summary)
    if not scaling.empty:  # nprocs crossed: weak scaling efficiency
        doc["scaling"] = _records(scaling)
    return json.dumps(doc, indent=2)


def print_suite_result(path: Any, summary: "pd.DataFrame", trials: Optional["pd.DataFrame"],
                       title: str, counts_line: str) -> None:
    """The table of every row of a suite folder, a line of counts, then the failures'
    last lines."""
    console = stdout_console()
    print_table(console, summary, title=title, trials=trials, folder=path)
    if trials is not None:
        print_accuracy_scores(console, trials)
    print_scaling(console, summary)
    console.print(counts_line, markup=False)
    for _, row in summary[summary["status"] != "ok"].iterrows():
        error = row["error"] if isinstance(row["error"], str) else ""
        last = error.strip().splitlines()[-1] if error.strip() else ""
        console.print(f"[red]{escape_text(str(row['status']))}[/red] "
                      + escape_text(f"{workload_label(row)} {row['backend']} {row['mode']} "
                                    f"{row['precision']}: {last}"))


def _print_fitted(console: Any, cols: List[Any], cells: List[List[str]], title: str,
                  kept: Sequence[str]) -> None:
    """A table under the suite's, fitted to the console's width like every results
    table: identity columns move to the title, columns not in `kept` go right to left."""
    from gpubench.cli.fit_table import fitted_table

    drop_order = [c.key for c in reversed(cols) if c.key is not None]
    fitted = fitted_table(cols, cells, console.width, title, drop_order, kept)
    console.print(fitted.table)
    note = fitted.note(console.width)
    if note:
        console.print(note, style="dim", markup=False)


def _identity(header: str) -> Any:
    from gpubench.cli.table_cells import Col
    return Col(header, str, title=str if header != "batch" else (lambda v: f"batch {v}"))


def print_accuracy_scores(console: Any, trials: "pd.DataFrame") -> None:
    """Under a suite's table: each time-to-accuracy configuration's runs scored as
    MLPerf scores them (results/accuracy_score.py)."""
    from gpubench.cli.table_cells import Col, sig
    from gpubench.results.accuracy_score import score_runs

    scores = score_runs(trials)
    if scores.empty:
        return
    cols = [*(_identity(h) for h in ("workload", "backend", "precision", "batch")),
            *(Col(h, str, h) for h in ("target", "runs", "reached", "score s", "score J")),
            Col("how", str, "how", text=True)]
    cells = [[str(v) for v in (
        workload_label(r), r["backend"], r["precision"], r["batch_size"],
        f"{float(r['target_accuracy']):g}", r["n_runs"], r["n_reached"],
        sig(r["score_s"]) if r["score_s"] == r["score_s"] else "",
        sig(r["score_j"]) if r["score_j"] == r["score_j"] else "", r["note"])]
        for _, r in scores.iterrows()]
    _print_fitted(console, cols, cells, "Time to accuracy, scored as MLPerf does",
                  ("target", "reached", "score s"))


def print_scaling(console: Any, summary: "pd.DataFrame") -> None:
    """Under a suite's table: weak scaling efficiency of the configurations run at
    several world sizes, one of them 1 (results/scaling.py)."""
    from gpubench.cli.table_cells import Col, sig
    from gpubench.results.scaling import scaling_efficiency

    scaling = scaling_efficiency(summary)
    if scaling.empty:
        return
    cols = [*(_identity(h) for h in ("workload", "backend", "precision", "batch", "strategy")),
            *(Col(h, str, h) for h in ("ranks", "global samples/s", "per rank", "efficiency"))]
    cells = [[str(v) for v in (
        workload_label(r), r["backend"], r["precision"], r["batch_size"],
        r["strategy"] if isinstance(r["strategy"], str) else "none", r["world_size"],
        sig(r["global_samples_per_s"]), sig(r["per_rank_samples_per_s"]),
        f"{r['efficiency']:.1%}")] for _, r in scaling.iterrows()]
    _print_fitted(console, cols, cells, "Weak scaling: throughput(N) / (N x throughput(1))",
                  ("ranks", "efficiency"))


def counts_text(statuses: Dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))


def print_suite(outcome: Any, plan: Any, fmt: str = "table") -> None:
    """The final table of every row of the suite folder, then the failures' last lines
    (or the same as JSON)."""
    if fmt == "json":
        print(suite_json(outcome.path, outcome.summary, outcome.statuses, str(plan.config_path),
                         outcome.trials))
        return
    print_suite_result(outcome.path, outcome.summary, outcome.trials,
                       f"Suite {plan.config_path.name}",
                       f"this invocation: {counts_text(outcome.statuses) or 'nothing to run'}")
