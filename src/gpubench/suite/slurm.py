"""`gpubench suite FILE --executor slurm`: the suite as a Slurm job array through
submitit, one array task per shard (suite/shards.py), each task `gpubench suite FILE
--shard i/N` on its node (suite/slurm_task.py).

Folder: `<out>/<timestamp>-<host>-<suite_id>/` with run.json (kind suite, executor
slurm, the batch id, every submission's job ids and the tasks' end states), a copy of
the suite file (what the tasks run; --resume refreshes it from the file), slurm/
(submitit's scripts and logs) and shards/ (each shard's own suite folder). Every shard
derives the same suite_id from the file, the filter and the batch id, so compare,
history and report read the folder as one suite.

--resume resubmits only the shards with runs missing, each resuming its own folder. A
task that Slurm ends before its shard finished (time limit, scancel, preemption, node
failure) leaves the runs it finished; each run it never finished gets a status row here
(`timeout` for the time limit, `failed` otherwise), which --resume runs again."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pandas as pd

from gpubench.atomic_io import write_text_atomic
from gpubench.errors import UserError
from gpubench.machine import host_name
from gpubench.measure.run_record import utc_now
from gpubench.results.schema import SCHEMA_VERSION, trial_columns
from gpubench.results.writer import new_run_id, run_folder_name
from gpubench.suite.plan import find_resumable, plan_suite, request_for
from gpubench.suite.shards import Shard, sharded_suite_id, shard_weights_s

POLL_S = 1.0  # how often the job states are asked (sacct, through submitit)
ENDED_BY = {"TIMEOUT": "timeout"}  # a Slurm end state -> the status of the runs it cut off


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    nodes: int = 1  # shards: one array task (and node) each
    gpus_per_node: int = 0
    time_limit_min: Optional[float] = None
    account: Optional[str] = None


@dataclass
class SlurmOutcome:
    path: Path
    tasks: List[Dict[str, Any]] = field(default_factory=list)  # shard, job_id, state
    statuses: Dict[str, int] = field(default_factory=dict)  # status -> runs, every shard

    @property
    def failing(self) -> bool:
        return any(self.statuses.get(s) for s in ("failed", "timeout"))

    def lines(self) -> List[str]:
        out = [f"shard {t['shard']}: job {t['job_id']} {t['state']}" for t in self.tasks]
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        return out + [f"runs: {counts or 'none'}"]


def _submitit():
    """submitit, imported without its import-time logging.config.dictConfig (unless
    SUBMITIT_LOG_LEVEL asks for it): that call closes every logging handler the process
    already has, and a handler that owns its stream closes it (absl's, TensorFlow's
    logger, closes sys.stderr). Its warnings still reach stderr (logging's last resort)."""
    import os

    if "submitit" not in sys.modules and "SUBMITIT_LOG_LEVEL" not in os.environ:
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
        try:
            import submitit
        finally:
            del os.environ["SUBMITIT_LOG_LEVEL"]
    import submitit

    return submitit


def check_slurm(options: SlurmOptions) -> None:
    """Slurm's client here and the partition known, before anything is submitted."""
    if shutil.which("sbatch") is None:
        raise UserError("--executor slurm: sbatch is not on PATH (no Slurm client on this "
                        "machine; `make slurm-up` starts a one-node cluster); nothing submitted")
    try:
        _submitit()
    except ImportError:
        raise UserError("--executor slurm needs the submitit package (pip install submitit)") from None
    if options.partition is not None:
        found = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True)
        names = [p.rstrip("*") for p in found.stdout.split()]
        if found.returncode != 0:
            raise UserError(f"--executor slurm: sinfo failed: {_last_line(found.stderr)}")
        if options.partition not in names:
            raise UserError(f"--partition {options.partition}: no such partition (here: "
                            f"{', '.join(names) or 'none'}); nothing submitted")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _write_meta(parent: Path, meta: Dict[str, Any]) -> None:
    write_text_atomic(parent / "run.json", json.dumps(meta, indent=2, default=str) + "\n")


def _open_parent(config: Path, out: Path, filter_expr: Optional[str], resume: bool,
                 options: SlurmOptions) -> Dict[str, Any]:
    if resume:
        parent = find_resumable(out, config.stem, executor="slurm")
        meta = json.loads((parent / "run.json").read_text())
        meta["path"] = str(parent)
        return meta
    batch_id = new_run_id()
    suite_id = sharded_suite_id(config.read_text(), filter_expr, batch_id)
    parent = Path(out) / run_folder_name(host_name(), suite_id)
    try:
        (parent / "shards").mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return {"kind": "suite", "executor": "slurm", "schema_version": SCHEMA_VERSION,
            "suite_id": suite_id, "suite_name": config.stem, "batch_id": batch_id,
            "config_path": str(config.resolve()), "filter": filter_expr,
            "shards": options.nodes, "options": vars(options), "submissions": [],
            "started_utc": utc_now(), "path": str(parent)}


def missing_runs(config: Path, shards_dir: Path, shard: Shard, filter_expr: Optional[str]):
    """The shard's plan against its folder: (folder or None, runs not yet ok)."""
    try:
        folder = find_resumable(shards_dir, config.stem, shard)
    except UserError:
        return None, plan_suite(config, shards_dir, filter_expr, install=False, shard=shard)
    return folder, plan_suite(config, shards_dir, filter_expr, resume=True, install=False,
                              shard=shard)


def run_on_slurm(config: Path, out: Path, options: SlurmOptions, filter_expr: Optional[str] = None,
                 resume: bool = False, timeout_override: Optional[float] = None,
                 announce: Callable[[Path], None] = lambda path: None) -> SlurmOutcome:
    """Submits the shards with runs missing as one job array, waits for it (Ctrl-C
    cancels it), and leaves a row for every run a task never finished."""
    check_slurm(options)
    config = Path(config)
    plan_suite(config, out, filter_expr, install=False)  # the file's errors, before a folder
    meta = _open_parent(config, out, filter_expr, resume, options)
    parent, count = Path(meta.pop("path")), int(meta["shards"])
    if resume and options.nodes not in (1, count):
        raise UserError(f"--resume: {parent} was cut into {count} shards; --nodes {options.nodes} "
                        "would cut it differently")
    if resume and filter_expr not in (None, meta.get("filter")):
        ran = f"with --filter {meta['filter']!r}" if meta.get("filter") else "without --filter"
        raise UserError(f"--resume: {parent} ran {ran}; another filter would cut other shards")
    filter_expr = meta.get("filter")  # the submission's own (its shards were cut with it)
    given, config = config, parent / config.name  # the tasks run this copy: edits to the
    write_text_atomic(config, given.read_text())  # file while they wait change nothing
    shards_dir = parent / "shards"
    todo = []
    for i in range(1, count + 1):
        shard = Shard(i, count)
        folder, plan = missing_runs(config, shards_dir, shard, filter_expr)
        if plan.runs:
            todo.append((shard, folder is not None, plan))
    outcome = SlurmOutcome(parent)
    _write_meta(parent, meta)
    if not todo:
        announce(parent)
    else:
        try:
            jobs = _submit(config, parent, meta, options, todo, filter_expr, timeout_override)
        except UserError:
            if not resume:  # nothing was submitted: no folder of a suite that never ran
                shutil.rmtree(parent, ignore_errors=True)
            raise
        announce(parent)
        submission = {"utc": utc_now(), "tasks": [{"shard": str(s), "job_id": j.job_id}
                                               for (s, _, _), j in zip(todo, jobs)]}
        meta["submissions"].append(submission)
        _write_meta(parent, meta)
        try:
            _wait(jobs)
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel(check=False)
            submission["cancelled_utc"] = utc_now()
            _write_meta(parent, meta)
            raise KeyboardInterrupt(f"the Slurm jobs were cancelled; finished runs are kept in "
                                    f"{parent}; `gpubench suite {given} --out {out} --executor "
                                    "slurm --resume` runs the rest") from None
        for task, (shard, _, plan), job in zip(submission["tasks"], todo, jobs):
            task["state"] = _state(job)
            # a task that ended early, or whose suite stopped (exit 2: bad input there)
            _rows_for_unfinished(config, shards_dir, shard, filter_expr, task,
                                 timeout_override, _why(job, task), meta["batch_id"])
        _write_meta(parent, meta)
        outcome.tasks = submission["tasks"]
    outcome.statuses = _statuses(shards_dir)
    return outcome


def _submit(config: Path, parent: Path, meta: Dict[str, Any], options: SlurmOptions,
            todo, filter_expr: Optional[str], timeout_override: Optional[float]):
    from gpubench.suite.slurm_task import run_shard

    submitit = _submitit()

    executor = submitit.SlurmExecutor(folder=parent / "slurm" / "%j", max_num_timeout=0)
    longest_s = max(shard_weights_s(p.runs, 1)[0] for _, _, p in todo)
    minutes = options.time_limit_min or max(10.0, 2 * longest_s / 60)
    params: Dict[str, Any] = dict(job_name=f"gpubench-{config.stem}", nodes=1,
                                  ntasks_per_node=1, time=int(round(minutes + 0.499)),
                                  array_parallelism=len(todo), signal_delay_s=30)
    if options.partition:
        params["partition"] = options.partition
    if options.gpus_per_node:
        params["gpus_per_node"] = options.gpus_per_node
    if options.account:
        params["account"] = options.account
    executor.update_parameters(**params)
    argvs = []
    for shard, resuming, _ in todo:
        argv = [str(config.resolve()), "--out", str(parent / "shards"), "--shard", str(shard),
                "--batch-id", meta["batch_id"], "--quiet"]
        argv += ["--filter", filter_expr] if filter_expr else []
        argv += ["--timeout", str(timeout_override)] if timeout_override else []
        argv += ["--resume"] if resuming else []
        argvs.append(argv)
    said = io.StringIO()  # submitit prints sbatch's complaint: it becomes our one line
    try:
        with contextlib.redirect_stderr(said), executor.batch():
            jobs = [executor.submit(run_shard, argv) for argv in argvs]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError,
            subprocess.CalledProcessError) as exc:
        raise UserError(f"Slurm refused the job array: {_last_line(str(exc))}; nothing "
                        "submitted") from None
    return jobs


def _wait(jobs) -> None:
    while not all(job.done(force_check=True) for job in jobs):
        time.sleep(POLL_S)


def _state(job) -> str:
    """Slurm's end state (COMPLETED, TIMEOUT, CANCELLED, FAILED, NODE_FAIL, ...)."""
    return str(job.watcher.get_state(job.job_id, mode="force")).split()[0].upper()


def _why(job, task: Dict[str, Any]) -> str:
    """Why a task left runs without rows: Slurm ended it, or the shard's suite stopped
    (its exit code and the last line it wrote on stderr, from submitit's log)."""
    if task["state"] != "COMPLETED":
        return f"Slurm ended task {task['job_id']} ({task['state']}) before this run finished"
    try:
        code = job.result()
    except Exception as exc:  # submitit's account of a task that raised
        code = f"an error ({_last_line(str(exc))})"
    said = [line for line in (job.stderr() or "").splitlines() if line.startswith("gpubench:")]
    return (f"task {task['job_id']}: the shard's suite ended (exit {code}) before this run"
            + (f": {said[-1]}" if said else ""))


def _rows_for_unfinished(config: Path, shards_dir: Path, shard: Shard,
                         filter_expr: Optional[str], task: Dict[str, Any],
                         timeout_override: Optional[float], why: str, batch_id: str) -> None:
    """A row for each run of the shard that has none, saying `why`."""
    from gpubench.launch.status_rows import status_row
    from gpubench.suite.executor import open_suite_folder

    folder, plan = missing_runs(config, shards_dir, shard, filter_expr)
    recorded = set()
    if folder is not None:
        recorded = {e["label"] for e in json.loads((folder / "run.json").read_text()).get("runs", [])}
    if all(p.label() in recorded for p in plan.runs):
        return  # every run has its rows (a failed one: --resume runs it again)
    if folder is None:  # the task never started its suite: its folder, made here
        suite = open_suite_folder(plan, shards_dir, {"filter": filter_expr,
                                                     "batch_id": batch_id})
    else:
        plan.folder = folder
        suite = open_suite_folder(plan, shards_dir, {})
    status = ENDED_BY.get(task["state"], "failed")
    for planned in plan.runs:
        if planned.label() in recorded:
            continue
        run_id = new_run_id()
        run_folder = suite.path / "runs" / run_folder_name(host_name(), run_id)
        req, _ = request_for(planned.run, run_folder, planned.run.setting("device"), timeout_override)
        req = replace(req, suite_id=suite.meta["suite_id"], shard=str(shard))
        rows = pd.DataFrame([status_row(req, status, why, trial=0)]).reindex(
            columns=list(trial_columns()))
        suite.add_run(run_folder, rows, {"run_id": run_id, "label": planned.label(),
                                         "folder": str(run_folder.relative_to(suite.path)),
                                         "status": status, "slurm_job": task["job_id"]})
    suite.finish(interrupted=True)


def _statuses(shards_dir: Path) -> Dict[str, int]:
    """Runs by status over every shard's folder (the last entry of a run label wins)."""
    counts: Dict[str, int] = {}
    for meta_path in sorted(shards_dir.glob("*/run.json")):
        latest: Dict[str, str] = {}
        for entry in json.loads(meta_path.read_text()).get("runs", []):
            latest[entry["label"]] = entry["status"]
        for status in latest.values():
            counts[status] = counts.get(status, 0) + 1
    return counts
