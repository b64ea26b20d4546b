"""`gpubench history RESULTS...`: change points in each configuration's results over
many runs (a nightly results store), as a table, markdown or JSON, and an exit code CI
can fail on (1: a configuration's newest segment is a regression)."""

from __future__ import annotations

import argparse
import sys
from gpubench.cli.argtypes import int_at_least, path_arg

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
                        "(searched recursively)")
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
    p.add_argument("--since", metavar="DATE",
                   help="only runs started on or after DATE (e.g. 2025-01-31): to accept an "
                        "old regression, start the history after it")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default, for a terminal), markdown (for a CI page) or json")
    p.add_argument("--output", "-o", type=path_arg, metavar="FILE",
                   help="write the output to FILE (atomically) instead of standard output")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_REGRESSION
    from gpubench.cli.compare import emit
    from gpubench.results.history import history_paths
    from gpubench.results.history_format import headline, to_json, to_markdown

    found = history_paths(args.results, metric=args.metric, threshold=args.threshold,
                          min_segment=args.min_segment, by=args.by, since=args.since)
    code = EXIT_REGRESSION if found.regressions else EXIT_OK
    emit(args.format, args.output, lambda: to_json(found, "regression" if code else "ok", code),
         lambda: to_markdown(found), lambda width: table_text(found, width), headline(found))
    return code


def table_text(found, width) -> str:
    """One row per change (a configuration without one: one row saying so)."""
    import io

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gpubench.results.compare_format import num, signed_pct, value_text
    from gpubench.results.history_format import (
        STATUS_TEXT, change_ci, headline, label, pct, rule, span, where,
    )

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=sys.stdout.isatty() and width is None)
    table = Table(title=f"gpubench history: {escape(headline(found))}", title_justify="left")
    for h in ("status", "configuration", "runs", "period", "noise", "change at", "median before",
              "median after", "change", "95% CI", "p", "verdict"):
        table.add_column(h, justify="left" if h in ("status", "configuration", "period", "change at",
                                                     "verdict") else "right",
                         no_wrap=h in ("period", "95% CI"))
    notes = []
    for c in found.configs:
        style = STATUS_STYLE[c.status]
        status = f"[{style}]{STATUS_TEXT[c.status]}[/]" if style else STATUS_TEXT[c.status]
        base = [status, escape(label(c)), str(len(c.runs)), span(c), pct(c.noise)]
        notes += [f"{label(c)}: {note}" for note in c.notes]
        if not c.changes:
            median = value_text(c.runs["value"].median()) if len(c.runs) else ""
            table.add_row(*base, "no change", median, "", "", "", "", "")
        for i, ch in enumerate(c.changes):
            vstyle = VERDICT_STYLE.get(ch.verdict, "")
            table.add_row(*(base if i == 0 else [""] * len(base)), escape(where(ch, found.by)),
                          value_text(ch.median_before), value_text(ch.median_after),
                          signed_pct(ch.change_pct), change_ci(ch), num(ch.p_value, ".2g"),
                          f"[{vstyle}]{ch.verdict}[/]")
    console.print(table)
    for note in notes:
        console.print(escape(f"note: {note}"))
    console.print(escape(rule(found)), style="dim")
    return buffer.getvalue()
