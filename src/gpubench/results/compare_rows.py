"""What compare says beside a verdict, per side of a match: which trials it leaves out
(contended, excluded), the medians of energy and clocks, and the notes on a side's rows
(no ok trial, mixed environments, where a bandwidth came from)."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import pandas as pd

# Environment columns whose mixing within one side of a match is worth a note.
WATCHED_ENV = ("driver_version", "cuda_version", "cudnn_version", "framework_version", "host")
# The columns of a side's rows this module reads (compare cuts its frames to READS).
READS = ("status", "error", "sm_clock_mhz", "throttled", "contended", "excluded",
         "mem_bw_source") + WATCHED_ENV
BANDWIDTH_SOURCES = {"analytic": "the model (bytes the workload moves / time), not measured",
                     "gpm": "measured (GPM DRAM bandwidth)",
                     "util_estimate": "estimated (NVML memory utilisation x peak)"}


def median(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else float("nan")


def texts(values: pd.Series) -> List[str]:
    """The distinct values present, as sorted text (empty ones left out)."""
    return sorted({str(v) for v in values.to_numpy(dtype=object)
                   if v is not None and not (isinstance(v, float) and np.isnan(v))})


def _true(v: object) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def change_pct(base: float, new: float) -> float:
    return (new / base - 1.0) * 100.0 if base and np.isfinite(base) and np.isfinite(new) else float("nan")


def throttled_frac(ok: pd.DataFrame) -> float:
    flags = [v for v in ok["throttled"].to_numpy(dtype=object)
             if v is not None and not (isinstance(v, float) and np.isnan(v))] \
        if "throttled" in ok.columns else []
    return float(np.mean([_true(v) for v in flags])) if flags else float("nan")


def contended(frame: pd.DataFrame) -> np.ndarray:
    """Per row: whether it is marked contended (True, "True", 1; empty is not)."""
    if "contended" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["contended"].map(_true).to_numpy(dtype=bool)


def excluded(frame: pd.DataFrame) -> np.ndarray:
    """Per row: why it is left out of the statistics (the `excluded` column, e.g.
    "throttled"), "" when kept."""
    if "excluded" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    return frame["excluded"].map(
        lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
    ).to_numpy(dtype=object)


def excluded_note(name: str, reasons: np.ndarray, kept: bool) -> List[str]:
    """`new: 2 throttled trials left out (--include-throttled keeps them)`, per reason."""
    notes = []
    for reason in sorted(set(r for r in reasons if r)):
        n = int((reasons == reason).sum())
        notes.append(f"{name}: {n} {reason} trial{'s' if n != 1 else ''} "
                     + ("kept (--include-throttled)" if kept else
                        "left out (--include-throttled keeps them)"))
    return notes


def side_note(name: str, rows: pd.DataFrame, ok: pd.DataFrame, by: Optional[str]) -> List[str]:
    notes = []
    if len(rows) and ok.empty:
        statuses = texts(rows["status"])
        errors = rows["error"].dropna().astype(str) if "error" in rows.columns else []
        tail = errors.iloc[-1].strip().splitlines()[-1][:120] if len(errors) and errors.iloc[-1].strip() else ""
        notes.append(f"{name}: no ok trial ({'/'.join(statuses)}{': ' + tail if tail else ''})")
    for column in WATCHED_ENV:
        if column != by and column in ok.columns:
            values = texts(ok[column])
            if len(values) > 1:
                notes.append(f"{name} mixes {column} {', '.join(values)}")
    return notes


def bandwidth_note(name: str, ok: pd.DataFrame) -> List[str]:
    if "mem_bw_source" not in ok.columns:
        return []
    sources = texts(ok["mem_bw_source"])
    return [f"{name} GB/s: " + ", ".join(BANDWIDTH_SOURCES.get(s, s) for s in sources)] if sources else []
