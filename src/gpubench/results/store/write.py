"""Writing gathered rows into a store (layout.py): under the store's lock, the runs it
already holds are left out, each table's new rows are written one file per partition
(`.<part>.parquet.tmp`, fsynced, then renamed), the runs files last. A failure before
the renames leaves the store as it was; a kill leaves at most a temporary file, which
no reader takes and the next writer removes."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.store import layout

# Tests only: after the temporary files are written, touch this path and wait (to be
# killed between writing and renaming); wait this many seconds after reading which runs
# the store holds (two writers started together then overlap, unless the lock orders them).
PAUSE_HOOK = "GPUBENCH_STORE_TEST_PAUSE"
DELAY_HOOK = "GPUBENCH_STORE_TEST_DELAY_S"


@dataclass
class Added:
    runs: int
    trials: int
    samples: int
    skipped: int
    files: int


@contextmanager
def locked(store: Path) -> Iterator[None]:
    """The store's writer lock (flock on STORE/.lock, exclusive), held until the block
    ends; a writer killed while holding it releases it with its process."""
    try:
        fd = os.open(Path(store) / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot lock the store {store}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def parquet_error(path: Path, exc: Exception) -> UserError:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path}: corrupt Parquet file ({line}); move it out of the store to "
                     "read the rest")


def stored_run_ids(store: Path) -> Set[str]:
    """The run ids the store's runs files hold (a corrupt file: a UserError naming it)."""
    pq = layout.need("pyarrow.parquet")

    ids: Set[str] = set()
    for path in layout.table_files(store, "runs"):
        try:
            column = pq.ParquetFile(path).read(columns=["run_id"]).column("run_id")
        except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError, ...
            raise parquet_error(path, exc) from None
        ids.update(str(v) for v in column.to_pylist())
    return ids


BOOL_COLUMNS = ("throttled", "contended", "reached", "accuracy_ok", "latency_bound_met")
TEXT = set(schema.TEXT_COLUMNS) | set(BOOL_COLUMNS) | {
    "source", "statuses", "added_utc", "fingerprint_json", "config_json", "run_json",
    "month", "machine"}


def arrow_table(frame: pd.DataFrame):
    """`frame` as Arrow: text (and true/false) columns as strings, the others float64
    (a column holding anything that is not a number, an unknown extra: as text)."""
    pa = layout.need("pyarrow")

    arrays = []
    for column in frame.columns:
        values = frame[column]
        if column not in TEXT and not pd.api.types.is_bool_dtype(values):
            numbers = values if pd.api.types.is_numeric_dtype(values) else \
                pd.to_numeric(values, errors="coerce")
            if numbers.notna().sum() == values.notna().sum():
                arrays.append(pa.array(numbers.astype("float64"), type=pa.float64(),
                                       from_pandas=True))
                continue
        text = values.astype(object).where(values.notna(), None)
        try:  # strings and nothing else: at Arrow's speed
            arrays.append(pa.array(text, type=pa.string(), from_pandas=True))
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # True/False, numbers in a text column
            arrays.append(pa.array([v if v is None or isinstance(v, str) else str(v)
                                    for v in text], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def _write_temp(final: Path, frame: pd.DataFrame) -> Path:
    pq = layout.need("pyarrow.parquet")

    final.parent.mkdir(parents=True, exist_ok=True)
    table = arrow_table(frame)
    temp = layout.temp_path(final)
    try:
        with open(temp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise
    return temp


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_rows(trials: pd.DataFrame, runs: pd.DataFrame, samples: pd.DataFrame,
             stored: Set[str]) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """The rows not yet in the store: runs whose id it lacks, each taken from the first
    source that had it (a run folder read beside its suite counts once), with their
    trial rows (repeats dropped as the folder reader drops them) and samples. Also how
    many runs were skipped (in the store already)."""
    if runs.empty:
        return trials, runs, samples, 0
    first = runs.drop_duplicates("run_id", keep="first")
    fresh = first[[run_id not in stored for run_id in first["run_id"]]]  # (isin: slow on a big set)
    skipped = len(first) - len(fresh)
    source_of = dict(zip(fresh["run_id"], fresh["source"]))
    keep = trials["run_id"].map(source_of).eq(trials["source"])
    trials = trials[keep]
    keys = [c for c in schema.dedup_columns() if c in trials.columns]
    trials = trials.drop_duplicates(subset=keys, keep="first")
    if len(samples):
        samples = samples[samples["run_id"].isin(set(fresh["run_id"]))]
        samples = samples.drop_duplicates(subset=[c for c in layout.dedup_columns("samples")
                                                  if c in samples.columns])
    return trials, fresh, samples, skipped


def with_partitions(frame: pd.DataFrame, runs: pd.DataFrame, by_host: bool) -> pd.DataFrame:
    """`frame` with its rows' month (their run's) and machine (the row's host where it
    has one, else its run's)."""
    where = runs.set_index("run_id")[["month", "machine"]]
    frame = frame.assign(month=frame["run_id"].map(where["month"]).fillna(layout.UNKNOWN_MONTH))
    machine = frame["run_id"].map(where["machine"]).fillna("unknown")
    if by_host and "host" in frame.columns:
        host = frame["host"].map(lambda h: layout.safe_machine(h) if schema.key_text(h) else "")
        machine = host.where(host.ne(""), machine)
    return frame.assign(machine=machine)


def write(store: Path, trials: pd.DataFrame, runs: pd.DataFrame, samples: pd.DataFrame) -> Added:
    """Adds the runs the store lacks (see the module docstring)."""
    store = layout.open_store(store)
    with locked(store):
        for leftover in layout.leftovers(store):  # no writer is writing now: a dead one's
            try:
                leftover.unlink()
            except OSError:
                pass
        trials, runs, samples, skipped = new_rows(trials, runs, samples, stored_run_ids(store))
        time.sleep(float(os.environ.get(DELAY_HOOK) or 0))
        if runs.empty:
            return Added(0, 0, 0, skipped, 0)
        runs = runs.assign(added_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))[
            list(layout.RUN_COLUMNS) + list(layout.PARTITIONS)]
        tables: List[Tuple[str, pd.DataFrame]] = [
            ("trials", with_partitions(trials, runs, by_host=True)),
            ("samples", with_partitions(samples, runs, by_host=False) if len(samples) else samples),
            ("runs", runs)]
        part = layout.part_name()
        written: List[Tuple[Path, Path]] = []  # (temporary, final), runs last
        try:
            for table, frame in tables:
                if frame.empty:
                    continue
                for (month, machine), rows in frame.groupby(["month", "machine"], sort=True):
                    final = layout.partition_dir(store, table, month, machine) / f"{part}{layout.SUFFIX}"
                    written.append((_write_temp(final, rows.drop(columns=["month", "machine"])), final))
            _pause_for_tests()
            for temp, final in written:
                os.replace(temp, final)
        except BaseException as exc:
            for temp, _ in written:
                try:
                    temp.unlink()
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise UserError(f"cannot write to the store {store}: {exc.strerror or exc}"
                                + (f" ({exc.filename})" if exc.filename else "")) from None
            raise
        for folder in {final.parent for _, final in written}:
            _fsync_dir(folder)
        return Added(len(runs), len(trials), len(samples), skipped, len(written))


def _pause_for_tests() -> None:
    path = os.environ.get(PAUSE_HOOK)
    if path:
        Path(path).write_text(str(os.getpid()))
        time.sleep(60)
