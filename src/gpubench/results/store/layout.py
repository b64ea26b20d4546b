"""The results store's layout: what makes a folder a store, where each table's files go,
what they are named, and how a writer takes its turn. The writing side (ingest.py,
write.py), the reading side (read.py) and `gpubench store ls | query` all build on it.

A store is a folder (local or on a shared filesystem):

    STORE/
      store.json                      {"kind": "gpubench-store", "layout": 1}: marks a store
      .lock                           held (flock, exclusive) by a writer while it writes
      trials/month=YYYY-MM/machine=<host>/<part>.parquet    trial rows
      runs/month=YYYY-MM/machine=<host>/<part>.parquet      one row per run
      samples/month=YYYY-MM/machine=<host>/<part>.parquet   telemetry samples (--samples)

- `month` is the run's start (`started_utc`, UTC; `unknown` where a run has none),
  `machine` the row's `host` made safe for a path. The partitions are Hive-style, so
  `read_parquet('STORE/trials/*/*/*.parquet', hive_partitioning = true)` reads them with
  `month` and `machine` as columns (they are not stored in the files) and prunes on them.
- `<part>` is `<utc yyyymmddThhmmss>-<writer host>-<pid>-<8 hex>`. A file is written as
  `.<part>.parquet.tmp` in its folder, fsynced, then renamed to `<part>.parquet`; readers
  take `*.parquet` only, so a temporary file (or a killed writer's leftover) is never read.
  Each `store add` writes one file per table and partition it adds to, and renames its
  runs files last: a run is in the store once its `runs` row is.
- trials: the columns `results.reader.read_trials` returns (schema-current: older
  versions are migrated on the way in), text columns (and the true/false ones, as the
  CSV writes them: "True"/"False") as strings, the others float64, plus `source`: the
  trials file the rows were read from (absolute), as compare_load's `source` is.
- runs (RUN_COLUMNS): run_id (unique in the store), suite_id, started_utc, host,
  device_name, the environment columns (schema_version: the version the run was written
  with), n_trials, statuses ("ok:3,failed:1"), source, added_utc, fingerprint_json,
  config_json, run_json (run.json's fingerprint, config and whole text; empty where a run
  has no run.json), and from the partition month and machine.
- samples: a run's samples.csv rows with its run_id (and process, where it had several).
- Idempotent by run id: a writer, holding the lock, skips runs whose run_id a runs file
  already holds. Readers need no lock; they still drop repeated rows (`dedup_columns`),
  e.g. the trial rows of a writer killed between renaming its trials and runs files,
  added again by the next `store add`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from gpubench.errors import UserError
from gpubench.results import schema

MARKER = "store.json"
KIND = "gpubench-store"
LAYOUT = 1
LOCK = ".lock"
TABLES = ("trials", "runs", "samples")
PARTITIONS = ("month", "machine")
UNKNOWN_MONTH = "unknown"
# The runs table's columns, in order (month and machine come from the partition).
RUN_COLUMNS = (("run_id", "suite_id", "started_utc", "host", "device_name")
               + tuple(c for c in schema.ENVIRONMENT_COLUMNS if c not in ("host", "schema_version"))
               + ("schema_version",  # as the run was written (its rows are migrated)
                  "n_trials", "statuses", "source", "added_utc", "fingerprint_json",
                  "config_json", "run_json"))
SUFFIX = ".parquet"
TEMP_SUFFIX = ".parquet.tmp"


def need(module: str):
    """`module` (pyarrow.parquet, duckdb) imported, or a UserError saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise UserError(f"the results store needs {package}, which is not installed: "
                        f"pip install {package} (or reinstall gpubench)") from None


def is_store(path: Path) -> bool:
    """Whether `path` is a store's folder (it holds a store.json saying so)."""
    try:
        return _marker(Path(path)).get("kind") == KIND
    except (OSError, ValueError):
        return False


def _marker(path: Path) -> dict:
    value = json.loads((path / MARKER).read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def open_store(path: Path) -> Path:
    """`path` as a store to read or write; a folder that is not one is a UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a gpubench store (no such folder)")
    if not (path / MARKER).is_file():
        raise UserError(f"{path} is not a gpubench store (no {MARKER})")
    try:
        marker = _marker(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path / MARKER}: corrupt store marker ({exc})") from None
    if marker.get("kind") != KIND:
        raise UserError(f"{path} is not a gpubench store ({MARKER} has kind "
                        f"{marker.get('kind')!r}, not {KIND!r})")
    layout = marker.get("layout")
    if not isinstance(layout, int) or layout > LAYOUT:
        raise UserError(f"{path}: a store of layout {layout!r}, newer than this gpubench reads "
                        f"({LAYOUT}); upgrade gpubench")
    return path


def create_store(path: Path) -> Path:
    """Opens the store at `path`, making it first where nothing is there (or an empty
    folder). A folder holding anything else is refused: a store is never made on top
    of other files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: a file, not a folder for a store")
    # dot files aside: another writer's marker on its way (.store.json.*.tmp), its .lock
    if path.is_dir() and not (path / MARKER).exists() and any(
            not p.name.startswith(".") for p in path.iterdir()):
        raise UserError(f"{path} is not a gpubench store (no {MARKER}) and not empty: "
                        "refusing to make a store in it")
    if not (path / MARKER).exists():
        from gpubench.atomic_io import write_text_atomic

        try:
            path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path / MARKER, json.dumps({"kind": KIND, "layout": LAYOUT}) + "\n")
        except OSError as exc:
            raise UserError(f"cannot make a store at {path}: {exc.strerror or exc}") from None
    return open_store(path)


def safe_machine(host: object) -> str:
    """A host name as a partition's value: [A-Za-z0-9._-], anything else `_`."""
    text = "" if host is None or host != host else str(host)  # None, NaN: unknown
    return re.sub(r"[^A-Za-z0-9._-]", "_", text.strip()) or "unknown"


_MONTH = re.compile(r"^(\d{4})-?(\d{2})")


def month_of(started_utc: object) -> str:
    """`YYYY-MM` of an ISO start time (2025-01-31T02:00:00Z, or 20250131T020000Z as
    folders are named); `unknown` for none."""
    text = "" if started_utc is None or started_utc != started_utc else str(started_utc)
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        return UNKNOWN_MONTH
    return f"{m.group(1)}-{m.group(2)}"


def partition_dir(store: Path, table: str, month: str, machine: str) -> Path:
    return Path(store) / table / f"month={month}" / f"machine={machine}"


def part_name(writer_host: Optional[str] = None, pid: Optional[int] = None) -> str:
    """A new file's name (no suffix): when, which host and process wrote it, and 8 random
    hex digits, so that no two writers ever pick the same."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    host = safe_machine(writer_host if writer_host is not None else socket.gethostname())
    return f"{stamp}-{host}-{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}"


def temp_path(final: Path) -> Path:
    """Where `final` (a .parquet) is written before its rename: a dot file, not *.parquet."""
    return final.with_name(f".{final.stem}{TEMP_SUFFIX}")


def table_files(store: Path, table: str) -> List[Path]:
    """The visible files of `table` (temporary files and leftovers are never listed)."""
    return sorted(p for p in (Path(store) / table).glob(f"month=*/machine=*/*{SUFFIX}")
                  if not p.name.startswith("."))


def scan_sql(files: Sequence[Path], filename: bool = False) -> str:
    """DuckDB's scan of `files` (one table's): Hive partitions as text columns (a machine
    named 123 stays "123"), files of older schema versions joined by column name; with
    `filename`, a column naming each row's file."""
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return (f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
            + ("filename = true, " if filename else "")
            + "hive_types = {'month': VARCHAR, 'machine': VARCHAR})")


def repeats_sql(files: Sequence[Path], table: str) -> str:
    """A query giving a row when `table`'s files repeat a run's rows: a run's rows of one
    partition in two files (a writer killed between its renames, its runs added again).
    Only then need a reader drop repeated rows (dedup_columns): the check costs a scan
    of two columns, the de-duplication a window over every column of the key."""
    by = "run_id" if table == "runs" else "run_id, machine"
    return (f"SELECT 1 FROM {scan_sql(files, filename=True)} GROUP BY {by} "
            "HAVING count(DISTINCT filename) > 1 LIMIT 1")


def leftovers(store: Path) -> List[Path]:
    """Temporary files of writers that died before their rename (remove only while
    holding the lock: then no writer is writing one)."""
    return sorted((Path(store)).glob(f"*/month=*/machine=*/.*{TEMP_SUFFIX}"))


def dedup_columns(table: str) -> Tuple[str, ...]:
    """The columns that make a row of `table` the same row (readers keep one of each)."""
    if table == "trials":
        return schema.dedup_columns()
    if table == "runs":
        return ("run_id",)
    if table == "samples":
        return ("run_id", "process", "device_index", "t_s")
    raise ValueError(f"unknown store table {table!r}")
