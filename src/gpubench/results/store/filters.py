"""Which runs a command reads: `--since`, `--until`, `--machine` and `--where
COLUMN=VALUE`, the same for a results store and for run and suite folders.

- `--since DATE` / `--until DATE`: the run's start time (`started_utc`, UTC). A date
  alone (`2026-03-01`) in `--until` takes in the whole day. A run without a start time
  (schema 1 rows in a folder) is kept, as history's --since always kept it.
- `--machine HOST` (repeatable): the rows' `host`, compared as the store names its
  partition folders (characters other than [A-Za-z0-9._-] read as `_`).
- `--where COLUMN=VALUE` (repeatable): a column of trials.csv equal to VALUE, compared
  as a key is (`64` and `64.0` alike, an empty VALUE for an empty cell). The same
  column given twice takes either value; different columns must all hold. Two columns
  more than trials.csv has: `date` (YYYY-MM-DD) and `month` (YYYY-MM) of the run's
  start, so that `--where date=2026-03-01` picks one night.

Applied here to a frame of trial rows (folders); results/store/read.py turns the same
`Filters` into SQL over the store's Parquet files (months and machines pruned first).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.store.layout import safe_machine as machine_name

PSEUDO_COLUMNS = ("date", "month")  # of the run's start time
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
TICK = pd.Timedelta(microseconds=1)


def where_columns() -> Tuple[str, ...]:
    """The columns --where may name: trials.csv's (as declared now), `source` and the
    pseudo columns."""
    return tuple(dict.fromkeys(schema.trial_columns() + ("source",) + PSEUDO_COLUMNS))


def numeric_columns() -> Tuple[str, ...]:
    from gpubench.results.reader import NUMERIC_COLUMNS

    extra = tuple(c for c in schema.CONFIGURATION_COLUMNS
                  if c not in schema.VERSIONED_CONFIGURATION_COLUMNS
                  and c not in schema.TEXT_COLUMNS)
    return NUMERIC_COLUMNS + extra


def check_column(column: str, flag: str = "--where", known: Optional[Sequence[str]] = None) -> None:
    known = where_columns() if known is None else tuple(known)
    if column in known:
        return
    close = difflib.get_close_matches(column, known, n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else \
        "columns are trials.csv's (docs/results.md), source, date and month"
    raise UserError(f"{flag} {column}: no such column ({hint})")


def parse_where(text: str, flag: str = "--where") -> Tuple[str, str]:
    """`COLUMN=VALUE` -> (column, value), the column checked."""
    column, sep, value = str(text).partition("=")
    column = column.strip()
    if not sep or not column:
        raise UserError(f"{flag} {text!r}: expected COLUMN=VALUE (e.g. driver_version=550.54.15)")
    check_column(column, flag)
    value = value.strip()
    if column in numeric_columns() and value:
        try:
            float(value)
        except ValueError:
            raise UserError(f"{flag} {text!r}: {column} holds numbers, {value!r} is not one") from None
    if column == "date" and not _DATE.match(value):
        raise UserError(f"{flag} {text!r}: a date is YYYY-MM-DD")
    if column == "month" and not _MONTH.match(value):
        raise UserError(f"{flag} {text!r}: a month is YYYY-MM")
    return column, value


def parse_time(text: str, flag: str) -> pd.Timestamp:
    found = pd.to_datetime(text, utc=True, errors="coerce")
    if pd.isna(found):
        raise UserError(f"{flag} {text!r}: not a date (expected e.g. 2026-01-31 or "
                        "2026-01-31T02:00:00Z)")
    return found


@dataclass(frozen=True)
class Filters:
    """What to read; empty: everything."""
    since: Optional[str] = None
    until: Optional[str] = None
    machines: Tuple[str, ...] = ()
    where: Tuple[Tuple[str, str], ...] = ()  # (column, value), checked by parse_where

    @classmethod
    def parse(cls, since: Optional[str] = None, until: Optional[str] = None,
              machines: Iterable[str] = (), where: Iterable[str] = ()) -> "Filters":
        found = cls(since, until, tuple(str(m).strip() for m in machines if str(m).strip()),
                    tuple(parse_where(w) for w in where))
        found.time_range()  # the dates are checked now, not when the rows are read
        return found

    def __bool__(self) -> bool:
        return bool(self.since or self.until or self.machines or self.where)

    def plus(self, where: Iterable[str], flag: str = "--where") -> "Filters":
        """These filters and more COLUMN=VALUE conditions (one side of compare)."""
        more = tuple(parse_where(w, flag) for w in where)
        return Filters(self.since, self.until, self.machines, self.where + more)

    def time_range(self) -> Tuple[Optional[pd.Timestamp], Optional[pd.Timestamp]]:
        """[start, end): --since's instant, and --until's (a date alone: its day's end)."""
        start = parse_time(self.since, "--since") if self.since else None
        end = None
        if self.until:
            end = parse_time(self.until, "--until")
            end = end + pd.Timedelta(days=1) if _DATE.match(self.until.strip()) else end + TICK
        if start is not None and end is not None and end <= start:
            raise UserError(f"--until {self.until} is before --since {self.since}: no run between")
        return start, end

    def by_column(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for column, value in self.where:
            out.setdefault(column, []).append(value)
        return out

    def describe(self) -> str:
        parts = [f"since {self.since}" if self.since else "", f"until {self.until}" if self.until else "",
                 f"machine {'|'.join(self.machines)}" if self.machines else ""]
        parts += [f"{c}={'|'.join(v)}" for c, v in self.by_column().items()]
        return ", ".join(p for p in parts if p)


def pseudo_range(column: str, value: str) -> Tuple[pd.Timestamp, pd.Timestamp]:
    """date=D or month=M as a [start, end) range of start times."""
    if column == "date":
        start = pd.Timestamp(value, tz="UTC")
        return start, start + pd.Timedelta(days=1)
    start = pd.Timestamp(value + "-01", tz="UTC")
    return start, start + pd.offsets.MonthBegin(1)


def months_of(filters: Filters) -> Tuple[Optional[str], Optional[str], Optional[List[str]]]:
    """The month partitions the filters can touch: (first, last, exactly these or None)."""
    start, end = filters.time_range()
    first = f"{start:%Y-%m}" if start is not None else None
    last = f"{end - TICK:%Y-%m}" if end is not None else None
    exact = None
    wanted = filters.by_column()
    if "month" in wanted or "date" in wanted:
        months = set(wanted.get("month", [])) if "month" in wanted else None
        if "date" in wanted:
            dates = {d[:7] for d in wanted["date"]}
            months = dates if months is None else months & dates
        exact = sorted(months)
    return first, last, exact


def run_times(frame: pd.DataFrame) -> pd.Series:
    if "started_utc" not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame["started_utc"], utc=True, errors="coerce", format="ISO8601")


def column_matches(frame: pd.DataFrame, column: str, values: Sequence[str]) -> pd.Series:
    """Per row: whether `column` holds one of `values` (see the module docstring)."""
    if column in PSEUDO_COLUMNS:
        times = run_times(frame)
        hit = pd.Series(False, index=frame.index)
        for value in values:
            start, end = pseudo_range(column, value)
            hit |= (times >= start) & (times < end)
        return hit
    if column not in frame.columns:
        return pd.Series(all(v == "" for v in values), index=frame.index)
    cells = frame[column]
    if column in numeric_columns():
        numbers = pd.to_numeric(cells, errors="coerce")
        hit = pd.Series(False, index=frame.index)
        for value in values:
            hit |= numbers.isna() if value == "" else numbers.eq(float(value))
        return hit
    text = cells.astype(object).where(cells.notna(), "").astype(str).str.strip()
    return text.isin([v.strip() for v in values])


def apply(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows of `frame` the filters select (trial rows of folders)."""
    if not filters or frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    start, end = filters.time_range()
    if start is not None or end is not None:
        times = run_times(frame)
        timed = times.notna()
        if start is not None:
            keep &= ~timed | (times >= start)
        if end is not None:
            keep &= ~timed | (times < end)
    if filters.machines:
        wanted = {machine_name(m) for m in filters.machines}
        hosts = frame["host"] if "host" in frame.columns else pd.Series("", index=frame.index)
        keep &= hosts.map(machine_name).isin(wanted)
    for column, values in filters.by_column().items():
        keep &= column_matches(frame, column, values)
    return frame[keep]


def nothing_left(label: str, filters: Filters) -> UserError:
    return UserError(f"{label}: no trial row matches {filters.describe()}")
