"""Running a suite: plan (expand, filter, resume), then each run in its own worker,
merging every finished run's rows into the suite folder atomically, so a crash, a
Ctrl-C or a SIGKILL of this process loses no finished row.

Suite folder: `<out>/<timestamp>-<host>-<suite_id>/` with trials.csv, summary.csv,
samples.csv (all runs merged) and run.json (the suite), and `runs/<run folder>/` per
run as `gpubench run` writes it (plus the worker's log).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.backends import backend_names
from gpubench.machine import host_name
from gpubench.errors import UserError
from gpubench.launch import Launcher, make_launcher, run_ended, settle
from gpubench.measure.request import (
    DEFAULT_ENVIRONMENT, RunRequest, request_from, request_identity,
)
from gpubench.atomic_io import write_text_atomic
from gpubench.results.reader import read_timing, read_trials
from gpubench.results.schema import SCHEMA_VERSION, configuration_key, trial_columns
from gpubench.results.summary import summarize
from gpubench.results.writer import new_run_id, run_folder_name
from gpubench.suite.config import SuiteRun, load_suite_file, matches, parse_filter
from gpubench.launch.environments import EnvironmentSet, declared_environments
from gpubench.workloads import resolve_workload

Progress = Callable[..., None]
FAILING = ("failed", "timeout")


@dataclass(frozen=True)
class PlannedRun:
    run: SuiteRun
    key: Tuple[str, ...]  # the configuration (schema.CONFIGURATION_COLUMNS) as rows hold it
    repeat: int = 0  # which of the configuration's `repeats` runs this is

    def label(self) -> str:
        repeats = self.run.setting("repeats")
        return self.run.label() + (f" (run {self.repeat + 1}/{repeats})" if repeats > 1 else "")


@dataclass
class SuitePlan:
    config_path: Path
    runs: List[PlannedRun]
    skipped: List[PlannedRun] = field(default_factory=list)  # --resume: already ok
    folder: Optional[Path] = None  # the folder resumed, if any
    environments: Optional[EnvironmentSet] = None  # None: every run in this interpreter


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


def resolved_key(run: SuiteRun, source: Path) -> Tuple[str, ...]:
    """The configuration as it will stand in result rows: default batch size and
    default parameters filled in (validates the workload and its params too)."""
    try:
        resolve_workload(run.workload, dict(run.params))
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    req, _ = request_for(run, Path("unused"), run.setting("device"), None)
    return configuration_key(request_identity(req))


def row_key(row: pd.Series) -> Tuple[str, ...]:
    """A run's configuration from one of its rows. A collective run sweeps its message
    sizes in one run, so the row's size is not part of what the suite asked for."""
    return configuration_key({**row.to_dict(), "message_bytes": None})


def find_resumable(out_dir: Path, suite_name: str) -> Path:
    from gpubench.results.reader import load_json

    candidates = []
    for meta_path in sorted(Path(out_dir).glob("*/run.json")):
        # A run.json that does not parse may be this suite's: skipping it would start
        # afresh and say there was nothing to resume.
        try:
            meta = load_json(meta_path)
        except UserError as exc:
            raise UserError(f"--resume: {exc}; repair it or move its folder out of "
                            f"{out_dir}") from None
        if meta.get("kind") == "suite" and meta.get("suite_name") == suite_name:
            candidates.append(meta_path.parent)
    if not candidates:
        raise UserError(f"--resume: no earlier results of suite {suite_name!r} in {out_dir}")
    return candidates[-1]  # folder names start with a UTC timestamp


def plan_suite(config_path: Path, out_dir: Path, filter_expr: Optional[str] = None,
               resume: bool = False, install: bool = True) -> SuitePlan:
    """The runs to make. Each run's environment is the one its entry names, else the
    first that can run its backend; gpubench is installed into a named environment that
    lacks it, unless `install` is off (--dry-run)."""
    suite_file = load_suite_file(config_path)
    known = set(backend_names())
    for run in suite_file.runs:
        if run.backend not in known:
            raise UserError(f"{config_path}: unknown backend {run.backend!r} "
                            f"(valid: {', '.join(sorted(known))})")
    environments = EnvironmentSet(declared_environments(suite_file.environments, config_path),
                                  install)
    runs = [r if r.environment else r.with_values(environment=environments.choose(r.backend).name)
            for r in suite_file.runs]
    seen: set = set()  # an entry naming the environment another entry's run was given
    runs = [r for r in runs if not (r.key() in seen or seen.add(r.key()))]
    planned = [PlannedRun(r, resolved_key(r, config_path)) for r in runs]
    if filter_expr:
        conditions = parse_filter(filter_expr)
        planned = [p for p in planned if matches(p.run, conditions)]
        if not planned:
            raise UserError(f"--filter {filter_expr!r} matches no run of {config_path}")
    plan = SuitePlan(Path(config_path), [], environments=environments)
    done: Dict[Tuple[str, ...], int] = {}
    if resume:
        plan.folder = find_resumable(out_dir, Path(config_path).stem)
        done = _ok_runs(plan.folder)
    # Repeats are interleaved (every configuration once, then again), so a slow drift
    # of the machine spreads over all configurations instead of hitting one.
    for repeat in range(max(p.run.setting("repeats") for p in planned)):
        for p in planned:
            if repeat < p.run.setting("repeats"):
                target = plan.runs if repeat >= done.get(p.key, 0) else plan.skipped
                target.append(replace(p, repeat=repeat))
    return plan


def _ok_runs(folder: Path) -> Dict[Tuple[str, ...], int]:
    """Configuration key -> number of its runs whose every row is ok."""
    path = folder / "trials.csv"
    if not path.exists():
        return {}
    counts: Dict[Tuple[str, ...], int] = {}
    for _, rows in read_trials(path).groupby("run_id"):
        if (rows["status"] == "ok").all():
            key = row_key(rows.iloc[0])
            counts[key] = counts.get(key, 0) + 1
    return counts


def check_rank_devices(plan: SuitePlan, devices: Sequence[int]) -> None:
    """A run of N ranks puts them on N consecutive GPUs from its device (the ranks'
    local ranks added to it). Spread over several --devices, such a run waits for all of
    them and runs alone (execute_suite), so its ranks must land on GPUs of the list."""
    if len(devices) < 2:
        return
    for planned in plan.runs:
        nproc = planned.run.nproc
        if nproc is None:
            continue
        wanted = [min(devices) + r for r in range(nproc)]
        outside = [str(d) for d in wanted if d not in devices]
        if outside:
            shown = ",".join(str(d) for d in devices)
            raise UserError(f"{plan.config_path}: {planned.label()}: its {nproc} ranks run on GPUs "
                            f"{wanted[0]}-{wanted[-1]}, and --devices {shown} leaves out "
                            f"{', '.join(outside)}")


def request_for(run: SuiteRun, folder: Path, device: int,
                timeout_override: Optional[float]) -> Tuple[RunRequest, float]:
    """The run's request, made as `gpubench run` makes its own, into `folder` on
    `device`; and its timeout."""
    req = request_from(run.values(), out_dir=folder.parent, folder=folder, device_index=device)
    return req, timeout_override or run.setting("timeout_s")


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
    suite_id = new_run_id()
    path = Path(out_dir) / run_folder_name(host_name(), suite_id)
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None
    meta = {"kind": "suite", "schema_version": SCHEMA_VERSION, "suite_id": suite_id,
            "suite_name": plan.config_path.stem, "config_path": str(plan.config_path.resolve()),
            "config_text": plan.config_path.read_text(), "options": options,
            "environments": plan.environments.describe() if plan.environments else {},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
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
