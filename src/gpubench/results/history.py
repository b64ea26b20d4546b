"""History: where a configuration's results changed over many runs (nightly CI keeps
them for months). A pure function from result tables to change points; no printing,
no exit codes (cli/history.py renders it and picks the exit code).

The series. Rows are grouped by configuration (schema.match_columns(): the declared
identity plus the device name; `by` is left out of it). A run gives one value per
configuration: the median of its ok trials of the metric. Runs are ordered by the
time they started (`started_utc`; for v1 rows, which lack it, the run folder's
timestamp or run.json's `started_utc`), or, with `by` (e.g. driver_version), by that
column's values in the order they were first seen in time, and by time within a value.

The detection (METHOD). On the log of the run values: PELT with the "l2" cost (ruptures,
in C: results/change_points.py) (a change in the mean of the logs = a relative step), segments of at least
`min_segment` runs, and a penalty of PENALTY_FACTOR x sigma^2 x ln(n), where sigma is
the series' robust run-to-run noise (1.4826 x the MAD of successive differences of the
logs / sqrt(2): a step moves one difference only, so it barely moves sigma). Then each
change point must hold up on the runs either side of it, or it is dropped (weakest
first, and the neighbours re-tested): the ratio of the two segments' medians has a
95% CI excluding 1 and Mann-Whitney p < 0.05 (results/compare_stats.assess, exactly as
compare judges two samples), and a size of at least NOISE_MULTIPLE (1.5) times the
configuration's noise floor (noise_floor: the robust spread of the runs around their
segment's median), and never under MIN_CHANGE (1%: a metric without noise, such as
peak memory, would otherwise report every byte). PELT picks the best of many split
points, so the test's p is optimistic for the split it picked; the margin over the
floor pays for that: on simulated pure noise, 1x the floor let 6% of histories report
a change, 1.5x 1% (docs/history.md). Medians make one wild night harmless: it
cannot make a segment of its own (min_segment) and barely moves a median.

A change's verdict: `slower` / `faster` when past the threshold as compare would call
it (assess's verdict); `shift` when real but within the threshold. A configuration is
a regression when its newest change is `slower`: its newest segment is worse than
the one before it beyond the threshold.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results import compare_load as load
from gpubench.results import schema
from gpubench.results.change_points import pelt_l2
from gpubench.results.compare_stats import (  # noqa: F401 (noise_floor: re-exported)
    ALPHA, DIRECTIONS, MAD_TO_SD, NOISE_MULTIPLE, assess, noise_floor,
)
from gpubench.results.summary import kept

DEFAULT_METRIC = "throughput_samples_per_s"
DEFAULT_MIN_SEGMENT = 5
PENALTY_FACTOR = 3.0
MODEL = "l2"
TOO_FEW_PREFIX = "run(s): a change needs"  # the note of a configuration with too few runs
MIN_CHANGE = 0.01  # and never under 1% (a metric without noise, e.g. peak memory)
MIN_SIGMA = 1e-4  # a series without noise (a constant metric) still gets a penalty
METHOD = (f"PELT (as ruptures'), cost {MODEL!r} on log values, penalty {PENALTY_FACTOR:g} x sigma^2 x "
          "ln(n) with sigma the robust run-to-run noise; each change kept only if the 95% CI "
          f"of the ratio of segment medians excludes 1, Mann-Whitney p < {ALPHA} and the change is "
          f"at least {NOISE_MULTIPLE:g} x the noise floor")
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)-")


def diff_sigma(logs: np.ndarray) -> float:
    """The noise of a series robust to steps: 1.4826 x MAD of successive differences
    / sqrt(2) (a step moves one difference only)."""
    d = np.diff(np.asarray(logs, float))
    if d.size < 2:
        return MIN_SIGMA
    return max(MAD_TO_SD * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2), MIN_SIGMA)


def candidate_breaks(values: Sequence[float], min_segment: int,
                     penalty_factor: Optional[float] = None) -> List[int]:
    """PELT's change points (where new segments start) on the log values."""
    penalty_factor = PENALTY_FACTOR if penalty_factor is None else penalty_factor
    logs = np.log(np.asarray(values, float))
    n = logs.size
    if n < 2 * min_segment:
        return []
    sigma = diff_sigma(logs)
    return pelt_l2(logs, penalty_factor * sigma ** 2 * math.log(n), min_segment)


def _verdict(stats: Dict[str, Any]) -> str:
    return stats["verdict"] if stats["verdict"] in ("slower", "faster") else "shift"


def _holds(stats: Dict[str, Any], floor: float) -> bool:
    low, high, ratio = stats["ci_low"], stats["ci_high"], stats["ratio"]
    if not all(np.isfinite(v) for v in (low, high, ratio)):
        return False
    size = abs(ratio - 1.0)
    least = max(NOISE_MULTIPLE * floor, MIN_CHANGE) if np.isfinite(floor) else MIN_CHANGE
    return (low > 1 or high < 1) and stats["p_value"] < ALPHA and size >= least


def confirmed_changes(values: Sequence[float], breaks: Sequence[int], direction: str,
                      threshold: float) -> Tuple[List[int], List[Dict[str, Any]], float]:
    """The breaks that hold up (see the module docstring), their statistics (assess's,
    before = the segment before, new = the segment after) and the final noise floor."""
    x = np.asarray(values, float)
    breaks = sorted(breaks)
    while True:
        floor = noise_floor(x, breaks)
        edges = [0, *breaks, x.size]
        stats = [assess(x[edges[i]:edges[i + 1]], x[edges[i + 1]:edges[i + 2]], direction,
                        threshold) for i in range(len(breaks))]
        weak = [i for i, s in enumerate(stats) if not _holds(s, floor)]
        if not weak:
            return breaks, stats, floor
        drop = min(weak, key=lambda i: abs(math.log(stats[i]["ratio"]))
                   if np.isfinite(stats[i]["ratio"]) and stats[i]["ratio"] > 0 else -1.0)
        breaks.pop(drop)


@dataclass
class Change:
    index: int              # the run (position in the series) where the new segment starts
    run_id: str
    started: str            # that run's start time (ISO), "" when unknown
    by_value: str           # its `by` value ("" without by)
    n_before: int
    n_after: int
    median_before: float
    median_after: float
    ratio: float            # median_after / median_before
    ci_low: float
    ci_high: float
    change_pct: float
    p_value: float
    verdict: str            # slower, faster, shift


@dataclass
class ConfigHistory:
    config: Dict[str, str]  # the match columns
    runs: pd.DataFrame      # ordered: run_id, started, by_value, value, trials
    changes: List[Change]
    noise: float            # noise_floor of the runs, segments as found
    status: str             # regression, ok, too_few_runs
    notes: List[str] = field(default_factory=list)

    @property
    def segments(self) -> List[Tuple[int, int]]:
        edges = [0, *(c.index for c in self.changes), len(self.runs)]
        return list(zip(edges[:-1], edges[1:]))


@dataclass
class History:
    configs: List[ConfigHistory]
    metric: str
    threshold: float
    min_segment: int
    inputs: List[str]
    by: Optional[str] = None
    since: Optional[str] = None
    method: str = METHOD

    @property
    def regressions(self) -> int:
        return sum(c.status == "regression" for c in self.configs)


def _folder_time(source: str, run_id: str, cache: Dict[Tuple[str, str], Any]) -> Any:
    """A v1 run's start time from where it was read: the suite's `runs/<stamp>-...-<run
    id>` folder, the run folder's own `<stamp>-<host>-<id>` name, or its run.json."""
    key = (source, run_id)
    if key not in cache:
        path = Path(source)
        found: Any = pd.NaT
        if path.name == "trials.csv":
            folder = path.parent
            names = [p.name for p in sorted((folder / "runs").glob(f"*-{run_id}"))] if run_id else []
            for name in names + [folder.name]:
                m = _STAMP.match(name)
                if m:
                    found = pd.to_datetime(m.group(1), format="%Y%m%dT%H%M%SZ", utc=True)
                    break
            else:
                found = pd.to_datetime(load.read_meta(folder).get("started_utc"), utc=True,
                                       errors="coerce")
        cache[key] = found
    return cache[key]


def run_values(frame: pd.DataFrame, metric: str, by: Optional[str], label: str) -> pd.DataFrame:
    """One row per (configuration, run): the key, run_id, started (UTC), by_value, the
    median of the run's ok trials of `metric` (value) and their count (trials)."""
    key = list(schema.match_columns(by))
    frame = frame.copy()
    if "source" not in frame.columns:
        frame["source"] = ""
    frame["_key"] = [schema.configuration_key(dict(zip(key, row)), key)
                     for row in frame.reindex(columns=key).itertuples(index=False, name=None)]
    frame["_run"] = frame["run_id"].map(schema.key_text).where(lambda s: s != "", frame["source"])
    frame["_by"] = load.by_labels(frame, by, label) if by else ""
    stamps = (pd.to_datetime(frame["started_utc"], utc=True, errors="coerce", format="ISO8601")
              if "started_utc" in frame.columns else pd.Series(pd.NaT, index=frame.index))
    frame["_t"] = stamps
    frame["_ok"] = (frame["status"].eq("ok") & kept(frame)  # a throttled trial left out: not a value
                    & pd.to_numeric(frame[metric], errors="coerce").notna())
    cache: Dict[Tuple[str, str], Any] = {}
    rows = []
    for (config, run), part in frame.groupby(["_key", "_run"], sort=False):
        ok = part[part["_ok"]]
        started = part["_t"].dropna().min() if part["_t"].notna().any() else \
            _folder_time(str(part["source"].iloc[0]), run, cache)
        searched = _searched(part)
        rows.append({"_key": config, "run_id": run, "started": started,
                     "by_value": next((v for v in part["_by"] if v), ""),
                     "value": _search_value(part, metric) if searched else
                     float(ok[metric].median()) if len(ok) else float("nan"),
                     "trials": int(len(ok)), "order": int(part.index.min()), "searched": searched})
    out = pd.DataFrame(rows, columns=["_key", "run_id", "started", "by_value", "value", "trials",
                                      "order", "searched"])
    out["started"] = pd.to_datetime(out["started"], utc=True)
    return out


def _searched(part: pd.DataFrame) -> bool:
    """A server --find-max-qps run: its trials are probes at different rates."""
    if "scenario" not in part.columns or "target_qps" not in part.columns:
        return False
    server = part["scenario"].eq("server")
    return bool(server.any() and pd.to_numeric(part.loc[server, "target_qps"], errors="coerce").isna().all())


def _search_value(part: pd.DataFrame, metric: str) -> float:
    """A search's one number: its max QPS (the highest rate that held the bound), read
    where throughput is followed; a median over its probes means nothing, so any other
    metric has none."""
    if metric != "throughput_samples_per_s" or "max_qps" not in part.columns:
        return float("nan")
    found = pd.to_numeric(part["max_qps"], errors="coerce").dropna()
    return float(found.iloc[-1]) if len(found) else float("nan")


def _ordered(runs: pd.DataFrame, by: Optional[str]) -> pd.DataFrame:
    runs = runs.sort_values(["started", "order"], na_position="last", kind="stable")
    if by:
        rank = {v: i for i, v in enumerate(dict.fromkeys(runs["by_value"]))}
        runs = runs.assign(_rank=runs["by_value"].map(rank)).sort_values("_rank", kind="stable")
        runs = runs.drop(columns="_rank")
    return runs.reset_index(drop=True)


def analyse(runs: pd.DataFrame, config: Dict[str, str], metric: str, threshold: float,
            min_segment: int, by: Optional[str] = None) -> ConfigHistory:
    """One configuration's runs (run_values rows), ordered, checked for change points."""
    runs = _ordered(runs, by)
    notes = []
    searches = bool(runs["searched"].any())
    if searches:
        notes.append("--find-max-qps searches: each run's max QPS is followed"
                     if metric == "throughput_samples_per_s" else
                     f"--find-max-qps searches have no {metric} (their probes ran at different "
                     "rates); their max QPS is followed with the throughput metric")
    missing = int(runs["value"].isna().sum())
    if missing and not searches:
        notes.append(f"{missing} run(s) without an ok trial left out")
    if missing:
        runs = runs[runs["value"].notna()].reset_index(drop=True)
    untimed = int(runs["started"].isna().sum())
    if untimed:
        notes.append(f"{untimed} run(s) without a start time, placed last in input order")
    values = runs["value"].to_numpy(float)
    if len(values) < 2 * min_segment:
        notes.append(f"{len(values)} {TOO_FEW_PREFIX} {min_segment} (--min-segment) on each side")
        return ConfigHistory(config, runs, [], noise_floor(values), "too_few_runs", notes)
    direction = DIRECTIONS[metric]
    found = candidate_breaks(values, min_segment)
    breaks, stats, floor = confirmed_changes(values, found, direction, threshold)
    changes = []
    for b, s in zip(breaks, stats):
        run = runs.iloc[b]
        started = run["started"]
        changes.append(Change(
            index=b, run_id=str(run["run_id"]), by_value=str(run["by_value"]),
            started="" if pd.isna(started) else started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            n_before=int(s["n_base"]), n_after=int(s["n_new"]),
            median_before=float(s["median_base"]), median_after=float(s["median_new"]),
            ratio=float(s["ratio"]), ci_low=float(s["ci_low"]), ci_high=float(s["ci_high"]),
            change_pct=(float(s["ratio"]) - 1.0) * 100.0, p_value=float(s["p_value"]),
            verdict=_verdict(s)))
    if np.isfinite(floor):
        least = max(NOISE_MULTIPLE * floor, MIN_CHANGE)
        notes.append(f"run-to-run noise {floor:.1%}: changes under {least:.1%} are not reported")
    status = "regression" if changes and changes[-1].verdict == "slower" else "ok"
    return ConfigHistory(config, runs, changes, floor, status, notes)


def history(frame: pd.DataFrame, metric: str = DEFAULT_METRIC, threshold: float = 0.05,
            min_segment: int = DEFAULT_MIN_SEGMENT, by: Optional[str] = None,
            since: Optional[str] = None, inputs: Sequence[str] = ()) -> History:
    """The change points of every configuration in the trial rows `frame`."""
    check_options(metric, min_segment)
    label = " and ".join(inputs) or "the input"
    load.check_metric(frame, metric, label)
    runs = run_values(load.with_derived(frame), metric, by, label)
    return history_of_runs(runs, metric, threshold, min_segment, by, since, inputs)


def check_options(metric: str, min_segment: int) -> None:
    if metric not in DIRECTIONS:
        raise UserError(f"--metric {metric}: not a comparable metric (valid: {', '.join(DIRECTIONS)})")
    if min_segment < 2:
        raise UserError(f"--min-segment {min_segment}: must be 2 or more")


def history_of_runs(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, threshold: float = 0.05,
                    min_segment: int = DEFAULT_MIN_SEGMENT, by: Optional[str] = None,
                    since: Optional[str] = None, inputs: Sequence[str] = ()) -> History:
    """The change points of every configuration in `runs` (run_values' rows, or the
    same computed by a store's SQL: results/store/medians.py)."""
    label = " and ".join(inputs) or "the input"
    if since is not None:
        start = pd.to_datetime(since, utc=True, errors="coerce")
        if pd.isna(start):
            raise UserError(f"--since {since!r}: not a date (expected e.g. 2025-01-31)")
        runs = runs[~(runs["started"] < start)]  # runs without a time are kept
        if runs.empty:
            raise UserError(f"--since {since}: no run of {label} started then or later")
    key = list(schema.match_columns(by))
    configs = [analyse(part.drop(columns="_key"), dict(zip(key, config)), metric, threshold,
                       min_segment, by)
               for config, part in runs.groupby("_key", sort=False)]
    return History(configs, metric, threshold, min_segment, list(inputs), by, since)


def history_paths(paths: Sequence[Path], filters: Any = None, **options: Any) -> History:
    """Reads every run under `paths` (run and suite folders, found recursively, and
    results stores; rows read twice count once), the runs `filters` select
    (results/store/filters.py), and finds the change points. A store's per-run medians
    are computed in DuckDB (results/store/medians.py); folders' in pandas."""
    from gpubench.results.store.filters import Filters, apply, nothing_left

    if not paths:
        raise UserError("history needs at least one RESULTS input")
    filters = filters or Filters()
    metric = options.get("metric", DEFAULT_METRIC)
    by = options.get("by")
    check_options(metric, options.get("min_segment", DEFAULT_MIN_SEGMENT))
    inputs = [str(p) for p in paths]
    label = " and ".join(inputs)
    stores = [Path(p) for p in paths if load.is_store_input(Path(p))]
    folders = [Path(p) for p in paths if not load.is_store_input(Path(p))]
    parts = []
    if folders:
        files = list(dict.fromkeys(f for p in folders for f in load.find_trial_files(p)))
        frame = apply(load.read_files(files), filters)
        if frame.empty:
            raise nothing_left(" and ".join(str(p) for p in folders), filters)
        load.check_metric(frame, metric, label)
        parts.append(run_values(load.with_derived(frame), metric, by, label))
    if stores:
        from gpubench.results.store.medians import run_medians

        parts += [run_medians(p, metric, by, filters, str(p)) for p in stores]
    runs = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if len(parts) > 1:  # a run both in a folder and in a store counts once
        runs = runs[~runs[["_key", "run_id"]].duplicated()].reset_index(drop=True)
        runs["order"] = range(len(runs))
    options = {k: v for k, v in options.items() if k in ("threshold", "min_segment", "since")}
    return history_of_runs(runs, metric, by=by, inputs=inputs, **options)
