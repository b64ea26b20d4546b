"""The report's telemetry: small multiples. One figure per quantity (power, SM clock,
utilisation, temperature, CPU), one small panel per run in it, every panel of a
quantity on the same y range: runs are compared by eye across panels instead of read
out of a tangle of lines on one axis."""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.results.compare_format import config_label
from gpubench.results.report_plot import Charts, axis, color, esc, layout, numbers, text

# samples.csv quantities drawn: column, title, unit.
TRACES = (("power_w", "Power", "W"), ("sm_clock_mhz", "SM clock", "MHz"),
          ("gpu_util_pct", "GPU utilisation", "%"), ("temp_c", "GPU temperature", "°C"),
          ("cpu_util_pct", "CPU utilisation (machine)", "%"))
MAX_RUNS = 12  # runs drawn; the rest are named in a note
COLUMNS = 3
PANEL_H = 170


def downsample(xs: np.ndarray, ys: np.ndarray, limit: int = 300) -> Tuple[np.ndarray, np.ndarray]:
    """Every k-th point so a panel has at most `limit` (keeps the file small)."""
    step = max(1, math.ceil(len(xs) / limit))
    return xs[::step], ys[::step]


def small_multiples(title: str, unit: str, panels: Sequence[Tuple[str, np.ndarray, np.ndarray]]
                    ) -> Dict:
    """One figure: a grid of panels (COLUMNS wide), each its own x axis (time since its
    run started), all on one y range."""
    n = len(panels)
    rows = math.ceil(n / COLUMNS)
    ys_all = np.concatenate([p[2][np.isfinite(p[2])] for p in panels] or [np.zeros(1)])
    low = min(0.0, float(ys_all.min())) if ys_all.size else 0.0
    high = float(ys_all.max()) if ys_all.size else 1.0
    high = high * 1.05 if high > 0 else 1.0
    gap_x, gap_y = 0.06, 0.27 / rows  # between rows: the ticks of one, the titles of the next
    lay = layout(text(title), 70 + rows * PANEL_H, showlegend=False,
                 margin={"l": 56, "r": 16, "t": 60, "b": 30})
    data, notes = [], []
    for i, (label, xs, ys) in enumerate(panels):
        r, c = divmod(i, COLUMNS)
        suffix = "" if i == 0 else str(i + 1)
        x0, x1 = c / COLUMNS + (gap_x if c else 0), (c + 1) / COLUMNS - (gap_x if c < COLUMNS - 1 else 0) * 0.2
        y1 = 1 - r / rows - (gap_y if r else 0)
        y0 = 1 - (r + 1) / rows
        lay[f"xaxis{suffix}"] = axis("s" if r == rows - 1 else "", domain=[x0, x1],
                                     anchor=f"y{suffix}")
        lay[f"yaxis{suffix}"] = axis(text(unit) if c == 0 else "", domain=[y0, y1],
                                     anchor=f"x{suffix}", range=[low, high])
        data.append({"type": "scatter", "mode": "lines", "x": numbers(xs, 5), "y": numbers(ys, 5),
                     "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "name": text(label),
                     "line": {"color": color(i), "width": 1.2},
                     "hovertemplate": "%{x:.1f} s: %{y:.4~g} " + text(unit) + "<extra></extra>"})
        notes.append({"text": text(label if len(label) <= 60 else label[:57] + "..."),
                      "xref": "paper", "yref": "paper", "x": (x0 + x1) / 2, "y": y1,
                      "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                      "font": {"size": 11}})
    lay["annotations"] = notes
    return {"data": data, "layout": lay}


def telemetry_section(trials: pd.DataFrame, samples: pd.DataFrame, several_groups: bool,
                      charts: Charts) -> str:
    if samples.empty:
        return '<p class="note">No telemetry time series (samples.csv) in these results.</p>'
    first = trials.drop_duplicates("run_id").set_index("run_id")
    names = {str(rid): (f"{row['group']} · " if several_groups else "") + config_label(row)
             for rid, row in first.iterrows()}
    run_ids = [r for r in dict.fromkeys(samples["run_id"]) if r in names]
    shown, hidden = run_ids[:MAX_RUNS], run_ids[MAX_RUNS:]
    out: List[str] = []
    for column, title, unit in TRACES:
        if column not in samples.columns or samples[column].notna().sum() == 0:
            continue
        panels = []
        for rid in shown:
            run = samples[(samples["run_id"] == rid) & samples[column].notna()].sort_values("t_s")
            if len(run):
                xs, ys = downsample(run["t_s"].to_numpy(float), run[column].to_numpy(float))
                panels.append((f"{names[rid]} ({rid})", xs, ys))
        if panels:
            out.append(charts.add(small_multiples(f"{title} during the runs", unit, panels)))
    if not out:
        return ('<p class="note">samples.csv holds none of: '
                + esc(", ".join(c for c, _, _ in TRACES)) + ".</p>")
    if hidden:
        out.append(f'<p class="note">{len(hidden)} more runs not drawn: {esc(", ".join(hidden))}.</p>')
    out.append('<p class="note">One panel per run, time since the run started; every panel '
               "of a quantity on the same scale.</p>")
    return "\n".join(out)
