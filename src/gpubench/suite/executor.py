"""Running a suite's plan (plan.py: expand, filter, resume): each run in its own worker,
merging every finished run's rows into the suite folder atomically, so a crash, a
Ctrl-C or a SIGKILL of this process loses no finished row.

Suite folder: `<out>/<timestamp>-<host>-<suite_id>/` with trials.csv, summary.csv,
samples.csv (all runs merged) and run.json (the suite), and `runs/<run folder>/` per
run as `gpubench run` writes it (plus the worker's log).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.atomic_io import write_text_atomic
from gpubench.errors import UserError
from gpubench.launch import Launcher, make_launcher, run_ended, settle
from gpubench.launch.environments import EnvironmentSet
from gpubench.suite.slurm_task import EXECUTOR_ENV
from gpubench.machine import host_name
from gpubench.measure.request import DEFAULT_ENVIRONMENT, RunRequest
from gpubench.results.reader import read_timing, read_trials
from gpubench.results.schema import SCHEMA_VERSION, trial_columns
from gpubench.results.summary import summarize
from gpubench.results.writer import new_run_id, run_folder_name
from gpubench.suite.plan import PlannedRun, SuitePlan, request_for
from gpubench.suite.shards import sharded_suite_id

Progress = Callable[..., None]
FAILING = ("failed", "timeout")


@dataclass
class SuiteOutcome:
    path: Path
    trials: pd.DataFrame
    summary: pd.DataFrame
    statuses: Dict[str, int]  # status -> runs executed now
    # status -> the last line of the error of the first run executed now that ended so
    # (e.g. why a run was unsupported here)
    first_errors: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)  # the launchers' (a fork server's fallback)


class Launchers:
    """The launchers of a suite's runs, one per environment's Python: the process
    launcher, or for a run of ranks (`nprocs`) the torchrun launcher. `launcher`, when
    given, runs the `default` environment's plain runs."""

    def __init__(self, environments: Optional[EnvironmentSet],
                 launcher: Optional[Launcher] = None) -> None:
        self.environments = environments
        self.made: Dict[Tuple[str, str], Launcher] = {}
        if launcher is not None:
            self.made[(DEFAULT_ENVIRONMENT, "process")] = launcher

    def python(self, environment: str) -> Optional[str]:
        if self.environments is None or environment == DEFAULT_ENVIRONMENT:
            return None
        return self.environments.environment(environment).python

    def __call__(self, req: RunRequest) -> Launcher:
        kind = "process" if req.strategy is None else "torchrun"
        if kind == "torchrun" and os.environ.get(EXECUTOR_ENV) == "slurm":
            kind = "torchrun-slurm"  # a task of the Slurm executor: ranks through srun
        key = (req.environment, kind)
        if key not in self.made:
            self.made[key] = make_launcher(kind, self.python(req.environment))
        return self.made[key]

    def close(self) -> None:
        for launcher in self.made.values():
            launcher.close()


class SuiteFolder:
    """The suite's merged tables; every append rewrites them atomically."""

    def __init__(self, path: Path, meta: Dict[str, Any]) -> None:
        self.path = path
        self.lock = threading.Lock()
        (path / "runs").mkdir(parents=True, exist_ok=True)
        self.trials = read_trials(path / "trials.csv") if (path / "trials.csv").exists() \
            else pd.DataFrame(columns=list(trial_columns()))
        samples_path = path / "samples.csv"
        self.samples = pd.read_csv(samples_path) if samples_path.exists() else pd.DataFrame()
        self.meta = meta
        self._write_meta()
        if not (path / "summary.csv").exists():  # every file readable from the start
            write_text_atomic(path / "trials.csv", self.trials.to_csv(index=False))
            write_text_atomic(path / "summary.csv", summarize(self.trials).to_csv(index=False))

    def _write_meta(self) -> None:
        write_text_atomic(self.path / "run.json", json.dumps(self.meta, indent=2, default=str) + "\n")

    def add_run(self, run_folder: Path, rows: pd.DataFrame, entry: Dict[str, Any]) -> None:
        with self.lock:
            frames = [f for f in (self.trials, rows[list(trial_columns())]) if len(f)]
            self.trials = pd.concat(frames, ignore_index=True) if frames else self.trials
            write_text_atomic(self.path / "trials.csv", self.trials.to_csv(index=False))
            samples_path = run_folder / "samples.csv"
            if samples_path.exists():
                new = pd.read_csv(samples_path)
                new.insert(0, "run_id", entry["run_id"])
                self.samples = pd.concat([self.samples, new], ignore_index=True)
                write_text_atomic(self.path / "samples.csv", self.samples.to_csv(index=False))
            write_text_atomic(self.path / "summary.csv", summarize(self.trials).to_csv(index=False))
            self.meta.setdefault("runs", []).append(entry)
            self._write_meta()

    def finish(self, interrupted: bool) -> None:
        with self.lock:
            self.meta["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.meta["stop_reason"] = "interrupted" if interrupted else "completed"
            self._write_meta()


def open_suite_folder(plan: SuitePlan, out_dir: Path, options: Dict[str, Any]) -> SuiteFolder:
    if plan.folder is not None:
        meta = json.loads((plan.folder / "run.json").read_text())
        meta.setdefault("resumed_utc", []).append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return SuiteFolder(plan.folder, meta)
    suite_id, folder_host = new_run_id(), host_name()
    if plan.shard is not None:  # every shard of the batch the same suite_id (shards.py)
        suite_id = sharded_suite_id(plan.config_path.read_text(), options.get("filter"),
                                    options["batch_id"])
        folder_host = f"{folder_host}-{plan.shard.slug}"
    path = Path(out_dir) / run_folder_name(folder_host, suite_id)
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None
    meta = {"kind": "suite", "schema_version": SCHEMA_VERSION, "suite_id": suite_id,
            "suite_name": plan.config_path.stem, "config_path": str(plan.config_path.resolve()),
            "config_text": plan.config_path.read_text(), "options": options,
            "environments": plan.environments.describe() if plan.environments else {},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
    if plan.shard is not None:
        meta.update(shard=str(plan.shard), batch_id=options["batch_id"])
    return SuiteFolder(path, meta)


def execute_suite(plan: SuitePlan, suite: SuiteFolder, devices: Sequence[int],
                  timeout_override: Optional[float] = None, progress: Progress = lambda e, **f: None,
                  launcher: Optional[Launcher] = None) -> SuiteOutcome:
    """Runs every planned run through the launcher (a worker process each, by default),
    `len(devices)` at a time (one per device)."""
    launchers = Launchers(plan.environments, launcher)
    statuses: Dict[str, int] = {}
    first_errors: Dict[str, str] = {}
    warnings: List[str] = []
    stop = threading.Event()
    active: Dict[int, Callable[[], None]] = {}  # run index -> interrupt it
    free: "queue.Queue[int]" = queue.Queue()
    for device in devices:
        free.put(device)
    gather_all = threading.Lock()  # one run of ranks at a time gathers every device

    def take(planned: PlannedRun) -> List[int]:
        """The devices a run holds: one; a run of ranks on several --devices, all of them
        (its ranks use consecutive GPUs: check_rank_devices), so nothing shares them."""
        if planned.run.nproc is None or len(devices) < 2:
            return [free.get()]
        with gather_all:
            return sorted(free.get() for _ in devices)

    started: Dict[int, Tuple[RunRequest, float, str]] = {}  # run index -> its request
    repeat_slots = max([p.repeat + 1 for p in plan.runs + plan.skipped] + [1])
    ended: set = set()

    def one(index: int, planned: PlannedRun, process: int) -> None:
        """Worker process `process` of run `index` (its only one, without --processes)."""
        held = take(planned)
        device = held[0]
        try:
            if stop.is_set() or index in ended:
                return
            if process == 0:
                run_id = new_run_id()
                folder = suite.path / "runs" / run_folder_name(host_name(), run_id)
                started[index] = (*request_for(planned.run, folder, device, timeout_override),
                                  run_id)
            req, timeout_s, run_id = started[index]
            # Its slot in the interleaving: process rounds outside, repeats inside.
            req = replace(req, suite_id=suite.meta["suite_id"], shard=suite.meta.get("shard"),
                          round=process * repeat_slots + planned.repeat)
            folder = Path(req.folder)
            if process == 0:
                progress("run_start", index=index, label=planned.label(), device=device)
            # A run refused by preflight here needs no worker (a 10,000-run matrix on a
            # machine without a GPU would spend hours starting workers that refuse).
            runs_it = launchers(req)
            result = (runs_it.refusal(req) if process == 0 else None) or runs_it.launch_process(
                req, process, timeout_s,
                on_start=lambda interrupt: active.__setitem__(index, interrupt))
            active.pop(index, None)
            warnings.extend(result.launch_warnings)
            if stop.is_set() and result.outcome in ("failed", "interrupted"):
                # We interrupted it (perhaps before its own handler was in place): not a
                # failure. Its finished trials stay in its own folder, but the suite's
                # tables hold whole runs only, so --resume runs it again.
                ended.add(index)
                progress("run_done", index=index, label=planned.label(), status="interrupted")
                return
            if not run_ended(req, result):
                return  # its next process comes in the next round
            ended.add(index)
            rows = settle(req, result)  # refusals, crashes and timeouts become rows
            status = _run_status(rows)
            suite.add_run(folder, rows, {"run_id": run_id, "label": planned.label(),
                                         "folder": str(folder.relative_to(suite.path)),
                                         "status": status, "device": device,
                                         "environment": req.environment,
                                         "python": runs_it.python})
            statuses[status] = statuses.get(status, 0) + 1
            if status != "ok":
                first_errors.setdefault(status, _last_error_line(rows, status))
            progress("run_done", index=index, label=planned.label(), status=status,
                     **read_timing(folder))  # where its time went, for the progress line
        finally:
            for device in held:
                free.put(device)

    interrupted = False
    # Round k runs worker process k of every run that has one (--processes): the
    # processes of the runs a suite compares interleave, so a slow spell of the
    # machine falls on both sides instead of on one run.
    rounds = max([p.run.setting("processes") for p in plan.runs] + [1])
    try:
        with ThreadPoolExecutor(max_workers=len(devices)) as pool:
            pending: set = set()
            try:
                for process in range(rounds):
                    pending = {pool.submit(one, i, p, process) for i, p in enumerate(plan.runs)
                               if process < p.run.setting("processes")}
                    while pending:
                        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()  # an error in the parent's own code is not swallowed
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                for interrupt in list(active.values()):
                    try:
                        interrupt()  # SIGINT: the worker writes what finished
                    except ProcessLookupError:
                        pass
                wait(pending)
    finally:  # after every run ended: their fork servers end with the suite
        launchers.close()
    suite.finish(interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return SuiteOutcome(suite.path, suite.trials, summarize(suite.trials), statuses,
                        first_errors, warnings)


def _last_error_line(rows: pd.DataFrame, status: str) -> str:
    errors = rows.loc[rows["status"] == status, "error"].dropna() if len(rows) else []
    lines = str(errors.iloc[-1]).strip().splitlines() if len(errors) else []
    return lines[-1].strip() if lines else "no error recorded"


def _run_status(rows: pd.DataFrame) -> str:
    statuses = set(rows["status"]) if len(rows) else {"failed"}
    for status in ("timeout", "failed", "unsupported"):
        if status in statuses:
            return status
    return "ok"
