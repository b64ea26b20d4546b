"""Reading result files. Readers refuse a newer schema with a clear message and migrate
older ones step by step (MIGRATIONS[v] turns a version-v frame into version v+1).
Malformed input is refused here, so that every reader (compare, report, --resume) does:
a row whose field count is not the header's (a file cut mid-line), text in a numeric
column, a row without a status, and a run.json that does not parse."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.schema import (
    CONFIGURATION_DEFAULTS, IDENTITY_COLUMNS, MEASURED_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS,
    VERSIONED_CONFIGURATION_COLUMNS, trial_columns,
)


def in_schema_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns first, in trials.csv's order, then any others as they were."""
    order = trial_columns()
    return frame[[c for c in order if c in frame.columns]
                 + [c for c in frame.columns if c not in order]]


def _v1_to_v2(frame: pd.DataFrame) -> pd.DataFrame:
    """v1 had no scenario, exec, world_size, environment, onnx_sha256, threads, data,
    rank, started_utc or git_commit: every v1 run was one process timing back-to-back
    steps on synthetic data in the interpreter gpubench ran in; tf-*-xla named its
    execution mode in the backend. A v1 row's thread count is unknown (its trials.csv
    never held it): empty, as a default-threads run records it."""
    frame = frame.copy()  # v1 rows hold none of these (a file of mixed versions: empty cells)
    for column, value in {**CONFIGURATION_DEFAULTS, "rank": 0, "started_utc": None,
                          "git_commit": None,
                          "contended": None}.items():  # not judged: empty, and compare keeps it
        frame[column] = value
    frame.loc[frame["backend"].astype(str).str.endswith("-xla"), "exec"] = "xla"
    return in_schema_order(frame)


def _v2_to_v3(frame: pd.DataFrame) -> pd.DataFrame:
    """v2 had no `process`: every v2 run was timed by one worker process, process 0."""
    frame = frame.assign(process=0)
    return in_schema_order(frame)


def _v3_to_v4(frame: pd.DataFrame) -> pd.DataFrame:
    """v3 had no target_accuracy, time-to-accuracy or accuracy-gate columns: every v3
    run measured throughput (empty target) and checked no accuracy."""
    new = [c for c in trial_columns() if c not in frame.columns]
    # one concat, not a column at a time (pandas warns of a fragmented frame)
    frame = pd.concat([frame, pd.DataFrame({c: None for c in new}, index=frame.index)], axis=1)
    return in_schema_order(frame)


def _v4_to_v5(frame: pd.DataFrame) -> pd.DataFrame:
    """v4 had no strategy, whole-run or collective columns: every v4 run was a plain run
    of a model (one process, no ranks), whose new columns are all empty."""
    return _v3_to_v4(frame)  # the same step: the new columns, empty, in their places


def _v5_to_v6(frame: pd.DataFrame) -> pd.DataFrame:
    """v5 had no serving scenarios: no server identity (rate, bound, batcher timeout)
    and no query columns; all empty, as for today's non-serving rows."""
    return _v3_to_v4(frame)


def _v6_to_v7(frame: pd.DataFrame) -> pd.DataFrame:
    """v6 had no suite context, clock policy, throttle naming or exclusion: a v6 row is
    a lone run's (or its suite unknown), with no limit or lock asked, and kept."""
    return _v3_to_v4(frame)


def _v7_to_v8(frame: pd.DataFrame) -> pd.DataFrame:
    """v7 had no generation and no shards: a v7 row is a train or infer run of the
    whole suite, its generation columns empty."""
    return _v3_to_v4(frame)


# MIGRATIONS[v] turns the rows of version v into rows of version v + 1.
MIGRATIONS: Dict[int, Callable[[pd.DataFrame], pd.DataFrame]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7,
    7: _v7_to_v8}

REQUIRED_TRIAL_COLUMNS = IDENTITY_COLUMNS + ("schema_version", "trial", "duration_s",
                                             "throughput_samples_per_s", "status")
# What a file must hold before migration: the columns every version has had.
REQUIRED_V1_COLUMNS = ("run_id", "workload", "backend", "mode", "precision", "batch_size",
                       "params", "device_index", "device_name", "device_uuid",
                       "schema_version", "trial", "duration_s", "throughput_samples_per_s",
                       "status")
# Columns that hold numbers (or nothing): every identity, context and measured column of
# the schema version that is neither text nor a true/false.
NUMERIC_COLUMNS = tuple(
    c for c in VERSIONED_CONFIGURATION_COLUMNS + ("device_index", "rank", "process", "round")
    + MEASURED_COLUMNS
    if c not in TEXT_COLUMNS and c not in ("throttled", "contended", "reached", "accuracy_ok",
                                           "latency_bound_met"))


@dataclass
class RunData:
    path: Path
    trials: pd.DataFrame
    summary: Optional[pd.DataFrame]
    meta: Dict[str, Any]


def _read_csv(path: Path) -> pd.DataFrame:
    return _read_table(path)[0]


def _read_table(path: Path) -> Tuple[pd.DataFrame, List[int]]:
    """The rows of a CSV and the line each starts on (for messages)."""
    try:
        frame = pd.read_csv(path, dtype={c: "object" for c in TEXT_COLUMNS})
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return frame, _record_lines(path, text)


def _record_lines(path: Path, text: str) -> List[int]:
    """The line each data record starts on, refusing a record whose field count is not
    the header's: pandas pads a short row (a file cut mid-line) with empty cells and
    reads on, so a cut row would count as a trial with its last columns unmeasured."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        starts: List[int] = []
        start = reader.line_num + 1
        for record in reader:
            if record:  # pandas skips blank lines too
                if len(record) != len(header):
                    raise UserError(_bad_record(path, start, len(record), len(header),
                                                cut=reader.line_num == text.count("\n") + 1))
                starts.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}: not a readable CSV (line {reader.line_num}: {exc})") from None
    return starts


def _bad_record(path: Path, line: int, fields: int, expected: int, cut: bool) -> str:
    if cut and fields < expected:  # the last line, with no newline after it
        return (f"{path}: line {line} is cut short ({fields} of {expected} fields, no newline "
                "at the end): the file was truncated mid-line; repair or remove that line")
    return (f"{path}: line {line} has {fields} fields, the header {expected}: a malformed row; "
            "repair or remove it")


def check_numeric(frame: pd.DataFrame, columns: Iterable[str], path: Path,
                  lines: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Makes `columns` numeric, refusing text that is not a number (names the line:
    `lines[i]` for row i, else the row's place after the header)."""
    for column in columns:
        if column not in frame.columns or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() & raw.astype(str).str.strip().ne("")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            text = str(raw.iloc[i])[:40]
            raise UserError(f"{path}: column {column} holds a value that is not a number, "
                            f"{text!r} on line {_line(lines, i)}")
        frame[column] = values
    return frame


def _line(lines: Optional[Sequence[int]], i: int) -> int:
    return lines[i] if lines is not None and i < len(lines) else i + 2


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
    frame, lines = _read_table(path)
    missing = [c for c in REQUIRED_V1_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    frame = migrate(frame, path)
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    for column in schema.CONFIGURATION_COLUMNS:  # one declared beyond this version's
        if column not in frame.columns:
            frame[column] = schema.CONFIGURATION_DEFAULTS.get(column)
    frame["params"] = frame["params"].fillna("")
    status = frame["status"]
    no_status = status.isna() | status.astype(str).str.strip().eq("")
    if no_status.any():  # every writer gives each row one; without it a row cannot count
        i = int(np.flatnonzero(no_status.to_numpy())[0])
        raise UserError(f"{path}: line {_line(lines, i)} has no status")
    return check_numeric(frame, NUMERIC_COLUMNS, path, lines)


def read_run(folder: Path) -> RunData:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a run folder")
    trials = read_trials(folder / "trials.csv")
    summary_path = folder / "summary.csv"
    summary = _read_csv(summary_path) if summary_path.exists() else None
    return RunData(folder, trials, summary, read_meta(folder))


def load_json(path: Path) -> Dict[str, Any]:
    """A JSON object from `path`; a file that does not parse is corrupt, said so (a
    reader that skipped it would act as if the run were absent)."""
    try:
        value = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: corrupt, not valid JSON ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: corrupt, a JSON {type(value).__name__} where an object belongs")
    return value


def read_meta(folder: Path) -> Dict[str, Any]:
    """`folder`'s run.json ({} when it has none), checked: it parses, and its schema
    is one this gpubench reads."""
    meta_path = Path(folder) / "run.json"
    if not meta_path.exists():
        return {}
    meta = load_json(meta_path)
    try:
        version = float(meta.get("schema_version", SCHEMA_VERSION))
    except (TypeError, ValueError):
        raise UserError(f"{meta_path}: schema_version {meta['schema_version']!r} is not a "
                        "number") from None
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{meta_path}: written with result schema version {meta['schema_version']}, "
            f"newer than this gpubench reads ({SCHEMA_VERSION}); upgrade gpubench")
    return meta


TIMING_KEYS = ("phases_s", "wall_s", "fixed_s")  # where a run's time went (measure/phases.py)


def read_timing(folder: Path) -> Dict[str, Any]:
    """run.json's phases_s, wall_s and fixed_s; {} for a folder without them (a run
    that never started, an older run, a run.json that does not parse)."""
    try:
        meta = load_json(Path(folder) / "run.json")
    except UserError:
        return {}
    return {k: meta[k] for k in TIMING_KEYS if k in meta}
