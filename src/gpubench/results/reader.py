"""Reading result files. Readers refuse a newer schema with a clear message and migrate
older ones step by step (MIGRATIONS[v] turns a version-v frame into version v+1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pandas as pd

from gpubench.errors import UserError
from gpubench.results.schema import (
    CONFIGURATION_DEFAULTS, IDENTITY_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS, trial_columns,
)


def _v1_to_v2(frame: pd.DataFrame) -> pd.DataFrame:
    """v1 had no scenario, exec, world_size, environment, rank, started_utc or
    git_commit: every v1 run was one process timing back-to-back steps in the
    interpreter gpubench ran in; tf-*-xla named its execution mode in the backend."""
    frame = frame.copy()  # v1 rows hold none of these (a file of mixed versions: empty cells)
    for column, value in {**CONFIGURATION_DEFAULTS, "rank": 0, "started_utc": None,
                          "git_commit": None}.items():
        frame[column] = value
    frame.loc[frame["backend"].astype(str).str.endswith("-xla"), "exec"] = "xla"
    order = trial_columns()
    return frame[[c for c in order if c in frame.columns]
                 + [c for c in frame.columns if c not in order]]


# MIGRATIONS[v] turns the rows of version v into rows of version v + 1.
MIGRATIONS: Dict[int, Callable[[pd.DataFrame], pd.DataFrame]] = {1: _v1_to_v2}

REQUIRED_TRIAL_COLUMNS = IDENTITY_COLUMNS + ("schema_version", "trial", "duration_s",
                                             "throughput_samples_per_s", "status")
# What a file must hold before migration: the columns every version has had.
REQUIRED_V1_COLUMNS = ("run_id", "workload", "backend", "mode", "precision", "batch_size",
                       "params", "device_index", "device_name", "device_uuid",
                       "schema_version", "trial", "duration_s", "throughput_samples_per_s",
                       "status")


@dataclass
class RunData:
    path: Path
    trials: pd.DataFrame
    summary: Optional[pd.DataFrame]
    meta: Dict[str, Any]


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={c: "object" for c in TEXT_COLUMNS})
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    return frame


def migrate(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    versions = pd.to_numeric(frame["schema_version"], errors="coerce")
    if versions.isna().any():
        raise UserError(f"{source}: schema_version holds a value that is not a number")
    newest = int(versions.max()) if len(versions) else SCHEMA_VERSION
    if newest > SCHEMA_VERSION:
        raise UserError(
            f"{source}: written with result schema version {newest}, newer than this "
            f"gpubench reads ({SCHEMA_VERSION}); upgrade gpubench to read it")
    if not len(versions) or int(versions.min()) == SCHEMA_VERSION:
        return frame
    # Rows of each version migrate from their own version (a suite resumed by a newer
    # gpubench holds rows of two versions), then join again in their order.
    parts = []
    for version, rows in frame.groupby(versions.astype(int), sort=False):
        while version < SCHEMA_VERSION:
            rows = MIGRATIONS[version](rows)
            version += 1
        parts.append(rows.assign(schema_version=SCHEMA_VERSION))
    return pd.concat(parts).sort_index()


def read_trials(path: Path) -> pd.DataFrame:
    path = Path(path)
    frame = _read_csv(path)
    missing = [c for c in REQUIRED_V1_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    frame = migrate(frame, path)
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    frame["params"] = frame["params"].fillna("")
    return frame


def read_run(folder: Path) -> RunData:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a run folder")
    trials = read_trials(folder / "trials.csv")
    summary_path = folder / "summary.csv"
    summary = _read_csv(summary_path) if summary_path.exists() else None
    meta: Dict[str, Any] = {}
    meta_path = folder / "run.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta_path}: not valid JSON ({exc})") from None
        if int(meta.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
            raise UserError(
                f"{meta_path}: written with result schema version {meta['schema_version']}, "
                f"newer than this gpubench reads ({SCHEMA_VERSION}); upgrade gpubench")
    return RunData(folder, trials, summary, meta)
