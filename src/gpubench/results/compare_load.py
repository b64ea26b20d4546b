"""Loading the inputs of compare and report: run folders, suite folders, trials.csv
files and folders of them, checked so that bad input is one clear UserError naming
the file and what is wrong.

What an input may be:
- a `trials.csv` (any name: a CSV file is read as trial rows);
- a run folder or a suite folder: its own `trials.csv`. A suite folder's trials.csv
  already holds every run of the suite merged, so its `runs/` subfolders are not read
  again (they would double count);
- a results store (results/store/; a folder with a store.json): its trial rows, read
  through DuckDB with the filters pushed into SQL (results/store/read.py);
- any other folder: searched recursively for run and suite folders, the search not
  descending below a folder that has a trials.csv (same reason). Rows that repeat
  across files (same run_id, configuration and trial: a run folder copied out of a
  suite next to the suite) count once.

"Mixed units": the schema carries units in column names (`latency_p50_ms`,
`power_avg_w`), so a file whose values are in other units shows it in its header: a
column naming a schema quantity with another unit suffix (`latency_p50_us`,
`throughput_samples_per_min`, `energy_kj`) is refused rather than read as if it were
the schema's unit. Non-numeric text in a numeric column is refused too, naming the
line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results.reader import NUMERIC_COLUMNS, check_numeric, read_meta, read_trials
from gpubench.results import schema
from gpubench.results.schema import ENVIRONMENT_COLUMNS, IDENTITY_COLUMNS, TRIAL_COLUMNS
# Unit suffixes a column name may end in (the schema's and their usual relatives).
UNITS = ("s", "ms", "us", "ns", "min", "h", "w", "mw", "kw", "j", "mj", "kj", "wh", "kwh",
         "hz", "khz", "mhz", "ghz", "bytes", "b", "kb", "mb", "gb", "kib", "mib", "gib",
         "bs", "kbs", "mbs", "gbs", "tbs", "gibs", "pct", "frac", "c", "f", "k")
_UNIT_RE = re.compile(r"^(?P<stem>.+)_(?P<unit>" + "|".join(sorted(UNITS, key=len, reverse=True)) + r")$")
DERIVED = "energy_j_per_sample"  # energy_j / samples, added on reading
GROUPABLE = tuple(dict.fromkeys(IDENTITY_COLUMNS + ("git_commit",) + ENVIRONMENT_COLUMNS))


def split_unit(column: str) -> Optional[Tuple[str, str]]:
    m = _UNIT_RE.match(column)
    return (m.group("stem"), m.group("unit")) if m else None


def check_units(columns: Iterable[str], expected: Sequence[str], path: Path) -> None:
    """Refuses a column that names an expected quantity in another unit."""
    units: Dict[str, str] = {}
    for name in expected:
        parts = split_unit(name)
        if parts:
            units[parts[0]] = parts[1]
    for column in columns:
        parts = split_unit(str(column))
        if parts and parts[0] in units and parts[1] != units[parts[0]] and column not in expected:
            want = f"{parts[0]}_{units[parts[0]]}"
            raise UserError(f"{path}: column {column!r} holds {parts[0]} in {parts[1]}, but "
                            f"gpubench's schema has it in {units[parts[0]]} ({want}); "
                            "the file mixes units: convert the column and name it so")


def find_trial_files(path: Path) -> List[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if (path / "trials.csv").is_file():
        return [path / "trials.csv"]
    found: List[Path] = []
    for folder, subfolders, files in os.walk(path):
        if "trials.csv" in files:
            found.append(Path(folder) / "trials.csv")
            subfolders.clear()  # a suite folder's runs/ are already in its trials.csv
        else:
            subfolders.sort()
    if not found:
        raise UserError(f"{path}: no trials.csv in it (expected a run folder, a suite folder, "
                        "a trials.csv or a folder of run folders)")
    return sorted(found)


def read_checked(file: Path) -> pd.DataFrame:
    """One trials file, read (migrated), unit-checked and made numeric; `source` column
    says where each row came from, and energy_j_per_sample is derived. A run or suite
    folder's run.json must parse too (a corrupt one is not silently passed over)."""
    if Path(file).name == "trials.csv":
        read_meta(Path(file).parent)
    frame = read_trials(file)
    if frame.empty:
        raise UserError(f"{file}: no trial rows (only a header)")
    check_units(frame.columns, TRIAL_COLUMNS, file)
    frame = check_numeric(frame, NUMERIC_COLUMNS, file)
    frame["params"] = frame["params"].fillna("").astype(str)
    frame = with_derived(frame)
    frame["source"] = str(file)
    return frame


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with energy_j_per_sample (energy_j / samples) when it lacks it."""
    if DERIVED in frame.columns:
        return frame
    frame = frame.copy()
    if "energy_j" in frame.columns and "samples" in frame.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[DERIVED] = (pd.to_numeric(frame["energy_j"], errors="coerce")
                              / pd.to_numeric(frame["samples"], errors="coerce"))
    else:
        frame[DERIVED] = np.nan
    return frame


def is_store_input(path: Path) -> bool:
    """Whether `path` is (or claims to be) a results store: it has a store.json, or a
    store's trials/month=... folders (then open_store says what is wrong with it)."""
    path = Path(path)
    return path.is_dir() and ((path / "store.json").exists()
                              or any((path / "trials").glob("month=*")))


def read_input(path: Path, filters=None, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Every trial row under `path` (see the module docstring), or in the results store
    at `path` (results/store/read.py), that `filters` select (results/store/filters.py:
    --since, --until, --machine, --where). `columns`: a reader that needs only these
    (a store then reads no other, its text as categoricals: read_store)."""
    from gpubench.results.store.filters import apply, nothing_left

    if is_store_input(path):
        from gpubench.results.store.read import read_store

        return read_store(Path(path), filters=filters, columns=columns)
    frame = read_files(find_trial_files(path))
    if filters:
        frame = apply(frame, filters)
        if frame.empty:
            raise nothing_left(str(path), filters)
        frame = frame.reset_index(drop=True)
    return frame


def input_label(path: object, filters=None) -> str:
    """An input as messages and headlines name it: its path, and its own filters."""
    return f"{path} [{filters.describe()}]" if filters else str(path)


def read_files(files: Sequence[Path]) -> pd.DataFrame:
    """The checked rows of `files` together; rows repeated across files count once."""
    frames = [read_checked(f) for f in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    keys = [c for c in schema.dedup_columns() if c in frame.columns]
    return frame.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)


def check_metric(frame: pd.DataFrame, metric: str, label: str) -> None:
    """The metric must be measured in some ok trial, and be finite and positive where
    it is (a ratio of medians needs that)."""
    if metric not in frame.columns:
        raise UserError(f"{_where(frame, label)}: no column {metric}")
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items())
        raise UserError(f"{_where(frame, label)}: no trial with status ok ({statuses}): "
                        "nothing to compare")
    values = ok[metric]
    if values.notna().sum() == 0:
        raise UserError(f"{_where(frame, label)}: {metric} was not measured in any ok trial")
    bad = values.notna() & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row = ok[bad].iloc[0]
        raise UserError(f"{row['source']}: {metric} must be a positive number in ok trials, "
                        f"found {row[metric]!r} (trial {row['trial']})")


def _where(frame: pd.DataFrame, label: str) -> str:
    sources = list(dict.fromkeys(frame["source"])) if "source" in frame.columns else []
    return sources[0] if len(sources) == 1 else label


def by_labels(frame: pd.DataFrame, column: str, label: str) -> pd.Series:
    """The values of `column` as group labels ("" for empty cells)."""
    if column not in GROUPABLE:
        raise UserError(f"--by {column}: not an identity or environment column "
                        f"(valid: {', '.join(GROUPABLE)})")
    if column not in frame.columns:
        raise UserError(f"{_where(frame, label)}: no column {column} to split by")
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):  # 64.0 -> "64", as it was written
        return values.map(lambda v: "" if pd.isna(v) else format(v, "g"))
    return values.fillna("").astype(str).str.strip()


def split_by(frame: pd.DataFrame, column: str, baseline: Optional[str],
             label: str) -> List[Tuple[str, pd.DataFrame]]:
    """Groups of rows by the value of `column`: the baseline first (`baseline`, or the
    value seen first), then the others in the order they appear."""
    labels = by_labels(frame, column, label)
    order = list(dict.fromkeys(labels))
    if baseline is not None:
        if baseline not in order:
            shown = ", ".join(repr(v) for v in order)
            raise UserError(f"--baseline {baseline!r}: {column} has no such value in {label} "
                            f"(values: {shown})")
        order.remove(baseline)
        order.insert(0, baseline)
    if len(order) < 2:
        raise UserError(f"{label}: {column} has a single value ({order[0]!r}); nothing to "
                        f"compare by it")
    return [(value, frame[labels == value]) for value in order]


def fingerprints(frame: pd.DataFrame) -> Dict[str, Optional[Dict]]:
    """run_id -> the run's fingerprint (run.json's; results/fingerprint.py), None for a
    run without one: written before schema 7, or a trials.csv without its run.json. A
    run folder's run.json is beside its trials.csv; a suite's runs are in its runs/
    folder (runs/<time>-<host>-<run_id>/run.json)."""
    from gpubench.results.reader import load_json

    found: Dict[str, Optional[Dict]] = dict(frame.attrs.get("fingerprints") or {})  # a store's
    metas: Dict[Path, Dict] = {}  # each run.json read once (a suite's, for each of its runs)
    if "run_id" not in frame.columns or "source" not in frame.columns:
        return found
    for source, run_id in frame[["source", "run_id"]].drop_duplicates().itertuples(
            index=False, name=None):
        run_id = str(run_id)
        if run_id in found and (found[run_id] is not None or frame.attrs.get("fingerprints")):
            continue
        folder = Path(str(source)).parent
        candidates = [folder / "run.json", *sorted(folder.glob(f"runs/*-{run_id}/run.json"))]
        found[run_id] = None
        for path in candidates:
            if path not in metas:
                try:
                    metas[path] = load_json(path) if path.is_file() else {}
                except UserError:
                    metas[path] = {}
            meta = metas[path]
            if str(meta.get("run_id")) == run_id and isinstance(meta.get("fingerprint"), dict):
                found[run_id] = meta["fingerprint"]
                break
    return found
