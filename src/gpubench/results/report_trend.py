"""The report's trend section: per configuration with a history (2 x min-segment runs
or more), the median throughput of each run over time, the segment medians, and the
change points `gpubench history` finds, marked (the dashboard's series figure). Empty (no section at all) when no
configuration has that many runs: an ordinary report of a few runs is unchanged."""

from __future__ import annotations

from typing import List

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.compare_format import config_label
from gpubench.results.report_plot import Charts, esc

THR = "throughput_samples_per_s"
MAX_CHARTS = 12


def _enough_runs(trials: pd.DataFrame, min_runs: int) -> bool:
    if "run_id" not in trials.columns or THR not in trials.columns:
        return False
    ok = trials[trials["status"].eq("ok") & pd.to_numeric(trials[THR], errors="coerce").notna()]
    if ok.empty:
        return False
    key = [c for c in schema.match_columns() if c in ok.columns]
    keys = pd.Series([schema.configuration_key(dict(zip(key, row)), key)
                      for row in ok[key].itertuples(index=False, name=None)], index=ok.index)
    return int(ok["run_id"].groupby(keys).nunique().max()) >= min_runs


def trend_section(trials: pd.DataFrame, threshold: float, charts: Charts) -> str:
    """`<h2>` and the charts, or "" when no configuration has enough runs."""
    from gpubench.results.dashboard.figures import series_figure
    from gpubench.results.history import DEFAULT_MIN_SEGMENT, history

    if not _enough_runs(trials, 2 * DEFAULT_MIN_SEGMENT):
        return ""
    head = "<h2>Trend over runs</h2>"
    try:
        found = history(trials, metric=THR, threshold=threshold)
    except UserError as exc:
        return f'{head}\n<p class="note">No trend: {esc(exc)}.</p>'
    shown = [c for c in found.configs if c.status != "too_few_runs"]
    drawn: List[str] = []
    no_env = pd.DataFrame(columns=["series", "started", "run_id", "what"])
    for c in shown[:MAX_CHARTS]:
        title = f"{config_label(c.config)}: {c.status.replace('_', ' ')}"
        drawn.append(charts.add(series_figure(c, no_env, "samples/s", title=title, height=300)))
    notes = [f"Throughput, threshold {threshold:.1%}, segments of at least {found.min_segment} "
             f"runs; changes smaller than 1.5x a configuration's own run-to-run noise are not marked "
             f"(gpubench history)."]
    if len(shown) > MAX_CHARTS:
        notes.append(f"{len(shown) - MAX_CHARTS} more configurations not drawn.")
    return "\n".join([head, *drawn, *(f'<p class="note">{esc(n)}</p>' for n in notes)])
