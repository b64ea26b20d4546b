"""The report's latency-against-load section: the server scenario's rows, p99 latency
(the early-stopping bound, queueing included) against the rate offered, one line per
group and configuration. The rate is left out of a line's label, so a suite's sweep of
`target_qps` and a --find-max-qps search's probes each make one line; each latency
bound asked for is drawn flat. Empty when no row is a server's: other reports are
unchanged."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pandas as pd

from gpubench.results.compare_format import config_label, value_text
from gpubench.results.report_plot import Charts, esc, line_figure

MAX_SERIES = 12  # lines in the chart; the table holds them all
CLIP_BOUNDS = 4.0  # latencies above this many times the largest bound are drawn at it


def _label(row: pd.Series) -> str:
    return config_label(row.drop(labels=["target_qps"], errors="ignore"))


def latency_points(trials: pd.DataFrame, groups: List[str]) -> pd.DataFrame:
    """Per group, configuration (less the rate) and offered rate: the medians of the ok
    server rows' achieved rate and latency percentiles."""
    if "offered_qps" not in trials.columns:
        return pd.DataFrame()
    t = trials[(trials["scenario"] == "server") & (trials["status"] == "ok")
               & trials["offered_qps"].notna()]
    if t.empty:
        return pd.DataFrame()
    t = t.assign(config=[_label(r) for _, r in t.iterrows()])
    numeric = ["achieved_qps", "latency_p50_ms", "latency_p99_ms", "latency_bound_ms"]
    t[numeric] = t[numeric].apply(pd.to_numeric, errors="coerce")
    points = (t.groupby(["group", "config", "offered_qps"], sort=False)[numeric].median()
              .reset_index())
    points["group"] = pd.Categorical(points["group"], [g for g in groups if g in set(points["group"])])
    return points.sort_values(["group", "config", "offered_qps"]).reset_index(drop=True)


def latency_section(trials: pd.DataFrame, groups: List[str], charts: Charts) -> str:
    """The `<h2>`, chart and table, or "" when no row is a server's."""
    points = latency_points(trials, groups)
    if points.empty:
        return ""
    bounds = sorted(set(points["latency_bound_ms"].dropna()))
    cap = CLIP_BOUNDS * bounds[-1] if bounds else math.inf
    series = []
    for (group, config), rows in points.groupby(["group", "config"], sort=False, observed=True):
        series.append((f"{group} · {config}", rows["offered_qps"].to_numpy(float),
                       np.minimum(rows["latency_p99_ms"].to_numpy(float), cap)))
    x = points["offered_qps"].to_numpy(float)
    flat = [(f"p99 bound {b:g} ms", np.array([x.min(), x.max()]), np.array([b, b]))
            for b in bounds]
    clipped = (f" (latencies above {cap:g} ms drawn at {cap:g})"
               if (points["latency_p99_ms"] > cap).any() else "")
    drawn = series[:MAX_SERIES]
    chart = charts.add(line_figure("p99 latency against offered load" + clipped,
                                   "offered load (queries/s)", "p99 latency (ms)", drawn + flat,
                                   dash_from=len(drawn)))
    more = (f'<p class="note">{len(series) - MAX_SERIES} more configurations in the table, '
            "not drawn.</p>" if len(series) > MAX_SERIES else "")
    cells = "".join(
        f'<tr><td class="t">{esc(r["group"])}</td><td class="t">{esc(r["config"])}</td>'
        + "".join(f"<td>{value_text(r[c])}</td>" for c in
                  ("offered_qps", "achieved_qps", "latency_p50_ms", "latency_p99_ms"))
        + "</tr>"
        for _, r in points.iterrows())
    table = ("<table><tr><th>group</th><th>configuration</th><th>offered QPS</th>"
             "<th>achieved QPS</th><th>p50 ms</th><th>p99 ms</th></tr>" f"{cells}</table>")
    found = "".join(f"<li>{esc(r['group'])} · {esc(_label(r))}: <b>{value_text(r['max_qps'])}"
                    "</b> QPS</li>" for _, r in searches_found(trials).iterrows())
    found = (f"<p>--find-max-qps: the highest rate whose p99 met the bound</p><ul>{found}</ul>"
             if found else "")
    note = ('<p class="note">Server scenario: latency from each query\'s scheduled arrival to '
            "its outputs, queueing included; percentiles are early-stopping bounds (99% "
            "confidence), medians over a rate's trials.</p>")
    return f"<h2>Latency against load</h2>\n{found}\n{chart}\n{more}\n{table}\n{note}"


def searches_found(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows carrying a --find-max-qps search's result (its last probe's)."""
    if "max_qps" not in trials.columns:
        return trials.iloc[:0]
    found = pd.to_numeric(trials["max_qps"], errors="coerce")
    return trials[(trials["scenario"] == "server") & (trials["status"] == "ok") & found.notna()]
