"""A results store written in the layout's contract (results/store/layout.py) straight
from run and suite folders, for the reading side's tests while `gpubench store add`
(the writing side, built beside it) is not there yet: the rows read by results.reader
(migrated), text and true/false columns as strings, the rest float64, one trials file
and one runs file per run's month and machine partition. Once `store add` lands, the
tests can call it instead (write_store's signature is the command's)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from gpubench.results.compare_load import find_trial_files
from gpubench.results.reader import NUMERIC_COLUMNS, read_meta, read_trials
from gpubench.results.store import layout

_STAMP = re.compile(r"^(\d{8}T\d{6}Z)-")


def _arrow_frame(frame: pd.DataFrame, numeric: Sequence[str]):
    import pyarrow as pa

    fields, data = [], {}
    for column in frame.columns:
        if column in numeric:
            data[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            fields.append(pa.field(column, pa.float64()))
        else:
            data[column] = frame[column].map(lambda v: None if v is None or v != v else str(v)).astype(object)
            fields.append(pa.field(column, pa.string()))
    return pa.Table.from_pandas(pd.DataFrame(data), schema=pa.schema(fields), preserve_index=False)


def _write(table, store: Path, name: str, month: str, machine: str, part: str) -> Path:
    import pyarrow.parquet as pq

    folder = layout.partition_dir(store, name, month, machine)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{part}{layout.SUFFIX}"
    tmp = layout.temp_path(final)
    pq.write_table(table, tmp)
    tmp.replace(final)
    return final


def _started(rows: pd.DataFrame, folder: Path, run_id: str, meta: dict) -> str:
    times = rows["started_utc"].dropna().astype(str) if "started_utc" in rows else []
    if len(times):
        return str(times.iloc[0])
    for name in [p.name for p in sorted(folder.glob(f"runs/*-{run_id}"))] + [folder.name]:
        m = _STAMP.match(name)
        if m:
            return pd.to_datetime(m.group(1), format="%Y%m%dT%H%M%SZ", utc=True).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
    return str(meta.get("started_utc") or "")


def write_store(store: Path, inputs: Sequence[Path]) -> Path:
    """The runs under `inputs` added to the store at `store` (made if need be)."""
    layout.create_store(store)
    seen = {p.stem for p in layout.table_files(store, "runs")}
    n = len(seen)
    for path in inputs:
        for file in find_trial_files(Path(path)):
            frame = read_trials(file)
            frame = frame.copy()
            frame["source"] = str(Path(file).resolve())
            meta = read_meta(file.parent) if file.name == "trials.csv" else {}
            for run_id, rows in frame.groupby(frame["run_id"].astype(str), sort=False):
                started = _started(rows, file.parent, run_id, meta)
                month = layout.month_of(started)
                machine = layout.safe_machine(rows["host"].iloc[0])
                n += 1
                part = f"20260101T000000-test-1-{n:08x}"
                _write(_arrow_frame(rows, NUMERIC_COLUMNS), store, "trials", month, machine, part)
                run = {c: rows[c].iloc[0] if c in rows.columns else None for c in layout.RUN_COLUMNS}
                run.update(run_id=run_id, started_utc=started, n_trials=len(rows),
                           statuses=",".join(f"{s}:{k}" for s, k in rows["status"].value_counts().items()),
                           source=str(file), added_utc="2026-01-01T00:00:00Z",
                           fingerprint_json=json.dumps(meta["fingerprint"]) if meta.get("fingerprint") else "",
                           config_json=json.dumps(meta.get("config", {})), run_json=json.dumps(meta))
                _write(_arrow_frame(pd.DataFrame([run]), ("n_trials", "schema_version")), store,
                       "runs", month, machine, part)
    return store
