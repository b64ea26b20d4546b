"""A run of ranks writes one row per rank and trial, each with its own device's
telemetry, but the trial is measured once: on rank 0's clock, every rank in lockstep,
so every rank's samples/s is the same figure and the whole run's
(`global_throughput_samples_per_s`) is on every row. Statistics that pooled the rows
would count each trial N times and narrow their intervals by sqrt(N) for nothing; they
take one row per trial instead, rank 0's (or the lowest rank that finished it)."""

from __future__ import annotations

import pandas as pd

# What makes rows the same trial of a run (a run's worker processes: --processes).
TRIAL_KEY = ("run_id", "process", "trial")


def one_row_per_trial(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with a trial's rows from several ranks reduced to its lowest rank's row;
    rows of a plain run (no rank column, or one rank) are returned as they are, in order."""
    if frame.empty or "rank" not in frame.columns:
        return frame
    ranks = pd.to_numeric(frame["rank"], errors="coerce")
    if ranks.nunique(dropna=True) < 2:
        return frame
    key = [c for c in TRIAL_KEY if c in frame.columns]
    filled = frame[key].astype(object).where(frame[key].notna(), "")
    order = ranks.fillna(0).to_numpy().argsort(kind="stable")
    first = ~filled.iloc[order].duplicated(keep="first")
    keep = pd.Series(False, index=frame.index)
    keep.iloc[order[first.to_numpy()]] = True
    return frame[keep.to_numpy()]
