"""Weak scaling efficiency of runs of ranks (suites crossing `nprocs: [1, 2, 4, 8]`):
for each configuration but its world size, on one kind of device,

    efficiency(N) = throughput(N) / (N x throughput(1))

with throughput the whole run's samples/s (`global_throughput_samples_per_s`; a plain
run's own samples/s where it has none): 1.0 when N ranks do N times the work of one in
the same time (each rank a batch of its own: weak scaling). A pure function of
summary.csv rows, no framework."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.results import schema
from gpubench.results.summary import summarize

GLOBAL = "global_throughput_samples_per_s_median"
OWN = "throughput_samples_per_s_median"
SCALING_COLUMNS = ("world_size", "global_samples_per_s", "per_rank_samples_per_s",
                   "efficiency")


def scaling_keys() -> List[str]:
    """What stays fixed while the world size varies (the configuration, derived from the
    one declaration, and the kind of device)."""
    return [c for c in schema.CONFIGURATION_COLUMNS if c != "world_size"] + ["device_name"]


def scaling_efficiency(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and world size of the ok summary rows, for the
    configurations measured at world size 1 and at least one other; empty when none."""
    keys = [c for c in scaling_keys() if c in summary.columns]
    columns = keys + list(SCALING_COLUMNS)
    if summary.empty or "world_size" not in summary.columns:
        return pd.DataFrame(columns=columns)
    ok = summary[summary["status"] == "ok"].copy()
    own = pd.to_numeric(ok.get(GLOBAL), errors="coerce")
    ok["whole"] = own.fillna(pd.to_numeric(ok[OWN], errors="coerce"))
    ok["world_size"] = pd.to_numeric(ok["world_size"], errors="coerce")
    ok = ok[ok["world_size"].notna()]  # a row that does not say cannot be placed
    # a run of ranks on GPUs has a summary row per rank, each with the run's whole figure
    per_run = ok.groupby(keys + ["world_size", "run_id"], dropna=False)["whole"].first()
    per_size = per_run.groupby(level=list(range(len(keys) + 1)), dropna=False).median()
    rows = []
    for key, sizes in per_size.groupby(level=list(range(len(keys))), dropna=False):
        by_n = {int(n): float(v) for n, v in zip(sizes.index.get_level_values(-1), sizes)}
        base = by_n.get(1)
        if base is None or len(by_n) < 2 or not np.isfinite(base) or base <= 0:
            continue
        for n, whole in sorted(by_n.items()):
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                         "world_size": n, "global_samples_per_s": whole,
                         "per_rank_samples_per_s": whole / n,
                         "efficiency": whole / (n * base)})
    return pd.DataFrame(rows, columns=columns)


def scaling_by_group(sides: Sequence[Tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Every group's scaling rows, from its trial rows, with a `group` column; empty
    when no group ran a configuration at world size 1 and more."""
    frames = []
    for group, trials in sides:
        if trials.empty or "strategy" not in trials.columns or \
                trials["strategy"].fillna("").astype(str).str.strip().eq("").all():
            continue  # no run of ranks: nothing scales (and no summary to compute)
        table = scaling_efficiency(summarize(trials))
        if len(table):
            frames.append(table.assign(group=group))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scaling_changes(scaling: pd.DataFrame, base: str) -> pd.DataFrame:
    """Per configuration and world size (N > 1): each group's efficiency, and the
    others' change against `base`'s in points (compare's scaling table); empty when
    no configuration scales in two groups."""
    if scaling.empty:
        return scaling
    keys = [c for c in scaling_keys() if c in scaling.columns]
    rows = []
    for key, sizes in scaling[scaling["world_size"] > 1].groupby(keys + ["world_size"],
                                                                 dropna=False, sort=False):
        by_group = dict(zip(sizes["group"], sizes["efficiency"]))
        if base not in by_group or len(by_group) < 2:
            continue
        for group, efficiency in by_group.items():
            if group != base:
                rows.append({**dict(zip(keys + ["world_size"], key)), "base": base,
                             "new": group, "efficiency_base": by_group[base],
                             "efficiency_new": efficiency,
                             "change_points": (efficiency - by_group[base]) * 100})
    return pd.DataFrame(rows)
