"""Reading result files. Readers refuse a newer schema with a clear message and migrate
older ones step by step (MIGRATIONS[v] turns a version-v frame into version v+1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pandas as pd

from gpubench.errors import UserError
from gpubench.results.schema import IDENTITY_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS

# Version 1 is the first schema: there is nothing older to migrate yet.
MIGRATIONS: Dict[int, Callable[[pd.DataFrame], pd.DataFrame]] = {}

REQUIRED_TRIAL_COLUMNS = IDENTITY_COLUMNS + ("schema_version", "trial", "duration_s",
                                             "throughput_samples_per_s", "status")


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
    version = int(versions.min()) if len(versions) else SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        frame = MIGRATIONS[version](frame)
        version += 1
    frame["schema_version"] = SCHEMA_VERSION
    return frame


def read_trials(path: Path) -> pd.DataFrame:
    path = Path(path)
    frame = _read_csv(path)
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    frame = migrate(frame, path)
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
