"""Progress on stderr while a run works (rich), only when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def run_progress(enabled: bool) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda event, **fields: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def progress(event: str, **fields: object) -> None:
            if event == "prepare":
                bar.update(task, description=f"building {fields['workload']} on {fields['backend']}")
            elif event == "warmup":
                bar.update(task, description=f"warming up ({fields['seconds']:g} s)")
            elif event == "trial":
                total = max(int(fields["trials"]), int(fields["trial"]) + 1)
                bar.update(task, description=f"trial {int(fields['trial']) + 1} "
                           f"({fields['iterations']} iterations)",
                           completed=int(fields["trial"]), total=total)

        yield progress


@contextlib.contextmanager
def suite_progress(enabled: bool, total_runs: int) -> Iterator[Callable[..., None]]:
    """Progress over the whole matrix: runs done of total, the current run, an ETA."""
    if not enabled:
        yield lambda event, **fields: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("suite", total=total_runs)
        failed = [0]

        def progress(event: str, **fields: object) -> None:
            if event == "run_start":
                bar.update(task, description=f"running {fields['label']}")
            elif event == "run_done":
                status = fields["status"]
                failed[0] += status in ("failed", "timeout")
                if status != "ok":
                    console.print(f"{status}: {fields['label']}")
                bar.update(task, advance=1, description=f"{failed[0]} failed" if failed[0] else "suite")

        yield progress
