"""`gpubench compare BASE [NEW]`: verdicts per configuration (faster, slower, same,
inconclusive) as a table, markdown or JSON, and an exit code CI can fail on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from gpubench.cli.argtypes import path_arg

FAIL_ON = ("regression", "inconclusive", "never")
FORMATS = ("table", "markdown", "json")
VERDICT_STYLE = {"slower": "bold red", "faster": "green", "same": "", "inconclusive": "yellow",
                 "base_only": "dim", "new_only": "dim"}


def percent(text: str) -> float:
    """A threshold in percent: `5` or `5%` (both 5%), returned as a fraction."""
    raw = text.strip().rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5 or 5%, got {text!r}") from None
    if not (0 < value < 100):
        raise argparse.ArgumentTypeError(f"expected a percentage between 0 and 100, got {text!r}")
    return value / 100.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gpubench.results.compare_directions import METRICS  # no pandas: a plain tuple

    p = sub.add_parser(
        "compare", help="compare two sets of results: faster, slower, same or inconclusive",
        description="Compare NEW against BASE per configuration (workload, backend, mode, "
                    "precision, batch size, params, device). Exit 0: no regression, 1: a "
                    "regression beyond the threshold, 2: bad input, 3: inconclusive (only "
                    "with --fail-on inconclusive).")
    p.add_argument("base", type=path_arg, metavar="BASE",
                   help="run folder, suite folder, trials.csv, or folder of run folders")
    p.add_argument("new", type=path_arg, nargs="?", metavar="NEW",
                   help="the same kinds of input; may be left out with --by")
    p.add_argument("--by", metavar="COLUMN",
                   help="compare groups by this column (e.g. driver_version): the rows of "
                        "BASE (and NEW) are split by its value and each compared against the "
                        "baseline; the column is left out of the match")
    p.add_argument("--baseline", metavar="VALUE",
                   help="with --by: the value compared against (default: the first seen)")
    p.add_argument("--metric", choices=METRICS, default=METRICS[0], metavar="COLUMN",
                   help=f"what to compare (default {METRICS[0]}; one of {', '.join(METRICS)})")
    p.add_argument("--threshold", type=percent, default=0.05, metavar="PCT",
                   help="smallest change that counts, in percent (default 5%%)")
    p.add_argument("--fail-on", choices=FAIL_ON, default="regression",
                   help="exit 1 on a regression (default); 'inconclusive' also exits 3 when "
                        "a row cannot be decided; 'never' always exits 0")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default, for a terminal), markdown (for a CI page) or json")
    p.add_argument("--output", "-o", type=path_arg, metavar="FILE",
                   help="write the output to FILE (atomically) instead of standard output")
    p.add_argument("--seed", type=int, default=0, help="kept for scripts that pass it; the statistics are exact now and use no random draws")
    p.add_argument("--noise-from", type=path_arg, action="append", default=[], metavar="RESULTS",
                   help="runs of the past (e.g. the nightly history; repeatable): each "
                        "configuration's run-to-run noise there sets its least callable "
                        "change (1.5x the noise), so drift between runs is not called a change")
    p.add_argument("--include-contended", action="store_true",
                   help="keep trials marked contended (they ran slow, or beside other "
                        "processes' CPU or GPU use); by default they are left out and "
                        "counted in the note")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION
    from gpubench.errors import UserError
    from gpubench.results.compare import compare_paths, outcome
    from gpubench.results.compare_format import headline, to_json, to_markdown

    if args.baseline is not None and args.by is None:
        raise UserError("--baseline needs --by COLUMN")
    comparison = compare_paths(args.base, args.new, metric=args.metric, threshold=args.threshold,
                               by=args.by, baseline=args.baseline, seed=args.seed,
                               include_contended=args.include_contended,
                               noise_from=args.noise_from)
    result = outcome(comparison.table, args.fail_on)
    code = {"regression": EXIT_REGRESSION, "inconclusive": EXIT_INCONCLUSIVE}.get(result, EXIT_OK)
    emit(args.format, args.output, lambda: to_json(comparison, result, code),
         lambda: to_markdown(comparison), lambda width: table_text(comparison, width),
         headline(comparison))
    return code


def emit(fmt: str, output: Optional[Path], as_json: Callable[[], str],
         as_markdown: Callable[[], str], as_table: Callable[[Optional[int]], str],
         headline_text: str) -> None:
    """compare's and history's output: JSON, markdown or a table (the terminal's width,
    else 160 columns), on stdout or written atomically to `output` with a headline."""
    if fmt == "json":
        text = as_json()
    elif fmt == "markdown":
        text = as_markdown()
    else:
        text = as_table(None if output is None and sys.stdout.isatty() else 160)
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(output, text)
        print(f"{headline_text} (written to {output})")


def write_output(path: Path, text: str) -> None:
    from gpubench.errors import UserError
    from gpubench.atomic_io import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise UserError(f"--output {path}: cannot write ({exc.strerror or exc})") from None


def table_text(comparison, width) -> str:
    """The verdict table as rich renders it, with a headline and the rule."""
    import io

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from gpubench.results.compare_format import (
        OPTIONAL, RULE, ci_text, clock_text, config_label, headline, num, signed_pct, value_text,
    )

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=sys.stdout.isatty() and width is None)
    table = Table(title=f"gpubench compare: {escape(headline(comparison))}", title_justify="left")
    by = comparison.by is not None
    headers = (["base", "new"] if by else []) + [
        "configuration", "n", "median base", "median new", "change", "95% CI ratio", "p",
        "verdict", "J/sample Δ", "SM clock Δ", "note"]
    rows = []
    for _, r in comparison.table.iterrows():
        style = VERDICT_STYLE.get(r["verdict"], "")
        verdict = r["verdict"].replace("_", " ")
        rows.append(([escape(str(r["base"])), escape(str(r["new"]))] if by else []) + [
            escape(config_label(r)), f"{r['n_base']}/{r['n_new']}",
            value_text(r["median_base"]), value_text(r["median_new"]), signed_pct(r["change_pct"]),
            ci_text(r), num(r["p_value"], ".2g"), f"[{style}]{verdict}[/]" if style else verdict,
            signed_pct(r["j_per_sample_change_pct"]), escape(clock_text(r)),
            escape(str(r["note"] or ""))])
    keep = [i for i, h in enumerate(headers) if h not in OPTIONAL or any(row[i] for row in rows)]
    for i in keep:
        h = headers[i]
        table.add_column(h, justify="left" if h in ("base", "new", "configuration", "verdict", "note") else "right")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    console.print(escape(RULE), style="dim")
    if len(comparison.scaling):
        scaling = Table(title="Weak scaling efficiency: throughput(N) / (N x throughput(1))",
                        title_justify="left")
        for h in ("configuration", "ranks", "base", "new", "efficiency base", "efficiency new",
                  "change"):
            scaling.add_column(h, justify="left" if h in ("configuration", "base", "new")
                               else "right")
        for _, r in comparison.scaling.iterrows():
            scaling.add_row(escape(config_label(r)), f"{r['world_size']:.0f}",
                            escape(str(r["base"])), escape(str(r["new"])),
                            f"{r['efficiency_base']:.1%}", f"{r['efficiency_new']:.1%}",
                            f"{r['change_points']:+.1f} points")
        console.print(scaling)
    return buffer.getvalue()
