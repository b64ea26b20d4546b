"""`gpubench history RESULTS...`: change points in each configuration's results over
many runs (run folders, or a results store: gpubench store), as a table, markdown or JSON, and an exit code CI
can fail on (1: a configuration's newest segment is a regression)."""

from __future__ import annotations

import argparse
import sys
from gpubench.cli.argtypes import int_at_least, path_arg
from gpubench.cli.filter_options import add_filter_options, filters_from

FORMATS = ("table", "markdown", "json")
VERDICT_STYLE = {"slower": "bold red", "faster": "green", "shift": "yellow"}
STATUS_STYLE = {"regression": "bold red", "ok": "", "too_few_runs": "dim"}


min_segment = int_at_least(2, "a whole number of runs", "2 or more runs")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gpubench.cli.compare import percent
    from gpubench.results.compare_directions import METRICS  # no pandas: a plain tuple

    p = sub.add_parser(
        "history", help="find change points in results over many runs (nightly history)",
        description="Read every run under RESULTS, take one value per run and configuration "
                    "(the median of its ok trials), order the runs by start time (or --by), "
                    "and find where each configuration's level changed (ruptures PELT, "
                    "checked with the CI of the ratio and a rank test, never below the "
                    "configuration's own run-to-run noise). Exit 0: no regression, 1: a "
                    "configuration's newest segment is slower than the one before it beyond "
                    "the threshold, 2: bad input.")
    p.add_argument("results", type=path_arg, nargs="+", metavar="RESULTS",
                   help="run folders, suite folders, trials.csv files or folders of them "
                        "(searched recursively), or results stores (gpubench store)")
    p.add_argument("--metric", choices=METRICS, default=METRICS[0], metavar="COLUMN",
                   help=f"what to follow (default {METRICS[0]}; one of {', '.join(METRICS)})")
    p.add_argument("--by", metavar="COLUMN",
                   help="order runs by this column's values (e.g. driver_version) in the order "
                        "first seen, by time within a value, instead of by time alone")
    p.add_argument("--threshold", type=percent, default=0.05, metavar="PCT",
                   help="smallest change that counts as slower/faster, in percent (default 5%%)")
    p.add_argument("--min-segment", type=min_segment, default=5, metavar="N",
                   help="fewest runs on each side of a change (default 5): one noisy night "
                        "is not a change")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default, for a terminal), markdown (for a CI page) or json")
    p.add_argument("--output", "-o", type=path_arg, metavar="FILE",
                   help="write the output to FILE (atomically) instead of standard output")
    add_filter_options(p)  # --since: to accept an old regression, start the history after it
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_REGRESSION
    from gpubench.cli.compare import emit
    from gpubench.results.history import history_paths
    from gpubench.results.history_format import headline, to_json, to_markdown

    found = history_paths(args.results, filters=filters_from(args), metric=args.metric,
                          threshold=args.threshold, min_segment=args.min_segment, by=args.by,
                          since=args.since)
    code = EXIT_REGRESSION if found.regressions else EXIT_OK
    emit(args.format, args.output, lambda: to_json(found, "regression" if code else "ok", code),
         lambda: to_markdown(found), lambda width: table_text(found, width), headline(found))
    return code


# Left out first when the terminal is narrow (where, how much and the verdict last).
DROP_ORDER = ("period", "noise", "p", "runs", "before", "95% CI", "median", "change")


def table_text(found, width) -> str:
    """One row per change (a configuration without one: one row saying so), fitted to
    `width` (None: the terminal's); notes under the table, the too-few-runs one once."""
    import io

    from rich.console import Console
    from rich.markup import escape

    from gpubench.cli.fit_table import fitted_table
    from gpubench.cli.table_cells import Col
    from gpubench.cli.compare import p_text
    from gpubench.results.compare_format import signed_pct, value_text
    from gpubench.results.history import TOO_FEW_PREFIX
    from gpubench.results.history_format import (
        STATUS_TEXT, change_ci, few_runs_note, headline, label, pct, rule, span, where,
    )

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=sys.stdout.isatty() and width is None)
    cols = [Col("status", lambda x: x[0], title=lambda v: f"status {v}"),
            Col("configuration", lambda x: x[1], title=str),
            Col("runs", lambda x: x[2], "runs"),
            Col("period", lambda x: x[3], "period", text=True),
            Col("noise", lambda x: x[4], "noise"),
            Col("change at", lambda x: x[5]),
            # the level now (after the newest change, or over all runs), and before a change
            Col("median", lambda x: x[7], "median"),
            Col("before", lambda x: x[6], "before"),
            Col("change", lambda x: x[8], "change"),
            Col("95% CI", lambda x: x[9], "95% CI"),
            Col("p", lambda x: x[10], "p"),
            Col("verdict", lambda x: x[11])]
    cells = []
    for c in found.configs:
        base = [STATUS_TEXT[c.status], label(c), str(len(c.runs)), span(c), pct(c.noise)]
        if not c.changes:  # too few runs to look for one: no "no change" beside it
            median = value_text(c.runs["value"].median()) if len(c.runs) else ""
            cells.append(base + ["" if c.status == "too_few_runs" else "no change",
                                 "", median, "", "", "", ""])
        for i, ch in enumerate(c.changes):
            cells.append((base if i == 0 else [""] * len(base)) + [
                where(ch, found.by), value_text(ch.median_before), value_text(ch.median_after),
                signed_pct(ch.change_pct), change_ci(ch), p_text(ch.p_value), ch.verdict])
    cells = [[col.cell(row) for col in cols] for row in cells]
    fitted = fitted_table(cols, cells, console.width, None,
                          DROP_ORDER, style=_style)
    console.print(escape(f"gpubench history: {headline(found)}"))  # a line of its own: it wraps at the width, not the table's
    console.print(fitted.table)
    few = few_runs_note(found)
    for c in found.configs:
        for note in c.notes:
            if not (few and TOO_FEW_PREFIX in note):
                console.print(escape(f"note: {label(c)}: {note}"))
    if few:
        console.print(escape(f"note: {few}"))
    note = fitted.note(console.width)
    if note:
        console.print(escape(note), style="dim")
    console.print(escape(rule(found)), style="dim")
    return buffer.getvalue()


def _style(col, cell: str) -> str:
    if col.header == "verdict":
        return VERDICT_STYLE.get(cell, "")
    if col.header == "status":
        return STATUS_STYLE.get(cell.replace(" ", "_"), "")
    return ""
