"""`gpubench report RESULTS... -o report.html`: one self-contained HTML file (tables,
inline SVG charts; no network needed to view it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpubench.cli.argtypes import path_arg
from gpubench.cli.filter_options import add_filter_options, filters_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gpubench.cli.compare import percent

    p = sub.add_parser("report", help="write a self-contained HTML report of results",
                       description="Write one self-contained HTML file: summary tables, throughput "
                                   "and energy per configuration with 95% CIs, a comparison "
                                   "against the first group, and power/clock traces.")
    p.add_argument("results", type=path_arg, nargs="+", metavar="RESULTS",
                   help="run folders, suite folders, trials.csv files or folders of them, or "
                        "results stores; each is a group unless --by is given")
    p.add_argument("--output", "-o", type=path_arg, default=Path("report.html"),
                   help="the HTML file to write (default report.html)")
    p.add_argument("--by", metavar="COLUMN",
                   help="group by this column's values (e.g. driver_version) instead of by input")
    p.add_argument("--baseline", metavar="VALUE", help="the group the others are compared against "
                                                      "(default: the first)")
    p.add_argument("--threshold", type=percent, default=0.05, metavar="PCT",
                   help="smallest change that counts in the comparison, in percent (default 5%%)")
    add_filter_options(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK
    from gpubench.cli.compare import write_output
    from gpubench.results.report import build_report

    html = build_report(args.results, by=args.by, baseline=args.baseline, threshold=args.threshold,
                        filters=filters_from(args))
    write_output(args.output, html)
    print(args.output)
    return EXIT_OK
