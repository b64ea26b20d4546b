"""The dashboard's figures (plotly figure dicts, results/report_plot.py's vocabulary):
a series over time and the spread of its runs. The report's trend section draws the
same series figure."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pandas as pd

from gpubench.results.report_plot import axis, layout, numbers, text

VERDICT_COLOURS = {"slower": "#c62828", "faster": "#2e7d32", "shift": "#888888"}
ENV_COLOUR = "#6a1b9a"


def ms(times: Any) -> List[Any]:
    """UTC times as milliseconds since the epoch (plotly's date axis reads them)."""
    t = pd.to_datetime(pd.Series(times), utc=True)
    out = (t.astype("int64") // 1_000_000).astype(object)
    return [None if pd.isna(a) else int(v) for a, v in zip(t, out)]


def series_figure(history, env: pd.DataFrame, unit: str, title: str = "",
                  height: int = 240, compact: bool = True) -> Dict[str, Any]:
    """Each run's median (95% CI as whiskers) over time, the segments' medians dashed,
    change points as vertical lines (red slower, green faster, grey a shift within the
    threshold) and driver / CUDA / framework changes as purple triangles on the time
    axis (their text on hover). `history` is a ConfigHistory; `env` its env_changes."""
    runs = history.runs
    x = ms(runs["started"])
    med = runs["value"].to_numpy(float)
    low = runs["ci_low"].to_numpy(float) if "ci_low" in runs.columns else np.full(len(runs), np.nan)
    high = runs["ci_high"].to_numpy(float) if "ci_high" in runs.columns else np.full(len(runs), np.nan)
    hover = [text(f"run {r}") for r in runs["run_id"]]
    data: List[Dict[str, Any]] = [{
        "type": "scatter", "mode": "lines+markers", "name": "run median", "x": x,
        "y": numbers(med), "text": hover,
        "line": {"color": "#1f77b4", "width": 1.2}, "marker": {"size": 4},
        "error_y": {"type": "data", "symmetric": False, "thickness": 0.8, "width": 0,
                    "color": "#9ecae1", "array": numbers(high - med),
                    "arrayminus": numbers(med - low)},
        "hovertemplate": "%{x|%Y-%m-%d %H:%M}<br>%{y:,.4~g} " + text(unit)
                         + "<br>%{text}<extra></extra>"}]
    seg_x: List[Any] = []
    seg_y: List[Any] = []
    for a, b in history.segments:
        if b > a:
            m = float(np.median(med[a:b]))
            seg_x += [x[a], x[b - 1], None]
            seg_y += [m, m, None]
    data.append({"type": "scatter", "mode": "lines", "name": "segment median", "x": seg_x,
                 "y": numbers(seg_y), "line": {"color": "#555", "dash": "dash", "width": 1.2},
                 "hoverinfo": "skip"})
    shapes, notes = [], []
    for ch in history.changes:
        at = x[ch.index]
        colour = VERDICT_COLOURS.get(ch.verdict, "#888")
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at,
                       "y0": 0, "y1": 1, "line": {"color": colour, "width": 1.5}})
        day = f"{ch.started[:10]} " if ch.started else ""
        notes.append({"x": at, "xref": "x", "y": 1, "yref": "paper", "yanchor": "bottom",
                      "showarrow": False, "font": {"size": 10, "color": colour},
                      "text": text(f"{ch.change_pct:+.1f}% {ch.verdict}"),
                      "hovertext": text(f"change at run {ch.index + 1} ({day}run {ch.run_id}): "
                                        f"{ch.change_pct:+.1f}%, {ch.verdict}")})
    if len(env):
        ex = ms(env["started"])
        data.append({"type": "scatter", "mode": "markers", "name": "environment change",
                     "x": ex, "y": [0.0] * len(ex), "yaxis": "y2", "cliponaxis": False,
                     "marker": {"symbol": "triangle-up", "size": 9, "color": ENV_COLOUR},
                     "text": [text(w) for w in env["what"]],
                     "hovertemplate": "%{x|%Y-%m-%d}<br>%{text}<extra></extra>"})
        for at in ex:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at,
                           "y0": 0, "y1": 1, "line": {"color": ENV_COLOUR, "width": 1,
                                                      "dash": "dot"}})
    lay = layout(text(title), height, showlegend=not compact, shapes=shapes, annotations=notes,
                 margin={"l": 56, "r": 12, "t": 36 if title else 22, "b": 30},
                 xaxis=axis(type="date"), yaxis=axis(text(unit)),
                 yaxis2={"overlaying": "y", "range": [0, 1], "visible": False,
                         "fixedrange": True})
    return {"data": data, "layout": lay}


def spread_figure(runs: pd.DataFrame, values: pd.DataFrame, unit: str,
                  height: int = 320) -> Dict[str, Any]:
    """A box (and its trials as points) per run, at the run's time."""
    when = dict(zip(runs["run"], ms(runs["started"])))
    v = values[values["run"].isin(when)]
    return {"data": [{
        "type": "box", "name": "trials of a run", "x": [when[r] for r in v["run"]],
        "y": numbers(v["value"]), "boxpoints": "all", "jitter": 0.3, "pointpos": 0,
        "marker": {"size": 3, "color": "#1f77b4", "opacity": 0.6},
        "line": {"width": 1}, "fillcolor": "rgba(31,119,180,0.15)",
        "hovertemplate": "%{x|%Y-%m-%d %H:%M}<br>%{y:,.4~g} " + text(unit) + "<extra></extra>"}],
        "layout": layout("", height, showlegend=False, xaxis=axis(type="date"),
                         yaxis=axis(text(unit)), margin={"l": 56, "r": 12, "t": 16, "b": 30})}

