"""The parent's side of the worker: start it, relay its progress, enforce the timeout,
and turn a crash, a hang or a refusal into rows of the run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pandas as pd

from gpubench import __version__
from gpubench.environment import host_name
from gpubench.measure.runner import RunRequest
from gpubench.atomic_io import write_text_atomic
from gpubench.results.schema import SCHEMA_VERSION, TRIAL_COLUMNS
from gpubench.results.summary import summarize
from gpubench.suite.worker import (
    EVENT_FD_ENV, EXIT_FINISHED, EXIT_INTERRUPTED, EXIT_REFUSED, request_to_json,
)
from gpubench.telemetry import pin_cuda_device_order
from gpubench.workloads import resolve_workload

LOG_NAME = "worker.log"
ERROR_TAIL_CHARS = 2000
INTERRUPT_GRACE_S = 60.0  # time a worker gets to write its finished trials after Ctrl-C


@dataclass
class WorkerResult:
    """How a worker ended: finished | refused | failed | timeout | interrupted."""

    outcome: str
    message: Optional[str] = None
    refused_kind: Optional[str] = None  # unsupported | usage
    events: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def telemetry(self) -> Dict[str, Any]:
        return self._finished().get("telemetry") or {}

    @property
    def warnings(self) -> List[str]:
        return list(self._finished().get("warnings") or [])

    def _finished(self) -> Dict[str, Any]:
        finished = [e for e in self.events if e["event"] == "finished"]
        return finished[-1] if finished else {}


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - ERROR_TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _relay(read_fd: int, events: List[Dict[str, Any]], progress: Callable[..., None]) -> None:
    with os.fdopen(read_fd, "r") as stream:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            events.append(event)
            name = event.pop("event", "")
            event["event"] = name
            if name not in ("refused", "finished"):
                progress(name, **{k: v for k, v in event.items() if k != "event"})


def run_in_worker(req: RunRequest, timeout_s: Optional[float],
                  progress: Callable[..., None] = lambda event, **fields: None,
                  on_start: Callable[[subprocess.Popen], None] = lambda proc: None) -> WorkerResult:
    """Runs `req` (whose `folder` must be set) in a fresh worker process. `on_start`
    receives the process (a suite interrupts its workers through it)."""
    assert req.folder is not None
    folder = Path(req.folder)
    folder.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    env = {**os.environ, EVENT_FD_ENV: str(write_fd)}
    pin_cuda_device_order(env)  # the worker's CUDA ordinals are then NVML's indices
    events: List[Dict[str, Any]] = []
    with open(folder / LOG_NAME, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpubench.suite.worker"], stdin=subprocess.PIPE,
            stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env,
            start_new_session=True)  # its own group: a timeout kills all it started
    os.close(write_fd)
    on_start(proc)
    relay = threading.Thread(target=_relay, args=(read_fd, events, progress), daemon=True)
    relay.start()
    try:
        proc.stdin.write(json.dumps(request_to_json(req)).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        relay.join(timeout=5)
        return WorkerResult("timeout", f"timed out after {timeout_s:g} s; last output:\n"
                            + _tail(folder / LOG_NAME), events=events)
    except KeyboardInterrupt:
        # Let the worker write what finished, then stop too.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        raise
    relay.join(timeout=5)
    if code == EXIT_FINISHED:
        return WorkerResult("finished", events=events)
    if code == EXIT_INTERRUPTED:
        return WorkerResult("interrupted", events=events)
    refused = [e for e in events if e["event"] == "refused"]
    if code == EXIT_REFUSED and refused:
        return WorkerResult("refused", refused[-1]["message"], refused[-1]["kind"], events)
    how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
    return WorkerResult("failed", f"worker {how}; last output:\n" + _tail(folder / LOG_NAME),
                        events=events)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def status_row(req: RunRequest, status: str, error: str, trial: int) -> Dict[str, Any]:
    """A row for a run that produced none of its own (refused, crashed, timed out):
    identity from the request, measured columns empty."""
    run_id = Path(req.folder).name.rsplit("-", 1)[-1] if req.folder else ""
    try:
        workload = resolve_workload(req.workload, req.params)
        batch, params = req.batch_size or workload.default_batch_size, workload.params_str
    except Exception:  # the row must still be written
        batch, params = req.batch_size, ";".join(f"{k}={v}" for k, v in sorted(req.params.items()))
    return {"run_id": run_id, "workload": req.workload, "backend": req.backend,
            "mode": req.mode, "precision": req.precision, "batch_size": batch,
            "params": params, "gpubench_version": __version__,
            "schema_version": SCHEMA_VERSION, "host": host_name(), "trial": trial,
            "status": status, "error": error[-ERROR_TAIL_CHARS:]}


def read_folder_trials(folder: Path) -> pd.DataFrame:
    path = Path(folder) / "trials.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    return pd.read_csv(path, dtype={"params": "object", "error": "object", "status": "object"},
                       keep_default_na=True).assign(params=lambda f: f["params"].fillna(""))


def record_status(req: RunRequest, status: str, error: str) -> pd.DataFrame:
    """Appends a status row to the run folder's trials.csv (keeping the rows the worker
    wrote before it died) and rewrites summary.csv. Returns all rows."""
    folder = Path(req.folder)
    trials = read_folder_trials(folder)
    row = status_row(req, status, error, trial=len(trials))
    if len(trials):  # the worker got as far as a device: keep its identity
        for column in ("run_id", "device_index", "device_name", "device_uuid",
                       "driver_version", "cuda_version", "cudnn_version", "framework",
                       "framework_version", "host", "batch_size", "params"):
            row[column] = trials[column].iloc[-1]
    rows = pd.concat([trials, pd.DataFrame([row])], ignore_index=True)[list(TRIAL_COLUMNS)]
    write_text_atomic(folder / "trials.csv", rows.to_csv(index=False))
    write_text_atomic(folder / "summary.csv", summarize(rows).to_csv(index=False))
    if not (folder / "run.json").exists():
        write_text_atomic(folder / "run.json", json.dumps(
            {"schema_version": SCHEMA_VERSION, "run_id": row["run_id"], "status": status,
             "config": request_to_json(req), "error": error[-ERROR_TAIL_CHARS:]}, indent=2) + "\n")
    return rows


def run_isolated(req: RunRequest, timeout_s: Optional[float] = None,
                 progress: Callable[..., None] = lambda event, **fields: None):
    """`gpubench run` through a worker, as suites run: the same rows, folder and errors
    as execute_run in-process (a refusal raises the same UserError; a crash or a timeout
    is a failed row)."""
    import shutil

    from gpubench.errors import Unsupported, UserError
    from gpubench.measure.runner import RunOutcome, preflight
    from gpubench.results.reader import read_run
    from gpubench.results.writer import new_run_id, run_folder_name

    preflight(req)  # bad input fails here, fast, without starting a worker
    folder = Path(req.out_dir) / run_folder_name(host_name(), new_run_id())
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write results to {req.out_dir}: {exc.strerror or exc}") from None
    req = replace(req, folder=folder)
    try:
        result = run_in_worker(req, timeout_s, progress)
    except KeyboardInterrupt:
        if not (folder / "trials.csv").exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if result.outcome == "interrupted":
        raise KeyboardInterrupt
    if result.outcome == "refused":
        shutil.rmtree(folder, ignore_errors=True)
        raise (Unsupported if result.refused_kind == "unsupported" else UserError)(result.message)
    if result.outcome in ("failed", "timeout"):
        record_status(req, "timeout" if result.outcome == "timeout" else "failed", result.message or "")
    data = read_run(folder)
    trials = data.trials
    status = "ok" if len(trials) and (trials["status"] == "ok").all() else "failed"
    errors = trials["error"].dropna()
    stop = data.meta.get("stop_reason") or result.outcome
    return RunOutcome(folder, status, stop, trials, data.summary,
                      errors.iloc[-1] if len(errors) else None, result.telemetry,
                      result.warnings)
