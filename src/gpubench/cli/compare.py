"""`gpubench compare BASE [NEW]`: verdicts per configuration (faster, slower, same,
inconclusive) as a table, markdown or JSON, and an exit code CI can fail on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from gpubench.cli.argtypes import path_arg
from gpubench.cli.filter_options import add_filter_options, filters_from

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
                   help="run folder, suite folder, trials.csv, folder of run folders, or a "
                        "results store (gpubench store)")
    p.add_argument("new", type=path_arg, nargs="?", metavar="NEW",
                   help="the same kinds of input; may be left out with --by, or with "
                        "--where-base/--where-new (then NEW is BASE)")
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
    p.add_argument("--seed", type=int, default=0,
                   help="the seed of the paired test's bootstrap interval (default 0: the "
                        "same inputs give the same interval)")
    p.add_argument("--noise-from", type=path_arg, action="append", default=[], metavar="RESULTS",
                   help="runs of the past (e.g. the nightly history; repeatable): each "
                        "configuration's run-to-run noise there sets its least callable "
                        "change (1.5x the noise), so drift between runs is not called a change")
    p.add_argument("--include-contended", action="store_true",
                   help="keep trials marked contended (they ran slow, or beside other "
                        "processes' CPU or GPU use); by default they are left out and "
                        "counted in the note")
    p.add_argument("--include-throttled", action="store_true",
                   help="keep trials marked excluded (throttled: the GPU's clocks were held "
                        "down by power, thermal or hardware slowdown); by default they are "
                        "left out and counted in the note")
    p.add_argument("--unpaired", action="store_true",
                   help="the unpaired Mann-Whitney test even where both sides come from one "
                        "interleaved suite with equal rounds (paired by default: Wilcoxon "
                        "signed-rank on round k of BASE against round k of NEW)")
    add_filter_options(p)
    g = p.add_argument_group("one side's runs (with the options above on both)")
    g.add_argument("--where-base", action="append", default=[], metavar="COLUMN=VALUE",
                   help="only BASE's rows whose COLUMN holds VALUE (as --where; repeatable), "
                        "e.g. compare STORE --where-base driver_version=550.54.15 "
                        "--where-new driver_version=560.35.03, or date=2026-03-01 for a night")
    g.add_argument("--where-new", action="append", default=[], metavar="COLUMN=VALUE",
                   help="only NEW's rows whose COLUMN holds VALUE (as --where-base)")
    p.set_defaults(execute=execute)


def side_filters(args: argparse.Namespace):
    """(BASE's filters, NEW's): the common ones and each side's own."""
    common = filters_from(args)
    return (common.plus(args.where_base, "--where-base"),
            common.plus(args.where_new, "--where-new"))


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION
    from gpubench.errors import UserError
    from gpubench.results.compare import compare_paths, outcome
    from gpubench.results.compare_format import headline, to_json, to_markdown

    if args.baseline is not None and args.by is None:
        raise UserError("--baseline needs --by COLUMN")
    filters = side_filters(args)
    new = args.new
    if new is None and (args.where_base or args.where_new):
        if args.by is not None:
            raise UserError("--by splits BASE itself: leave out --where-base/--where-new, or "
                            "--by")
        new = args.base  # one input, two selections of it
    comparison = compare_paths(args.base, new, metric=args.metric, threshold=args.threshold,
                               by=args.by, baseline=args.baseline, seed=args.seed,
                               include_contended=args.include_contended,
                               noise_from=args.noise_from,
                               include_throttled=args.include_throttled, unpaired=args.unpaired,
                               filters=filters)
    result = outcome(comparison.table, args.fail_on)
    code = {"regression": EXIT_REGRESSION, "inconclusive": EXIT_INCONCLUSIVE}.get(result, EXIT_OK)
    emit(args.format, args.output, lambda: to_json(comparison, result, code),
         lambda: to_markdown(comparison) + changed_markdown(comparison),
         lambda width: table_text(comparison, width),
         headline(comparison))
    return code


def emit(fmt: str, output: Optional[Path], as_json: Callable[[], str],
         as_markdown: Callable[[], str], as_table: Callable[[Optional[int]], str],
         headline_text: str) -> None:
    """compare's and history's output: JSON, markdown or a table (as wide as stdout: the
    terminal's width, COLUMNS when piped, else as wide as it needs; a file: 160 columns),
    on stdout or written atomically to `output` with a headline."""
    from gpubench.cli.render import stdout_width

    if fmt == "json":
        text = as_json()
    elif fmt == "markdown":
        text = as_markdown()
    else:
        text = as_table(stdout_width() if output is None else 160)
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


# Left out first when the terminal is narrow (the verdict, and what it rests on, last).
DROP_ORDER = ("SM clock Δ", "J/sample Δ", "note", "test", "p", "median base", "median new", "n",
              "change", "95% CI ratio")


def p_text(p) -> str:
    """A p-value as read in a table: 2 significant digits, never an exponent."""
    from gpubench.results.compare_format import num
    return "<0.001" if num(p, "g") and p < 0.001 else num(p, ".2g")


def table_text(comparison, width) -> str:
    """The verdict table as rich renders it, fitted to `width` (None: the terminal's),
    with a headline, the notes that did not fit, and the rule."""
    import io

    from rich.console import Console
    from rich.markup import escape

    from gpubench.cli.fit_table import fitted_table
    from gpubench.cli.table_cells import Col
    from gpubench.results.compare_format import (
        OPTIONAL, RULE, ci_text, clock_text, config_label, headline, num, signed_pct, value_text,
        verdict_text,
    )

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=sys.stdout.isatty() and width is None)
    cols = ([Col("base", lambda r: str(r["base"]), title=lambda v: f"base {v}"),
             Col("new", lambda r: str(r["new"]), title=lambda v: f"new {v}")]
            if comparison.by is not None else []) + [
        Col("configuration", config_label, title=str),
        Col("n", lambda r: f"{r['n_base']}/{r['n_new']}", "n"),
        Col("median base", lambda r: value_text(r["median_base"]), "median base"),
        Col("median new", lambda r: value_text(r["median_new"]), "median new"),
        Col("change", lambda r: signed_pct(r["change_pct"]), "change"),
        Col("95% CI ratio", ci_text, "95% CI ratio"),
        Col("p", lambda r: p_text(r["p_value"]), "p"),
        Col("test", lambda r: str(r.get("test") or ""), "test", text=True),
        Col("verdict", verdict_text),
        Col("J/sample Δ", lambda r: signed_pct(r["j_per_sample_change_pct"]), "J/sample Δ"),
        Col("SM clock Δ", clock_text, "SM clock Δ"),
        Col("note", lambda r: str(r["note"] or ""), "note", text=True),
    ]
    rows = [r for _, r in comparison.table.iterrows()]
    cells = [[col.cell(r) for col in cols] for r in rows]
    for i, col in enumerate(cols):  # a column that is always there reads as such, empty or not
        if col.header not in OPTIONAL:
            for row in cells:
                row[i] = row[i] or " "
    fitted = fitted_table(cols, cells, console.width, None,
                          DROP_ORDER, style=lambda col, cell: VERDICT_STYLE.get(
                              cell.split(" (")[0].replace(" ", "_"), "") if col.header == "verdict" else "")
    console.print(escape(f"gpubench compare: {headline(comparison)}"))  # a line of its own: it wraps at the width, not the table's
    console.print(fitted.table)
    if "note" in fitted.dropped:  # the notes, under the table, one a row
        for r in rows:
            if r["note"]:
                label = f"{config_label(r)}: " if len(rows) > 1 else ""
                console.print(escape(f"note: {label}{r['note']}"))
    fitted.dropped = [h for h in fitted.dropped if h != "note"]  # the notes are above
    for label, text in changed_lines(comparison):  # what else differs, under each verdict
        console.print(escape(f"changed: {label}{text}"))
    note = fitted.note(console.width)
    if note:
        console.print(escape(note), style="dim")
    console.print(escape(RULE), style="dim")
    if len(comparison.scaling):
        console.print(_scaling_table(comparison, console.width))
    return buffer.getvalue()


def changed_lines(comparison):
    """(label, text) per verdict whose sides' fingerprints differ: compare's `changed`
    (results/fingerprint_diff.py); the label is empty for a single verdict."""
    from gpubench.results.compare_format import config_label

    rows = [r for _, r in comparison.table.iterrows()]
    out = []
    for r in rows:
        text = r.get("changed")
        if isinstance(text, str) and text:
            label = f"{r['verdict']} {config_label(r)}" + (
                f" ({r['new']} vs {r['base']})" if comparison.by is not None else "")
            out.append((f"{label}: " if len(rows) > 1 else "", text))
    return out


def changed_markdown(comparison) -> str:
    """The markdown page's section of what else changed (nothing when nothing did)."""
    from gpubench.results.compare_format import md_escape

    lines = changed_lines(comparison)
    if not lines:
        return ""
    return "\n".join(["### What else changed (NEW <- BASE)", "",
                      *(f"- {md_escape(label)}{md_escape(text)}" for label, text in lines), ""]) + "\n"


def _scaling_table(comparison, width):
    from gpubench.cli.fit_table import fitted_table
    from gpubench.cli.table_cells import Col
    from gpubench.results.compare_format import config_label

    cols = [Col("configuration", str, title=str), Col("ranks", str, "ranks"),
            Col("base", str, title=lambda v: f"base {v}"),
            Col("new", str, title=lambda v: f"new {v}"),
            *(Col(h, str, h) for h in ("efficiency base", "efficiency new", "change"))]
    cells = [[config_label(r), f"{r['world_size']:.0f}", str(r["base"]), str(r["new"]),
              f"{r['efficiency_base']:.1%}", f"{r['efficiency_new']:.1%}",
              f"{r['change_points']:+.1f} points"] for _, r in comparison.scaling.iterrows()]
    return fitted_table(cols, cells, width,
                        "Weak scaling efficiency: throughput(N) / (N x throughput(1))",
                        ("change", "efficiency new", "efficiency base", "ranks"),
                        kept=("ranks", "efficiency base", "efficiency new", "change")).table
