"""Change points of every series, as `gpubench history` finds them (results/history.py's
analyse, on the per-run values series.py computed), and the order the index shows them in: the newest regressions
first."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import pandas as pd

from gpubench.results import history as hist

Progress = Callable[[str, int, int], None]  # stage, done, total


def analyse_all(tables, metric: str, threshold: float, min_segment: int,
                progress: Optional[Progress] = None) -> Dict[int, hist.ConfigHistory]:
    """series id -> its ConfigHistory (runs ordered, left out where they have no value)."""
    runs = tables.runs.assign(by_value="")
    found: Dict[int, hist.ConfigHistory] = {}
    groups = runs.groupby("series", sort=False)
    total = groups.ngroups
    columns = ["run", "run_id", "started", "by_value", "value", "ci_low", "ci_high", "trials",
               "order", "searched"]
    series = tables.series.set_index("series")
    for done, (sid, part) in enumerate(groups, start=1):
        config = {c: series.at[sid, c] for c in series.columns if c not in ("label", "page")}
        found[int(sid)] = hist.analyse(part[columns].reset_index(drop=True), config, metric,
                                       threshold, min_segment)
        if progress is not None:
            progress("change points", done, total)
    return found


def newest_first(tables, found: Dict[int, hist.ConfigHistory]) -> List[int]:
    """Series ids: regressions first, newest change first; then series with other
    changes, newest first; then the rest by label."""
    def when(sid: int) -> pd.Timestamp:
        changes = found[sid].changes
        t = pd.to_datetime(changes[-1].started, utc=True) if changes and changes[-1].started \
            else pd.Timestamp.min.tz_localize("UTC")
        return t

    labels = dict(zip(tables.series["series"], tables.series["label"]))
    rank = {"regression": 0}

    def key(sid: int):
        h = found[sid]
        tier = rank.get(h.status, 1 if h.changes else 2)
        return (tier, -when(sid).value if tier < 2 else 0, labels[sid])
    return sorted(found, key=key)
