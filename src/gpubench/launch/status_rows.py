"""A run that produced no rows of its own (refused, crashed, timed out) still becomes
rows: its identity from the request (the same declaration as every row), measured
columns empty, status and error said. The same for every launcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import pandas as pd

from gpubench import __version__
from gpubench.atomic_io import write_text_atomic
from gpubench.machine import git_commit, host_name
from gpubench.launch.base import LaunchResult
from gpubench.launch.worker import request_to_json
from gpubench.measure.protocol import STOP_INTERRUPTED
from gpubench.measure.request import RunRequest, request_identity
from gpubench.measure.run_record import ERROR_TAIL_CHARS, utc_now
from gpubench.results import schema
from gpubench.results.schema import (
    CONTEXT_COLUMNS, ENVIRONMENT_COLUMNS, PLACEMENT_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS,
    trial_columns,
)
from gpubench.results.summary import summarize

# What the rows a worker wrote before it died know better than the request does.
KEPT_FROM_ROWS = (("run_id",) + PLACEMENT_COLUMNS + CONTEXT_COLUMNS
                  + tuple(c for c in ENVIRONMENT_COLUMNS if c != "schema_version")
                  + ("batch_size", "params"))


def status_row(req: RunRequest, status: str, error: str, trial: int,
               process: int = 0) -> Dict[str, Any]:
    """A row for a run that produced none of its own: identity from the request,
    measured columns empty."""
    run_id = Path(req.folder).name.rsplit("-", 1)[-1] if req.folder else ""
    return {"run_id": run_id, **request_identity(req), "rank": 0, "process": process,
            "started_utc": utc_now(), "git_commit": git_commit(),
            "gpubench_version": __version__, "schema_version": SCHEMA_VERSION,
            "host": host_name(), "trial": trial, "status": status,
            "suite_id": req.suite_id, "round": req.round, "shard": req.shard,
            "error": error[-ERROR_TAIL_CHARS:]}


def read_folder_trials(folder: Path) -> pd.DataFrame:
    path = Path(folder) / "trials.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(trial_columns()))
    # text as text: a run id such as 5e123456 would otherwise read as a float (inf)
    return pd.read_csv(path, dtype={c: "object" for c in TEXT_COLUMNS},
                       keep_default_na=True).assign(params=lambda f: f["params"].fillna(""))


def record_status(req: RunRequest, status: str, error: str, process: int = 0) -> pd.DataFrame:
    """Appends a status row to the run folder's trials.csv (keeping the rows the worker
    wrote before it died) and rewrites summary.csv. Returns all rows."""
    folder = Path(req.folder)
    trials = read_folder_trials(folder)
    row = status_row(req, status, error, trial=len(trials), process=process)
    if len(trials):  # the worker got as far as a device: keep what it knew
        for column in KEPT_FROM_ROWS + schema.CONFIGURATION_COLUMNS:
            if column == "process":  # the process that ended it, not the last to write
                continue
            if column in trials.columns:
                row[column] = trials[column].iloc[-1]
    rows = pd.concat([trials, pd.DataFrame([row])], ignore_index=True)[list(trial_columns())]
    write_text_atomic(folder / "trials.csv", rows.to_csv(index=False))
    _close_folder(req, rows, None, {"run_id": row["run_id"], "status": status,
                                    "error": error[-ERROR_TAIL_CHARS:]})
    return rows


def _close_folder(req: RunRequest, rows: pd.DataFrame, stop_reason: Optional[str],
                  meta: Dict[str, Any]) -> None:
    """summary.csv from `rows`, and a run.json of `meta` (with the schema version and the
    request) unless the run wrote its own before it ended."""
    folder = Path(req.folder)
    write_text_atomic(folder / "summary.csv", summarize(rows, stop_reason).to_csv(index=False))
    if not (folder / "run.json").exists():
        from gpubench.launch.policy import pending_note  # the clock policy set and restored
        write_text_atomic(folder / "run.json", json.dumps(
            {"schema_version": SCHEMA_VERSION, **meta, "config": request_to_json(req),
             **pending_note(folder)}, indent=2, default=str) + "\n")


def close_interrupted(req: RunRequest) -> None:
    """The folder of a run whose processes were killed at a Ctrl-C before they could
    close it (a run of ranks: once one rank stops, the others cannot finish in step):
    the finished trials stay, with summary.csv and a run.json saying it was interrupted.
    Nothing when no trial had finished (run_one then removes the folder)."""
    folder = Path(req.folder)
    trials = read_folder_trials(folder)
    if trials.empty:
        return
    _close_folder(req, trials, STOP_INTERRUPTED,
                  {"run_id": str(trials["run_id"].iloc[0]), "stop_reason": STOP_INTERRUPTED,
                   "finished_utc": utc_now(), "trials_finished": int(trials["trial"].nunique())})


def settle(req: RunRequest, result: LaunchResult) -> pd.DataFrame:
    """The rows a launched run leaves: its own when it finished; else its rows so far
    and a status row (unsupported for a refusal the backend cannot help, failed for bad
    input or a crash, timeout)."""
    if result.outcome in ("finished", "interrupted"):
        return read_folder_trials(Path(req.folder))
    if result.outcome == "refused":
        status = "unsupported" if result.refused_kind == "unsupported" else "failed"
    else:
        status = "timeout" if result.outcome == "timeout" else "failed"
    return record_status(req, status, result.message or "", result.process)
