"""`gpubench dashboard SOURCE -o DIR`: a static site of results over time (index of
every configuration's runs with change points, a page per configuration) that opens
offline. Progress goes to stderr once a build takes more than a few seconds."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpubench.cli.argtypes import path_arg
from gpubench.cli.filter_options import add_filter_options, filters_from

QUIET_S = 3.0  # no progress for a build shorter than this
EVERY_S = 2.0  # then a line at most this often


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gpubench.cli.compare import percent

    p = sub.add_parser("dashboard", help="write a static HTML dashboard of results over time",
                       description="Write a static site that opens offline: every "
                                   "configuration's per-run median (95% CI) over time per "
                                   "machine, change points and driver/CUDA/framework changes "
                                   "marked, the newest regressions first, filters by machine, "
                                   "workload and backend, and a page per configuration with "
                                   "the spread of its runs.")
    p.add_argument("source", type=path_arg, metavar="SOURCE",
                   help="run folders, suite folders or a folder of them (as compare and "
                        "history read)")
    p.add_argument("--output", "-o", type=path_arg, default=Path("dashboard"), metavar="DIR",
                   help="the folder to write (default dashboard); an earlier dashboard there "
                        "is replaced whole, any other non-empty folder refused")
    p.add_argument("--threshold", type=percent, default=0.05, metavar="PCT",
                   help="smallest change a change point calls slower/faster (default 5%%)")
    p.add_argument("--min-segment", type=int, default=5, metavar="N",
                   help="fewest runs on each side of a change point (default 5)")
    add_filter_options(p)
    p.set_defaults(execute=execute)


class _Progress:
    """Lines on stderr, silent for a short build."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        final = total and done == total
        if now - self.start < QUIET_S or (now - self.last < EVERY_S and not final):
            return
        self.last = now
        where = f" {done:,}/{total:,}" if total else ""
        print(f"gpubench dashboard: {stage}{where} ({now - self.start:.0f} s)", file=sys.stderr,
              flush=True)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK
    from gpubench.results.compare_load import read_input
    from gpubench.results.dashboard import build_dashboard
    from gpubench.results.dashboard.series import needed_columns

    progress = _Progress()
    trials = read_input(args.source, filters=filters_from(args), columns=needed_columns())
    progress(f"read {len(trials):,} trial rows", 0, 0)
    built = build_dashboard(trials, args.output, source=str(args.source),
                            threshold=args.threshold, min_segment=args.min_segment,
                            progress=progress)
    print(built.path / "index.html")
    return EXIT_OK
