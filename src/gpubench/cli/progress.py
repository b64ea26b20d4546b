"""Progress on stderr while a run or a suite works (rich), only when stderr is a terminal.

A run shows what it is doing (building, warming up, trial k of n) and, once warm-up has
calibrated the trials, an ETA: the trials left x iterations per trial x seconds per
iteration (the progress events carry all three). Labels are plain text: a suite label
such as `mnist [hidden=64] ...` is never read as rich markup.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Optional

Clock = Callable[[], float]


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def trial_description(fields: dict) -> str:
    """'trial 2/5 (1,000 iterations)', or past the planned trials (chasing
    --target-rel-ci): 'trial 7 (1,000 iterations, until the 95% CI is within 1%)'."""
    trial, trials = int(fields["trial"]) + 1, int(fields["trials"])
    iterations = _plural(int(fields["iterations"]), "iteration")
    processes = int(fields.get("processes") or 1)
    where = f"process {int(fields['process']) + 1}/{processes}, " if processes > 1 else ""
    if trial <= trials:
        return f"{where}trial {trial}/{trials} ({iterations})"
    target = fields.get("target_rel_ci")
    until = f", until the 95% CI is within {float(target) * 100:.3g}%" if target else ""
    return f"{where}trial {trial} ({iterations}{until})"


def probe_description(fields: dict) -> str:
    """'probe 3 of at most 24 at 1,234 QPS, again (p99 <= 5 ms; held so far: 1,000 QPS)':
    again after a contended or stalled failure, or re-probing an end of the final bracket."""
    best = fields.get("best_qps")
    held = f"; held so far: {float(best):,.0f} QPS" if best is not None else ""
    most = f" of at most {fields['max_probes']}" if fields.get("max_probes") else ""
    kind = ", again" if fields.get("repeat") else ", re-probe" if fields.get("confirming") else ""
    return (f"probe {int(fields['probe']) + 1}{most} at {float(fields['qps']):,.0f} QPS{kind} "
            f"(p99 <= {float(fields['bound_ms']):g} ms{held})")


def trials_left_s(fields: dict) -> Optional[float]:
    """Seconds the planned trials still need from this trial on, the later processes'
    included (their start-up and warm-up not: None when nothing is known)."""
    per_iteration = fields.get("seconds_per_iteration")
    trial, trials = int(fields["trial"]), int(fields["trials"])
    if per_iteration is None or trial >= trials:
        return None
    later = int(fields.get("processes") or 1) - int(fields.get("process") or 0) - 1
    return (trials - trial + later * trials) * int(fields["iterations"]) * float(per_iteration)


@contextlib.contextmanager
def run_progress(enabled: bool, console: Any = None,
                 clock: Clock = time.monotonic) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda event, **fields: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class ETAColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            deadline = task.fields.get("deadline")
            return Text("" if deadline is None else f"ETA {_duration(deadline - clock())}",
                        style="progress.remaining")

    console = console or Console(file=sys.stderr)
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                  TimeElapsedColumn(), ETAColumn(), console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None, deadline=None)

        def progress(event: str, **fields: object) -> None:
            if event == "prepare":
                bar.update(task, description=f"building {fields['workload']} on {fields['backend']}")
            elif event == "warmup":
                bar.update(task, description=f"warming up ({float(fields['seconds']):g} s)")
            elif event == "epoch":  # time-to-accuracy: epochs up to the cap, ETA at the cap
                per_epoch, left = fields.get("seconds_per_epoch"), int(fields["epochs"]) - int(fields["epoch"]) + 1
                bar.update(task, description=f"epoch {fields['epoch']}/{fields['epochs']} "
                                             f"(to test accuracy {float(fields['target']):g})",
                           completed=int(fields["epoch"]) - 1, total=int(fields["epochs"]),
                           deadline=None if per_epoch is None else clock() + left * float(per_epoch))
            elif event == "probe":  # server --find-max-qps: the search has no fixed length
                bar.update(task, description=probe_description(fields), total=None, deadline=None)
            elif event == "trial":
                total = max(int(fields["trials"]), int(fields["trial"]) + 1)
                left = trials_left_s(fields)
                bar.update(task, description=trial_description(fields), completed=int(fields["trial"]),
                           total=total, deadline=None if left is None else clock() + left)
            else:
                return
            bar.refresh()

        yield progress


@contextlib.contextmanager
def suite_progress(enabled: bool, total_runs: int, console: Any = None) -> Iterator[Callable[..., None]]:
    """Progress over the whole matrix: runs done of total, the current run, an ETA, and
    above them where the last run's time went (its run.json phases_s: cli/run_time.py)."""
    if not enabled:
        yield lambda event, **fields: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from gpubench.cli.run_time import compact_time

    class TimedProgress(Progress):
        """The bar, under a line that says where the last run's time went."""

        last_time = ""

        def get_renderables(self) -> Iterator[Any]:
            if self.last_time:
                yield Text(self.last_time, no_wrap=True, overflow="crop")
            yield from super().get_renderables()

    console = console or Console(file=sys.stderr)
    with TimedProgress(TextColumn("{task.description}", markup=False), BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("suite", total=total_runs)
        failed = [0]

        def progress(event: str, **fields: object) -> None:
            if event == "run_start":
                bar.update(task, description=f"running {fields['label']}")
            elif event == "run_done":
                status = fields["status"]
                failed[0] += status in ("failed", "timeout")
                if status != "ok":
                    console.print(Text(f"{status}: {fields['label']}"))
                bar.last_time = compact_time(fields, console.width) or bar.last_time
                bar.update(task, advance=1, description=f"{failed[0]} failed" if failed[0] else "suite")
            else:
                return
            bar.refresh()

        yield progress
