"""Reading a results store (layout.py) where compare, history and report read folders.

- `read_store`: the trial rows (the columns and values compare_load.read_input gives for
  the same folders), the filters (filters.py) pushed into DuckDB's SQL: the month and
  machine partitions are pruned from the file names before any file is opened, then
  the rest is a WHERE clause over the files left.
- `run_medians` (history.py over a store): one row per run and configuration, computed
  in DuckDB (the median of the run's ok, kept trials of the metric), so a year of a
  fleet's nights never comes into memory as trial rows.
- `fingerprints`, `read_samples`: the runs table's fingerprint per run, a run's samples.

Errors are UserErrors: a folder that is not a store (open_store), a --where column the
store lacks, a corrupt Parquet file (named; the files a filter prunes are never opened,
so the rest of the store still reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.store import layout
from gpubench.results.store.filters import (
    PSEUDO_COLUMNS, Filters, machine_name, months_of, numeric_columns, pseudo_range,
)

TIME = "TRY_CAST(NULLIF(TRIM(CAST(started_utc AS VARCHAR)), '') AS TIMESTAMPTZ)"


def _duckdb():
    return layout.need("duckdb")


def as_filters(since: Optional[str] = None, until: Optional[str] = None,
               machines: Iterable[str] = (), where: Iterable[Any] = (),
               filters: Optional[Filters] = None) -> Filters:
    """Filters from read_store's arguments: `where` as COLUMN=VALUE texts or pairs."""
    texts = [w if isinstance(w, str) else f"{w[0]}={w[1]}" for w in where]
    more = Filters.parse(since, until, machines, texts)
    if filters is None:
        return more
    return Filters(more.since or filters.since, more.until or filters.until,
                   filters.machines + more.machines, filters.where + more.where)


def files(store: Path, table: str, filters: Filters) -> List[Path]:
    """The files of `table` the filters can touch (partitions pruned by their names)."""
    first, last, exact = months_of(filters)
    machines = {machine_name(m) for m in filters.machines}
    out = []
    for path in layout.table_files(store, table):
        month = path.parent.parent.name.partition("=")[2]
        machine = path.parent.name.partition("=")[2]
        if machines and machine not in machines:
            continue
        if month == layout.UNKNOWN_MONTH:  # runs without a start time: kept, as in folders
            if exact is not None:
                continue
        elif (first and month < first) or (last and month > last) or \
                (exact is not None and month not in exact):
            continue
        out.append(path)
    return out


class Reader:
    """One DuckDB connection over one store's tables, the filters' files registered as
    views (`trials`, `runs`, ...)."""

    def __init__(self, store: Path, filters: Filters):
        self.store = layout.open_store(Path(store))
        self.filters = filters
        self.db = _duckdb().connect()
        self.db.execute("SET TimeZone = 'UTC'")
        self.db.execute("SET parquet_metadata_cache = true")  # each footer read once
        self.db.execute("SET enable_progress_bar = false")  # nothing below cli prints
        self.files: Dict[str, List[Path]] = {}
        self.columns: Dict[str, List[str]] = {}

    def view(self, table: str) -> bool:
        """Registers `table` over its files; False when it has none."""
        if table in self.files:
            return bool(self.files[table])
        found = self.files[table] = files(self.store, table, self.filters)
        if not found:
            return False
        scan = layout.scan_sql(found, filename=True)  # which file a row is in: medians.py's dedup
        self.run(f"CREATE VIEW {table} AS SELECT * FROM {scan}", table=table)
        self.columns[table] = [r[0] for r in self.run(f"DESCRIBE {table}", table=table).fetchall()]
        return True

    def run(self, sql: str, params: Sequence[Any] = (), table: str = "trials"):
        duckdb = _duckdb()
        try:
            return self.db.execute(sql, list(params))
        except duckdb.Error as exc:
            raise self.corrupt(table, exc) from None

    def arrow(self, sql: str, params: Sequence[Any] = (), table: str = "trials"):
        """The query's rows as an Arrow table, straight from a relation (a DB-API
        result's Arrow output copies the rows once more)."""
        duckdb = _duckdb()
        try:
            relation = self.db.sql(sql, params=list(params))
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            return fetch()
        except duckdb.Error as exc:
            raise self.corrupt(table, exc) from None

    def corrupt(self, table: str, exc: Exception) -> UserError:
        """The file DuckDB could not read, named (each of the table's files is opened
        alone to find it), else DuckDB's own first line."""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        duckdb = _duckdb()
        for path in self.files.get(table, []):
            try:
                duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({_quote(str(path))})").fetchall()
            except duckdb.Error as bad:
                first = str(bad).strip().splitlines()[0]
                return UserError(f"{path}: corrupt Parquet file in store {self.store} ({first}); "
                                 "move it out of the store (the runs in it read again once "
                                 "their folders are added again)")
        return UserError(f"{self.store}: cannot read its {table} ({message})")

    def where(self, table: str = "trials") -> Tuple[str, List[Any]]:
        """The filters as a WHERE clause over `table` and its parameters."""
        clauses, params = [], []
        start, end = self.filters.time_range()
        if start is not None:
            clauses.append(f"({TIME} IS NULL OR {TIME} >= ?)")
            params.append(start.to_pydatetime())
        if end is not None:
            clauses.append(f"({TIME} IS NULL OR {TIME} < ?)")
            params.append(end.to_pydatetime())
        if self.filters.machines:
            names = sorted({machine_name(m) for m in self.filters.machines})
            clauses.append(f"machine IN ({', '.join('?' for _ in names)})")
            params += names
        present = set(self.columns.get(table, []))
        for column, values in self.filters.by_column().items():
            ors = []
            for value in values:
                if column in PSEUDO_COLUMNS:
                    low, high = pseudo_range(column, value)
                    ors.append(f"({TIME} >= ? AND {TIME} < ?)")
                    params += [low.to_pydatetime(), high.to_pydatetime()]
                elif column not in present:  # a column the store's files lack: all empty
                    ors.append("TRUE" if value == "" else "FALSE")
                elif column in numeric_columns():
                    cell = f'TRY_CAST("{column}" AS DOUBLE)'
                    if value == "":
                        ors.append(f"({cell} IS NULL OR isnan({cell}))")
                    else:
                        ors.append(f"{cell} = ?")
                        params.append(float(value))
                else:
                    ors.append(f"COALESCE(TRIM(CAST(\"{column}\" AS VARCHAR)), '') = ?")
                    params.append(value)
            clauses.append("(" + " OR ".join(ors) + ")")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _nothing(store: Path, filters: Filters) -> UserError:
    what = f" matches {filters.describe()}" if filters else " is in it yet"
    return UserError(f"{store}: no trial row{what}")


def read_store(path: Path, since: Optional[str] = None, until: Optional[str] = None,
               machines: Iterable[str] = (), where: Iterable[Any] = (),
               filters: Optional[Filters] = None,
               columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """The trial rows of the store at `path` the filters select, as compare_load reads
    folders' (energy_j_per_sample derived, rows repeated across files once); `columns`:
    only these (and what de-duplication needs), their text as pandas categoricals: a
    fleet's year of rows repeats a few thousand distinct texts, which as one Python
    string a cell would take gigabytes (the dashboard reads this way). The run's
    fingerprints ride along in `frame.attrs["fingerprints"]` (compare's changed column)."""
    from gpubench.results.compare_load import with_derived

    filters = as_filters(since, until, machines, where, filters)
    reader = Reader(Path(path), filters)
    if not reader.view("trials"):
        raise _nothing(reader.store, filters)
    present = [c for c in reader.columns["trials"] if c not in (*layout.PARTITIONS, "filename")]
    keys = [c for c in layout.dedup_columns("trials") if c in present]
    wanted = present if columns is None else list(dict.fromkeys(
        [c for c in columns if c in present] + keys + ["source"]))
    clause, params = reader.where()
    select = ", ".join(f'"{c}"' for c in wanted)
    sql = (f"SELECT {select} FROM trials{clause} "
           f"ORDER BY {TIME} NULLS LAST, run_id, source, rank, process, trial")
    frame = reader.run(sql, params).df() if columns is None else \
        reader.arrow(sql, params).to_pandas(strings_to_categorical=True)
    if frame.empty:
        raise _nothing(reader.store, filters)
    frame = frame.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)
    for column in frame.columns:  # text as the CSV reader gives it: NaN for an empty cell
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            continue  # a missing cell is already NaN
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
    if "params" in frame.columns and columns is None:
        frame["params"] = frame["params"].fillna("").astype(str)
    elif "params" in frame.columns:  # "" for a missing cell, as above, kept categorical
        frame["params"] = frame["params"].cat.add_categories([""]).fillna("") \
            if isinstance(frame["params"].dtype, pd.CategoricalDtype) and "" not in \
            frame["params"].cat.categories else frame["params"].fillna("")
    frame = with_derived(frame)
    if "source" in frame.columns:  # last, as compare_load.read_checked adds it
        frame = frame[[c for c in frame.columns if c != "source"] + ["source"]]
    frame.attrs["fingerprints"] = Shared(fingerprints_of(reader, frame["run_id"].dropna().astype(str)))
    return frame


class Shared(dict):
    """A dict that pandas' attrs carry along uncopied: pandas deep-copies `attrs` on
    every operation (__finalize__), which for a night's fingerprints cost compare ~50 s."""

    def __deepcopy__(self, memo):
        return self


def fingerprints_of(reader: Reader, run_ids: Iterable[str]) -> Dict[str, Optional[Dict]]:
    """run_id -> its fingerprint (runs.fingerprint_json), None where it has none."""
    wanted = sorted(set(run_ids))
    found: Dict[str, Optional[Dict]] = {r: None for r in wanted}
    if not wanted or not reader.view("runs") or "fingerprint_json" not in reader.columns["runs"]:
        return found
    reader.db.register("wanted_runs", pd.DataFrame({"run_id": wanted}))
    rows = reader.run("SELECT r.run_id, r.fingerprint_json FROM runs r "
                      "JOIN wanted_runs w USING (run_id)", table="runs").fetchall()
    for run_id, text in rows:
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = None
        found[str(run_id)] = value if isinstance(value, dict) else None
    return found


def read_samples(path: Path, run_ids: Iterable[str], filters: Optional[Filters] = None) -> pd.DataFrame:
    """The telemetry samples of `run_ids` (empty where the store holds none: added
    without --samples)."""
    reader = Reader(Path(path), filters or Filters())
    wanted = sorted({str(r) for r in run_ids})
    if not wanted or not reader.view("samples"):
        return pd.DataFrame()
    reader.db.register("wanted_runs", pd.DataFrame({"run_id": wanted}))
    frame = reader.run("SELECT s.* EXCLUDE (month, machine, filename) FROM samples s "
                       "JOIN wanted_runs w USING (run_id)", table="samples").df()
    keys = [c for c in layout.dedup_columns("samples") if c in frame.columns]
    return frame.drop_duplicates(subset=keys).reset_index(drop=True)
