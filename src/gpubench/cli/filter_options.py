"""The options that select runs out of results folders and stores, the same for history,
compare and report: --since, --until, --machine, --where (results/store/filters.py)."""

from __future__ import annotations

import argparse


def add_filter_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selecting runs (results folders and stores alike)")
    g.add_argument("--since", metavar="DATE",
                   help="only runs started on or after DATE (e.g. 2026-01-31, or "
                        "2026-01-31T02:00:00Z); a run without a start time is kept")
    g.add_argument("--until", metavar="DATE",
                   help="only runs started on or before DATE (a date alone: to that day's end)")
    g.add_argument("--machine", action="append", default=[], metavar="HOST",
                   help="only runs of this host (repeatable: any of them)")
    g.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="only rows whose COLUMN (of trials.csv, or date=YYYY-MM-DD, "
                        "month=YYYY-MM of the run's start) holds VALUE, e.g. "
                        "driver_version=550.54.15 (repeatable: the same column, any of the "
                        "values; different columns, all of them)")


def filters_from(args: argparse.Namespace):
    from gpubench.results.store.filters import Filters

    return Filters.parse(args.since, args.until, args.machine, args.where)
