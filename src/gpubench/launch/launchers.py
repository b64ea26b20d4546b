"""The launchers by name, and `run_one`: one run through a launcher, ending as
`gpubench run` needs (what every launcher's ending becomes: launch/status_rows.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Dict, Optional, Type

from gpubench.errors import Unsupported, UserError
from gpubench.launch.base import Launcher, Progress, no_progress
from gpubench.launch.inline import InlineLauncher
from gpubench.launch.process import ProcessLauncher
from gpubench.launch.status_rows import read_folder_trials, settle
from gpubench.launch.torchrun import TorchrunLauncher
from gpubench.launch.torchrun_slurm import SlurmTorchrunLauncher

LAUNCHERS: Dict[str, Type[Launcher]] = {"inline": InlineLauncher, "process": ProcessLauncher,
                                        "torchrun": TorchrunLauncher,
                                        "torchrun-slurm": SlurmTorchrunLauncher}


class RunInterrupted(KeyboardInterrupt):
    """`run_one` was interrupted (Ctrl-C, SIGTERM, or the worker's own SIGINT) after the
    run wrote what finished: `folder` holds the finished trials, run.json and
    summary.csv; None when nothing had finished (the folder is then removed)."""

    def __init__(self, folder: Optional[Path]) -> None:
        super().__init__()
        self.folder = folder


def make_launcher(name: str = "process", python: Optional[str] = None) -> Launcher:
    if name not in LAUNCHERS:
        raise UserError(f"unknown launcher {name!r} (valid: {', '.join(LAUNCHERS)})")
    return LAUNCHERS[name](python)


def run_one(req, launcher: Optional[Launcher] = None, timeout_s: Optional[float] = None,
            progress: Progress = no_progress):
    """`gpubench run`: the same rows, folder and errors whatever the launcher (a refusal
    raises its UserError and leaves no folder; a crash or a timeout is a failed row).
    Returns the RunOutcome."""
    from gpubench.machine import host_name
    from gpubench.measure.run_record import RunOutcome
    from gpubench.results.reader import read_run
    from gpubench.results.summary import summarize
    from gpubench.results.writer import new_run_id, run_folder_name

    launcher = launcher or ProcessLauncher()
    launcher.preflight(req)  # bad input fails here, fast, before any folder or worker
    folder = Path(req.out_dir) / run_folder_name(host_name(), new_run_id())
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write results to {req.out_dir}: {exc.strerror or exc}") from None
    req = replace(req, folder=folder)

    def kept() -> Optional[Path]:
        if (folder / "trials.csv").exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        return None

    try:
        result = launcher.launch(req, timeout_s, progress)
    except KeyboardInterrupt:  # the launcher let the run write what finished
        raise RunInterrupted(kept()) from None
    except BaseException:
        kept()
        raise
    if result.outcome == "interrupted":
        raise RunInterrupted(kept())
    if result.outcome == "refused":
        shutil.rmtree(folder, ignore_errors=True)
        raise (Unsupported if result.refused_kind == "unsupported" else UserError)(result.message)
    if result.outcome == "finished" and not launcher.writes_rows(req):
        # another node of a run of several: its ranks sent their rows to rank 0's node;
        # this folder keeps their output (worker.log)
        return RunOutcome(folder, "ok", "rows_on_node_0", read_folder_trials(folder),
                          summarize(read_folder_trials(folder)))
    settle(req, result)
    data = read_run(folder)
    trials = data.trials
    status = "ok" if len(trials) and (trials["status"] == "ok").all() else "failed"
    errors = trials["error"].dropna()
    stop = data.meta.get("stop_reason") or result.outcome
    return RunOutcome(folder, status, stop, trials, data.summary,
                      errors.iloc[-1] if len(errors) else None, result.telemetry,
                      result.warnings, dict(data.meta.get("loss") or {}))
