"""The dashboard's tables, computed vectorised from trial rows (any source: run and
suite folders, or a store, as long as it gives the rows compare_load.read_input gives).

A *series* is one configuration (schema.match_columns(): the identity and the device
name) on one machine (`host`): a nightly's value for it over time. A *run* gives one
point of it: the median of the run's ok trials of the metric (excluded and throttled
trials left out, as history does) and the 95% CI of that median (stats.median_ci's
order statistics, empty for fewer than 6 trials). A --find-max-qps search's point is
its max QPS. Everything is per-column numpy/pandas work on the rows; only the
per-unique-value texts (keys, times) go through Python.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.results import schema
from gpubench.results.compare_format import config_label
from gpubench.results.summary import kept
from gpubench.stats import median_ci_rank

THR = "throughput_samples_per_s"
# Run facts whose change is marked on a series' time axis: column, how it is named.
ENV_MARKS = (("driver_version", "driver"), ("cuda_version", "CUDA"),
             ("cudnn_version", "cuDNN"), ("framework_version", "framework"))
RUN_FACTS = ("host", "driver_version", "cuda_version", "cudnn_version", "framework",
             "framework_version", "gpubench_version", "git_commit", "suite_id", "device_name")


def needed_columns(metric: str = THR) -> Tuple[str, ...]:
    """The trial columns tables() reads (a store reads no other: read_input's columns)."""
    return (*schema.match_columns(), "host", "run_id", "source", "status", "excluded",
            "started_utc", "scenario", "target_qps", "max_qps", metric, "energy_j", "samples",
            *RUN_FACTS)


@dataclass
class Tables:
    series: pd.DataFrame  # one row per series: id, page, label, host, workload, backend, mode
    runs: pd.DataFrame    # one row per (series, run): value, ci_low, ci_high, trials, facts
    values: pd.DataFrame  # the ok trials: series, run, value (the runs' spread)


def key_texts(column: pd.Series) -> np.ndarray:
    """schema.key_text of every cell, computed once per distinct value."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = np.array([schema.key_text(u) for u in uniques] + [""], dtype=object)
    return texts[codes]  # the sentinel -1 takes the last: ""


def _started(trials: pd.DataFrame) -> pd.Series:
    if "started_utc" not in trials.columns:
        return pd.Series(pd.NaT, index=trials.index, dtype="datetime64[ns, UTC]")
    codes, uniques = pd.factorize(trials["started_utc"], use_na_sentinel=True)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), utc=True, errors="coerce",
                            format="ISO8601")
    values = np.append(parsed.to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT"))
    return pd.Series(pd.to_datetime(values[codes], utc=True), index=trials.index)


def _run_stats(rid: np.ndarray, values: np.ndarray, n_runs: int) -> Dict[str, np.ndarray]:
    """Per run id (0..n_runs-1): count, median and the order-statistics 95% CI of the
    median of `values` (finite values only)."""
    order = np.lexsort((values, rid))
    x, r = values[order], rid[order]
    present, start, count = np.unique(r, return_index=True, return_counts=True)
    mid = start + count // 2
    median = np.where(count % 2 == 1, x[mid], (x[mid - 1] + x[np.minimum(mid, len(x) - 1)]) / 2)
    ks = {int(n): (median_ci_rank(int(n)) or 0) for n in np.unique(count)}
    k = np.array([ks[int(n)] for n in count], dtype=int)
    has = k > 0
    low = np.where(has, x[np.clip(start + k - 1, 0, len(x) - 1)], np.nan)
    high = np.where(has, x[np.clip(start + count - k, 0, len(x) - 1)], np.nan)
    out = {name: np.full(n_runs, np.nan) for name in ("median", "ci_low", "ci_high")}
    out["trials"] = np.zeros(n_runs, dtype=int)
    out["median"][present], out["ci_low"][present], out["ci_high"][present] = median, low, high
    out["trials"][present] = count
    return out


def _searches(trials: pd.DataFrame, rid: np.ndarray, n_runs: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per run: whether it is a --find-max-qps search (server rows, no target rate) and
    its max QPS (its last probe's)."""
    searched = np.zeros(n_runs, dtype=bool)
    found = np.full(n_runs, np.nan)
    if not {"scenario", "target_qps", "max_qps"} <= set(trials.columns):
        return searched, found
    server = (trials["scenario"] == "server").to_numpy()
    if not server.any():
        return searched, found
    part = pd.DataFrame({"rid": rid[server],
                         "target": pd.to_numeric(trials["target_qps"], errors="coerce")[server],
                         "max_qps": pd.to_numeric(trials["max_qps"], errors="coerce")[server]})
    g = part.groupby("rid")
    no_target = g["target"].apply(lambda s: s.isna().all())
    last = g["max_qps"].apply(lambda s: s.dropna().iloc[-1] if s.notna().any() else np.nan)
    searched[no_target.index.to_numpy()] = no_target.to_numpy()
    found[last.index.to_numpy()] = last.to_numpy()
    return searched, np.where(searched, found, np.nan)


def page_name(key: Sequence[str]) -> str:
    """A series' page: stable across rebuilds (a hash of its key), readable."""
    digest = hashlib.sha1("\x1f".join(key).encode()).hexdigest()[:10]
    words = "-".join(k for k in key[:3] if k)
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in words)[:48]
    return f"{slug}-{digest}.html"


def tables(trials: pd.DataFrame, metric: str = THR) -> Tables:
    """The series, runs and values of `trials` (read_input's rows)."""
    t = trials.reset_index(drop=True)
    key_cols = list(schema.match_columns()) + ["host"]
    keys = pd.DataFrame({c: key_texts(t[c]) if c in t.columns else np.full(len(t), "", object)
                         for c in key_cols})
    sid = keys.groupby(key_cols, sort=False).ngroup().to_numpy()
    run_text = key_texts(t["run_id"]) if "run_id" in t.columns else np.full(len(t), "", object)
    if "source" in t.columns:
        run_text = np.where(run_text == "", t["source"].astype(str).to_numpy(), run_text)
    run_key = pd.DataFrame({"s": sid, "r": run_text})
    rid = run_key.groupby(["s", "r"], sort=False).ngroup().to_numpy()
    n_runs = int(rid.max()) + 1 if len(rid) else 0

    value = pd.to_numeric(t[metric], errors="coerce").to_numpy(float) if metric in t.columns \
        else np.full(len(t), np.nan)
    ok = (t["status"].eq("ok") & kept(t)).to_numpy() & np.isfinite(value)
    stats = _run_stats(rid[ok], value[ok], n_runs)
    searched, max_qps = _searches(t, rid, n_runs)

    first = np.unique(rid, return_index=True)[1]  # each run's first row
    started = _started(t)
    runs = pd.DataFrame({
        "run": np.arange(n_runs), "series": sid[first], "run_id": run_text[first],
        "started": started.groupby(rid).min().reindex(range(n_runs)).to_numpy(),
        "value": np.where(searched, max_qps, stats["median"]),
        "ci_low": np.where(searched, np.nan, stats["ci_low"]),
        "ci_high": np.where(searched, np.nan, stats["ci_high"]),
        "trials": stats["trials"], "searched": searched, "order": first,
        "status": t["status"].astype(str).to_numpy()[first],
        "source": t["source"].astype(str).to_numpy()[first] if "source" in t.columns else "",
    })
    runs["started"] = pd.to_datetime(runs["started"], utc=True)
    for c in RUN_FACTS:
        runs[c] = key_texts(t[c])[first] if c in t.columns else ""
    _fill_times(runs)

    series = keys.iloc[np.unique(sid, return_index=True)[1]].reset_index(drop=True)
    series.insert(0, "series", np.arange(len(series)))
    series["label"] = [config_label(row) for _, row in series.iterrows()]
    series["page"] = [page_name(tuple(row)) for row in series[key_cols].itertuples(index=False)]
    values = pd.DataFrame({"series": sid[ok], "run": rid[ok], "value": value[ok]})
    return Tables(series, runs, values)


def _fill_times(runs: pd.DataFrame) -> None:
    """A run without started_utc (schema 1) takes its folder's time, as history does."""
    missing = runs["started"].isna()
    if not missing.any():
        return
    from gpubench.results.history import _folder_time

    cache: Dict = {}
    runs.loc[missing, "started"] = [
        _folder_time(source, run_id, cache)
        for source, run_id in runs.loc[missing, ["source", "run_id"]].itertuples(index=False)]
    runs["started"] = pd.to_datetime(runs["started"], utc=True)


def env_changes(runs: pd.DataFrame) -> pd.DataFrame:
    """Per series, where a run's driver / CUDA / cuDNN / framework version differs from
    the run before it (both known): series, started, what (e.g. `driver 535.1 → 550.2`)."""
    ordered = runs.sort_values(["series", "started", "order"], kind="stable")
    out: List[pd.DataFrame] = []
    for column, name in ENV_MARKS:
        cur = ordered[column]
        prev = ordered.groupby("series")[column].shift()
        hit = prev.notna() & (cur != prev) & (cur != "") & (prev != "")
        if hit.any():
            part = ordered.loc[hit, ["series", "started", "run_id"]].copy()
            part["what"] = name + " " + prev[hit].astype(str) + " → " + cur[hit].astype(str)
            out.append(part)
    if not out:
        return pd.DataFrame(columns=["series", "started", "run_id", "what"])
    return pd.concat(out).sort_values(["series", "started"], kind="stable").reset_index(drop=True)
