"""`gpubench store ls` and `gpubench store query`: a store's contents in figures, and
DuckDB SQL over its tables as views (`trials`, `runs`, `samples`; docs/store.md lists
their columns). Each view reads its table's visible files, with `month` and `machine`
from the partition, rows repeated across files (a killed writer's, added again) once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.store import layout
from gpubench.results.store.write import parquet_error


@dataclass
class Files:
    """A table's files: the readable ones (path, rows, bytes) and the corrupt ones."""

    good: List[Tuple[Path, int, int]] = field(default_factory=list)
    corrupt: List[Tuple[Path, str]] = field(default_factory=list)


def table_files(store: Path, table: str) -> Files:
    """Every visible file of `table`, its footer read: a file whose footer does not
    read is corrupt."""
    pq = layout.need("pyarrow.parquet")

    found = Files()
    for path in layout.table_files(store, table):
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
            found.good.append((path, rows, path.stat().st_size))
        except Exception as exc:  # pyarrow's ArrowInvalid, OSError, ...
            found.corrupt.append((path, str(parquet_error(path, exc))))
    return found


EMPTY_COLUMNS = {
    "trials": schema.trial_columns() + ("source",),
    "runs": layout.RUN_COLUMNS,
    "samples": ("run_id",),
}


def connect(store: Path, files: Dict[str, Files]):
    """An in-memory DuckDB connection with a view per table over its good files."""
    duckdb = layout.need("duckdb")

    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")  # each query binds every file's footer
    for table, found in files.items():
        paths = [p for p, _, _ in found.good]
        if not paths:
            columns = ", ".join(f'NULL::{"DOUBLE" if _numeric(table, c) else "VARCHAR"} AS "{c}"'
                                for c in EMPTY_COLUMNS[table] + layout.PARTITIONS)
            con.execute(f"CREATE VIEW {table} AS SELECT {columns} WHERE false")
            continue
        scan = layout.scan_sql(paths)
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        keys = [c for c in layout.dedup_columns(table) if c in present]
        if (table == "samples" or not keys  # samples: added with their run, once
                or not con.execute(layout.repeats_sql(paths, table)).fetchall()):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {scan}")
        else:
            over = ", ".join(f'"{c}"' for c in keys)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {scan} "
                        f"QUALIFY row_number() OVER (PARTITION BY {over}) = 1")
    return con


def _numeric(table: str, column: str) -> bool:
    from gpubench.results.store.write import TEXT

    if table == "trials":
        return column not in TEXT
    return column in ("schema_version", "n_trials")


def open_tables(store: Path) -> Tuple[Any, Dict[str, Files]]:
    """The store's views, refusing a corrupt file (a query may read any of them)."""
    store = layout.open_store(store)
    files = {table: table_files(store, table) for table in layout.TABLES}
    for found in files.values():
        if found.corrupt:
            raise UserError(found.corrupt[0][1])
    return connect(store, files), files


def query(store: Path, sql: str):
    """The result of `sql` over the store's views, as a pandas frame."""
    duckdb = layout.need("duckdb")

    if not sql or not sql.strip():
        raise UserError("store query: an empty query; give SQL, e.g. "
                        "\"SELECT workload, count(*) FROM trials GROUP BY workload\"")
    con, _ = open_tables(store)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"store query failed: {line}") from None
    finally:
        con.close()


def describe(store: Path) -> Dict[str, Any]:
    """What `store ls` shows: runs, trial and sample rows, configurations, machines, the
    dates, files and bytes per table, the schema versions the runs were written with, and
    the corrupt files (left out of every figure)."""
    store = layout.open_store(store)
    files = {table: table_files(store, table) for table in layout.TABLES}
    con = connect(store, files)
    try:
        one = lambda sql: con.execute(sql).fetchone()  # noqa: E731
        config = [c for c in schema.CONFIGURATION_COLUMNS + ("device_name",)
                  if c in {r[0] for r in con.execute("DESCRIBE trials").fetchall()}]
        listed = ", ".join(f'"{c}"' for c in config)
        first, last = one("SELECT min(started_utc), max(started_utc) FROM runs "
                          "WHERE started_utc <> ''")
        machines = con.execute("SELECT machine, count(*), min(started_utc), max(started_utc) "
                               "FROM runs GROUP BY machine ORDER BY machine").fetchall()
        versions = con.execute("SELECT CAST(schema_version AS INTEGER) AS v, count(*) FROM runs "
                               "GROUP BY v ORDER BY v").fetchall()
        out = {
            "store": str(store), "layout": layout.LAYOUT,
            "runs": one("SELECT count(*) FROM runs")[0],
            "trial_rows": one("SELECT count(*) FROM trials")[0],
            "sample_rows": one("SELECT count(*) FROM samples")[0],
            "configurations": one(f"SELECT count(*) FROM (SELECT DISTINCT {listed} FROM trials)")[0]
            if config else 0,
            "first_started_utc": first, "last_started_utc": last,
            "machines": [{"machine": m, "runs": n, "first": a, "last": b}
                         for m, n, a, b in machines],
            "schema_versions": {("unknown" if v is None else str(v)): n for v, n in versions},
            "files": {t: {"files": len(f.good), "rows": sum(r for _, r, _ in f.good),
                          "bytes": sum(b for _, _, b in f.good)} for t, f in files.items()},
            "corrupt": [{"file": str(p), "error": why} for f in files.values() for p, why in f.corrupt],
            "leftovers": len(layout.leftovers(store)),
        }
    finally:
        con.close()
    out["bytes"] = sum(v["bytes"] for v in out["files"].values()) + _other_bytes(store)
    return out


def _other_bytes(store: Path) -> int:
    marker = store / layout.MARKER
    return marker.stat().st_size if marker.exists() else 0


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def ls_text(found: Dict[str, Any]) -> str:
    files = found["files"]
    lines = [f"store           {found['store']} (layout {found['layout']})",
             f"runs            {found['runs']:,}",
             f"trial rows      {found['trial_rows']:,}",
             f"sample rows     {found['sample_rows']:,}",
             f"configurations  {found['configurations']:,}",
             "dates           " + (f"{found['first_started_utc']} .. {found['last_started_utc']}"
                                   if found["first_started_utc"] else "none"),
             f"machines        {len(found['machines'])}"]
    lines += [f"  {m['machine']}: {m['runs']:,} run{'' if m['runs'] == 1 else 's'}"
              + (f", {m['first']} .. {m['last']}" if m["first"] else "") for m in found["machines"]]
    versions = ", ".join(f"{v} ({n:,} run{'' if n == 1 else 's'})" for v, n in found["schema_versions"].items())
    lines.append(f"schema versions {versions or 'none'}")
    lines.append("files           " + ", ".join(f"{t} {v['files']}" for t, v in files.items())
                 + f"; {size_text(found['bytes'])}")
    if found["leftovers"]:
        lines.append(f"temporary files {found['leftovers']} (a writer's that died; the next "
                     "store add removes them)")
    for bad in found["corrupt"]:
        lines.append(f"corrupt         {bad['error']}")
    return "\n".join(lines)


def frame_text(frame, fmt: str) -> str:
    """A query's result as text (aligned columns), csv or json (records)."""
    import json

    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")),
                          indent=2) + "\n"
    if frame.empty:
        return "(no rows)\n" if len(frame.columns) else "(no result)\n"
    return frame.to_string(index=False) + "\n"


