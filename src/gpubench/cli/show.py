"""`gpubench show [FOLDER]`: a run's or a suite's results again, as the table (or the
JSON) `gpubench run` and `gpubench suite` print at their end."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from gpubench.cli.argtypes import path_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show a run's or a suite's results again",
                       description="Print the results table of a run folder or a suite folder "
                                   "again, as gpubench run and gpubench suite print it at their "
                                   "end. Without FOLDER: the newest folder in --out.")
    p.add_argument("folder", type=path_arg, nargs="?", metavar="FOLDER",
                   help="a run folder or a suite folder (default: the newest one in --out)")
    p.add_argument("--out", type=path_arg, default=Path("results"),
                   help="the results folder searched for the newest run or suite "
                        "(default results/)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default), or json: the same JSON as run --format json "
                        "(or suite --format json for a suite folder)")
    p.set_defaults(execute=execute)


@dataclass
class ShownRun:
    """What print_run needs, as `gpubench run` builds it from the folder (launch.run_one)."""

    path: Path
    status: str
    stop_reason: Optional[str]
    trials: Any
    summary: Any
    error: Optional[str]


def newest_folder(out: Path) -> Path:
    """The newest run or suite folder in `out` (folder names start with a UTC time)."""
    from gpubench.errors import UserError

    if not out.is_dir():
        raise UserError(f"{out}: no such results folder (give a run or suite folder, or --out)")
    folders = sorted(p.parent for p in out.glob("*/trials.csv"))
    if not folders:
        raise UserError(f"{out}: holds no run or suite folder (run gpubench run or gpubench "
                        "suite first, or give a folder)")
    return folders[-1]


def execute(args: argparse.Namespace) -> int:
    import json

    from gpubench.errors import UserError

    folder = args.folder if args.folder is not None else newest_folder(args.out)
    if folder.is_file() and folder.name in ("trials.csv", "summary.csv", "run.json"):
        folder = folder.parent
    if not (folder / "trials.csv").is_file():
        raise UserError(f"{folder}: not a run or suite folder (it holds no trials.csv)")
    meta: dict = {}
    if (folder / "run.json").is_file():
        try:
            meta = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{folder / 'run.json'}: not readable JSON ({exc})") from None
    if meta.get("kind") == "suite":
        show_suite(folder, meta, args.format)
    else:
        show_run(folder, args.format)
    return 0


def show_run(folder: Path, fmt: str) -> None:
    from gpubench.cli.render import print_run
    from gpubench.results.reader import read_run
    from gpubench.results.summary import summarize

    data = read_run(folder)
    trials = data.trials
    status = "ok" if len(trials) and (trials["status"] == "ok").all() else "failed"
    errors = trials["error"].dropna()
    stop = data.meta.get("stop_reason")
    summary = data.summary if data.summary is not None else summarize(trials, stop)
    print_run(ShownRun(folder, status, stop, trials, summary,
                       errors.iloc[-1] if len(errors) else None), fmt, quiet=False)
    if fmt == "table":  # where the run's time went (run.json phases_s), under its table
        from gpubench.cli.render import stdout_console
        from gpubench.cli.run_time import time_lines

        console = stdout_console()
        for line in time_lines(data.meta, console.width):
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def show_suite(folder: Path, meta: dict, fmt: str) -> None:
    from gpubench.cli.render import counts_text, print_suite_result, suite_json
    from gpubench.results.reader import read_trials
    from gpubench.results.summary import summarize

    trials = read_trials(folder / "trials.csv")
    summary = summarize(trials)
    statuses: dict = {}
    for entry in meta.get("runs", []):
        status = str(entry.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
    config = meta.get("config_path")
    if fmt == "json":
        print(suite_json(folder, summary, statuses, config, trials))
        return
    name = Path(config).name if config else meta.get("suite_name", folder.name)
    stopped = f" (stopped: {meta['stop_reason']})" if meta.get("stop_reason") not in (None, "completed") else ""
    print(folder)
    print_suite_result(folder, summary, trials, f"Suite {name}",
                       f"runs: {counts_text(statuses) or 'none recorded'}{stopped}")
