"""summary.csv: one row per configuration, computed from trials: the statistics over its
ok trials that were not left out (`excluded` empty; schema 7: a throttled trial under
--on-throttle exclude, rerun or fail is kept in trials.csv but left out here, in the
run's printed table and in history). `n_trials` counts every row, `n_ok` the trials the
statistics rest on."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from gpubench.results import schema
from gpubench.results.rank_rows import one_row_per_trial
from gpubench.results.schema import DESCRIBED_METRICS, MEDIAN_METRICS, STAT_NAMES
from gpubench.stats import describe

# A time-to-accuracy run's result (its last epoch row) and its final test accuracy;
# empty for other scenarios. The output checks' columns likewise.
RESULT_COLUMNS = ("test_accuracy", "time_to_accuracy_s", "energy_to_accuracy_j",
                  "epochs_to_accuracy", "reached",
                  "max_qps",  # a server --find-max-qps search's result, on its last probe
                  "max_goodput_qps",  # the same of a --mode generate server (on goodput)
                  # the output checks (the same on every row of a run): --check-accuracy, exec
                  "top1_agreement", "max_abs_diff", "accuracy_ok")
STAT_COLUMNS = (
    ("n_trials", "n_ok", "status", "stop_reason")
    + tuple(f"{m}_{s}" for m in DESCRIBED_METRICS for s in STAT_NAMES)
    + tuple(f"{m}_median" for m in MEDIAN_METRICS)
    + ("throttled_any", "latency_bound_met_all")
    + tuple(f"{c}_last" for c in RESULT_COLUMNS) + ("error",)
)


def summary_columns() -> tuple:
    return schema.group_columns() + STAT_COLUMNS


SUMMARY_COLUMNS = summary_columns()  # as declared at import


def _status(group: pd.DataFrame) -> str:
    statuses = set(group["status"].dropna())
    if "ok" in statuses and len(statuses) == 1:
        return "ok"
    for bad in ("failed", "timeout", "unsupported"):
        if bad in statuses:
            return bad
    return "ok" if "ok" in statuses else "failed"


def _flags(frame: pd.DataFrame, column: str) -> pd.Series:
    """A true/false column's known values as booleans (CSV reads them as text)."""
    if column not in frame.columns:
        return pd.Series(dtype=bool)
    return frame[column].dropna().astype(str).str.lower().isin(("true", "1", "1.0"))


def kept(frame: pd.DataFrame) -> pd.Series:
    """Per row: whether it enters the statistics (its `excluded` is empty; v6 rows and
    rows without the column all do)."""
    if "excluded" not in frame.columns:
        return pd.Series(True, index=frame.index)
    text = frame["excluded"].astype(object).where(frame["excluded"].notna(), "")
    return text.astype(str).str.strip().isin(("", "nan", "None"))


def summarize(trials: pd.DataFrame, stop_reason: Optional[str] = None) -> pd.DataFrame:
    """One row per configuration and device in `trials` (statistics over its ok trials;
    a run of ranks on GPUs has a row per rank, each rank its own device)."""
    rows: List[Dict[str, object]] = []
    columns = summary_columns()
    if trials.empty:
        return pd.DataFrame(columns=list(columns))
    groups = list(schema.group_columns())
    for key, group in trials.groupby(groups, dropna=False, sort=False):
        group = one_row_per_trial(group)  # ranks sharing a device (the CPU): a trial once
        ok = group[(group["status"] == "ok") & kept(group)]
        row: Dict[str, object] = dict(zip(groups, key))
        row.update(n_trials=len(group), n_ok=len(ok), status=_status(group),
                   stop_reason=stop_reason)
        for metric in DESCRIBED_METRICS:
            stats = describe(pd.to_numeric(ok[metric], errors="coerce").to_numpy())
            for name in STAT_NAMES:
                row[f"{metric}_{name}"] = stats[name]
        for metric in MEDIAN_METRICS:
            values = pd.to_numeric(ok[metric], errors="coerce").dropna()
            row[f"{metric}_median"] = float(np.median(values)) if len(values) else np.nan
        throttled = ok["throttled"].dropna()
        row["throttled_any"] = bool(throttled.astype(str).str.lower().eq("true").any()) if len(throttled) else np.nan
        met = _flags(ok, "latency_bound_met")  # server: every trial (probe) held its bound
        row["latency_bound_met_all"] = bool(met.all()) if len(met) else np.nan
        for column in RESULT_COLUMNS:  # the run's last value (epoch rows come in order)
            values = ok[column].dropna() if column in ok.columns else ok.iloc[:0, 0]
            row[f"{column}_last"] = values.iloc[-1] if len(values) else np.nan
        errors = group["error"].dropna()
        row["error"] = errors.iloc[-1] if len(errors) else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(columns))
