"""Scoring repeated time-to-accuracy runs as MLPerf Training does: of a configuration's
N runs, drop the fastest and the slowest and take the mean of the rest. A run that did
not reach its target ranks as the slowest; if one is still among the kept runs after
dropping, the configuration has no score (too many runs did not converge). With fewer
than three runs nothing can be dropped: the score is the mean of them all, said so.
Energy-to-accuracy is scored the same way over the same kept runs."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pandas as pd

from gpubench.results import schema

SCENARIO = "time-to-accuracy"
SCORE_COLUMNS = ("n_runs", "n_reached", "n_not_converged", "score_s", "score_j",
                 "runs_kept", "note")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def run_results(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per time-to-accuracy run: its configuration, whether it reached the
    target, and its seconds and joules to it (a run with no result row, one that failed
    or was cut short, counts as not converged)."""
    if "scenario" not in trials.columns:
        return pd.DataFrame()
    rows = trials[trials["scenario"] == SCENARIO]
    out: List[Dict[str, Any]] = []
    keys = [c for c in schema.CONFIGURATION_COLUMNS + ("device_name",) if c in rows.columns]
    for run_id, run in rows.groupby("run_id", sort=False):
        last = run.iloc[-1]
        reached = bool(last.get("status") == "ok" and _truthy(last.get("reached")))
        out.append({**{k: last[k] for k in keys}, "run_id": run_id, "reached": reached,
                    "time_to_accuracy_s": float(last["time_to_accuracy_s"]) if reached else np.nan,
                    "energy_to_accuracy_j": pd.to_numeric(last.get("energy_to_accuracy_j"),
                                                          errors="coerce") if reached else np.nan})
    return pd.DataFrame(out)


def score(times_s: np.ndarray, energies_j: np.ndarray) -> Dict[str, Any]:
    """The MLPerf score of one configuration's runs (NaN time: not converged)."""
    n = len(times_s)
    ranked = np.argsort(np.where(np.isnan(times_s), np.inf, times_s), kind="stable")
    kept = ranked[1:-1] if n >= 3 else ranked
    not_converged = int(np.isnan(times_s).sum())
    result: Dict[str, Any] = {"n_runs": n, "n_reached": n - not_converged,
                              "n_not_converged": not_converged, "runs_kept": len(kept),
                              "score_s": np.nan, "score_j": np.nan}
    if np.isnan(times_s[kept]).any():
        result["note"] = (f"{not_converged} of {n} runs did not reach the target: no score "
                          "(MLPerf drops one non-converged run as the slowest)")
        return result
    result["score_s"] = float(np.mean(times_s[kept]))
    energies = energies_j[kept]
    result["score_j"] = float(np.mean(energies)) if not np.isnan(energies).any() else np.nan
    result["note"] = ("fastest and slowest dropped, mean of the rest" if n >= 3 else
                      f"{n} run{'s' if n > 1 else ''}: too few to drop the fastest and "
                      "slowest (MLPerf needs 3 or more), mean of all")
    return result


def score_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Per configuration of the time-to-accuracy rows in `trials`: the run counts and
    the MLPerf scores (SCORE_COLUMNS); empty when there are none."""
    runs = run_results(trials)
    if runs.empty:
        return pd.DataFrame()
    keys = [c for c in schema.CONFIGURATION_COLUMNS + ("device_name",) if c in runs.columns]
    out = []
    for key, group in runs.groupby(keys, dropna=False, sort=False):
        out.append({**dict(zip(keys, key)),
                    **score(group["time_to_accuracy_s"].to_numpy(dtype=float),
                            group["energy_to_accuracy_j"].to_numpy(dtype=float))})
    return pd.DataFrame(out)
