"""History over a store, its heavy part in DuckDB: one row per run and configuration
(results/history.py's run_values, the same columns and values) computed where the
Parquet files are, so that a fleet's year (100,000 runs, 600,000 trial rows) never comes
into memory as trial rows. What history.run_values does in pandas, said in SQL:

- the configuration: schema.match_columns(by), text trimmed, numbers as numbers (the
  key texts, `64` for 64.0, are made once per configuration afterwards);
- the run: run_id (else the source file), started: the earliest of its rows'
  started_utc, else the runs table's;
- value: the median of the run's ok trials that are kept (`excluded` empty) and hold
  the metric; trials: how many; a --find-max-qps search's value: its max_qps;
- rows repeated across files (layout.dedup_columns) count once.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.compare_load import DERIVED  # energy_j / samples
from gpubench.results.store import layout
from gpubench.results.store.filters import Filters, numeric_columns
from gpubench.results.store.read import TIME, Reader, _nothing

COLUMNS = ["_key", "run_id", "started", "by_value", "value", "trials", "order", "searched"]


def _number(column: str) -> str:
    cell = f'TRY_CAST("{column}" AS DOUBLE)'
    return f"CASE WHEN isnan({cell}) THEN NULL ELSE {cell} END"


def _text(column: str) -> str:
    return f"COALESCE(TRIM(CAST(\"{column}\" AS VARCHAR)), '')"


def _cell(column: str, present: set) -> str:
    if column not in present:
        return "NULL"
    return _number(column) if column in numeric_columns() else _text(column)


def _metric(metric: str, present: set) -> str:
    if metric == DERIVED and DERIVED not in present:
        return (f"CASE WHEN {_number('samples')} > 0 THEN {_number('energy_j')} / "
                f"{_number('samples')} END")
    return _number(metric) if metric in present else "CAST(NULL AS DOUBLE)"


def check_metric(reader: Reader, metric: str, label: str, clause: str, params: List,
                 counts: pd.DataFrame) -> None:
    """compare_load.check_metric's checks, from the counts the runs' query made (and a
    query for the first bad value, only when there is one)."""
    ok, measured, bad = (int(counts[c].sum()) for c in ("n_ok", "n_measured", "n_bad"))
    if not ok:
        statuses = reader.run(f"SELECT status, count(*) FROM trials{clause} GROUP BY 1 "
                              "ORDER BY 2 DESC", params).fetchall()
        raise UserError(f"{label}: no trial with status ok "
                        f"({', '.join(f'{n} {s}' for s, n in statuses)}): nothing to compare")
    if not measured:
        raise UserError(f"{label}: {metric} was not measured in any ok trial")
    if bad:
        m = _metric(metric, set(reader.columns["trials"]))
        source, trial, value = reader.run(
            f"SELECT source, trial, {m} FROM trials{clause}{' AND' if clause else ' WHERE'} "
            f"status = 'ok' AND ({m} <= 0 OR isinf({m})) LIMIT 1", params).fetchone()
        raise UserError(f"{source}: {metric} must be a positive number in ok trials, "
                        f"found {value!r} (trial {trial})")


def run_medians(path: Path, metric: str, by: Optional[str] = None,
                filters: Optional[Filters] = None, label: Optional[str] = None) -> pd.DataFrame:
    """history.run_values over the store at `path` (its docstring; this module's)."""
    from gpubench.results.compare_load import GROUPABLE

    filters = filters or Filters()
    reader = Reader(Path(path), filters)
    label = label or str(path)
    if not reader.view("trials"):
        raise _nothing(reader.store, filters)
    if by is not None and by not in GROUPABLE:
        raise UserError(f"--by {by}: not an identity or environment column "
                        f"(valid: {', '.join(GROUPABLE)})")
    present = set(reader.columns["trials"])
    if metric not in present and metric != DERIVED:
        raise UserError(f"{label}: no column {metric}")
    clause, params = reader.where()
    key = list(schema.match_columns(by))
    keys = ", ".join(f"{_cell(c, present)} AS k{i}" for i, c in enumerate(key))
    groups = ", ".join(f"k{i}" for i in range(len(key)))
    dedup = ", ".join(f'"{c}"' for c in layout.dedup_columns("trials") if c in present)
    needed = [*layout.dedup_columns("trials"), *key, "source", "started_utc", "excluded",
              "scenario", "target_qps", "max_qps", "energy_j", "samples", metric, by or "run_id"]
    columns = ", ".join(f'"{c}"' for c in dict.fromkeys(needed) if c in present)  # read no other
    m = _metric(metric, present)
    kept = (f"{_text('excluded')} IN ('', 'nan', 'None')" if "excluded" in present else "TRUE")
    server = "scenario = 'server'" if "scenario" in present else "FALSE"
    qps = _cell("target_qps", present)
    max_qps = _cell("max_qps", present)
    by_cell = _cell(by, present) if by else "NULL"
    sql = f"""
        WITH rows AS (SELECT {{distinct}} {columns}, filename FROM trials{clause}),
        t AS (SELECT {keys},
                     COALESCE(NULLIF({_text('run_id')}, ''), CAST(source AS VARCHAR)) AS run,
                     {TIME} AS ts, {by_cell} AS by_raw, {m} AS m,
                     (status = 'ok' AND {kept} AND {m} IS NOT NULL) AS ok,
                     status, {server} AS server, {qps} AS qps, {max_qps} AS max_qps, trial,
                     filename
              FROM rows),
        g AS (SELECT {groups}, run, min(ts) AS ts,
                     min(by_raw) FILTER (WHERE by_raw IS NOT NULL
                                         AND CAST(by_raw AS VARCHAR) <> '') AS by_raw,
                     median(m) FILTER (WHERE ok) AS value,
                     count(*) FILTER (WHERE ok) AS trials,
                     count(*) FILTER (WHERE status = 'ok') AS n_ok,
                     count(m) FILTER (WHERE status = 'ok') AS n_measured,
                     count(*) FILTER (WHERE status = 'ok' AND (m <= 0 OR isinf(m))) AS n_bad,
                     bool_or(server) AND count(qps) FILTER (WHERE server) = 0 AS searched,
                     max_by(max_qps, trial) FILTER (WHERE max_qps IS NOT NULL) AS search_value
              FROM t GROUP BY {groups}, run{{by_file}})
        SELECT * FROM g ORDER BY ts NULLS LAST, run"""
    # Rows repeated across files (a writer killed between its renames, its runs added
    # again) are dropped with DISTINCT ON the dedup columns, a second pass only where a
    # run's rows are found in more than one file: the first groups by file too.
    runs = reader.run(sql.format(distinct="", by_file=", filename"), params).df()
    if runs.duplicated([*(f"k{i}" for i in range(len(key))), "run"]).any():
        runs = reader.run(sql.format(distinct=f"DISTINCT ON ({dedup})", by_file=""), params).df()
    if runs.empty:
        raise _nothing(reader.store, filters)
    check_metric(reader, metric, label, clause, params, runs)
    runs["started"] = _run_times(reader, runs)
    return _shaped(runs, key, metric, by)


def _run_times(reader: Reader, runs: pd.DataFrame) -> pd.Series:
    """The runs' start times: their rows' (started_utc), else the runs table's (a
    schema 1 run's rows have none; `store add` took it from its folder or run.json)."""
    started = pd.to_datetime(runs["ts"], utc=True)
    untimed = runs.loc[started.isna(), "run"].astype(str)
    if untimed.empty or not reader.view("runs"):
        return started
    reader.db.register("untimed_runs", pd.DataFrame({"rid": sorted(set(untimed))}))
    found = reader.run(f"SELECT u.rid, min({TIME}) AS ts FROM runs JOIN untimed_runs u "
                       "ON CAST(runs.run_id AS VARCHAR) = u.rid GROUP BY 1", table="runs").df()
    times = pd.Series(pd.to_datetime(found["ts"], utc=True).to_numpy(), index=found["rid"])
    return started.fillna(runs["run"].astype(str).map(times))


def _shaped(runs: pd.DataFrame, key: List[str], metric: str, by: Optional[str]) -> pd.DataFrame:
    """The SQL's rows as history.run_values gives them."""
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    kcols = [f"k{i}" for i in range(len(key))]
    codes = runs.groupby(kcols, dropna=False, sort=False).ngroup().to_numpy()
    firsts = runs.drop_duplicates(kcols)[kcols].itertuples(index=False, name=None)
    texts = [tuple(schema.key_text(v) for v in row) for row in firsts]
    out = pd.DataFrame({"_key": [texts[c] for c in codes], "run_id": runs["run"].astype(str)})
    out["started"] = pd.to_datetime(runs["started"], utc=True)
    raw = runs["by_raw"]
    if by and pd.api.types.is_numeric_dtype(raw):  # 64.0 -> "64", as compare_load.by_labels
        out["by_value"] = raw.map(lambda v: "" if pd.isna(v) else format(v, "g"))
    else:
        out["by_value"] = raw.astype(object).where(raw.notna(), "").astype(str) if by else ""
    searched = runs["searched"].fillna(False).astype(bool)
    search_value = (pd.to_numeric(runs["search_value"], errors="coerce")
                    if metric == "throughput_samples_per_s" else float("nan"))
    out["value"] = pd.to_numeric(runs["value"], errors="coerce").where(~searched, search_value)
    out["trials"] = runs["trials"].astype(int)
    out["order"] = range(len(out))  # ties of start time: by run id (folders: reading order)
    out["searched"] = searched
    return out[COLUMNS]
