"""The report's power sweep section: per configuration run at several board power
limits (a suite's `power_limits: [200, 250, 300]`, i.e. --power-limit), each group's
median samples/J and samples/s against the limit, in a table and two charts. The
watts drawn are the limit asked for (`power_limit_w`); the table adds the limit NVML
enforced (`enforced_power_limit_w`) and the median power drawn. Empty when no
configuration was run at two limits or more: other reports are unchanged."""

from __future__ import annotations

import math
from typing import List

import pandas as pd

from gpubench.results.compare_format import config_label, num, value_text
from gpubench.results.report_plot import Charts, esc, line_figure

MAX_SERIES = 12  # lines in a chart; the table holds them all
COLUMNS = ("samples_per_joule", "throughput_samples_per_s", "power_avg_w",
           "enforced_power_limit_w")


def power_sweep(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per group, configuration (its power limit aside) and limit: the medians
    of the ok trials; only configurations with two limits or more."""
    if "power_limit_w" not in trials.columns:
        return pd.DataFrame()
    t = trials[pd.to_numeric(trials["power_limit_w"], errors="coerce").notna()]
    if "status" in t.columns:
        t = t[t["status"] == "ok"]
    if t.empty:
        return pd.DataFrame()
    t = t.assign(watts=pd.to_numeric(t["power_limit_w"]),
                 config=[config_label(r.drop(labels=["power_limit_w"])) for _, r in t.iterrows()])
    for c in COLUMNS:
        t[c] = pd.to_numeric(t[c], errors="coerce") if c in t.columns else math.nan
    out = t.groupby(["group", "config", "watts"], sort=False)[list(COLUMNS)].median().reset_index()
    limits = out.groupby(["group", "config"])["watts"].transform("nunique")
    return out[limits >= 2].sort_values(["group", "config", "watts"], kind="stable")


def power_section(trials: pd.DataFrame, groups: List[str], charts: Charts) -> str:
    """The `<h2>`, table and charts, or "" when nothing was swept."""
    sweep = power_sweep(trials)
    if sweep.empty:
        return ""
    cells = "".join(
        f'<tr><td class="t">{esc(r["group"])}</td><td class="t">{esc(r["config"])}</td>'
        f'<td>{r["watts"]:g}</td><td>{num(r["enforced_power_limit_w"], ".0f")}</td>'
        f'<td>{num(r["power_avg_w"], ".1f")}</td>'
        f'<td>{value_text(r["throughput_samples_per_s"])}</td>'
        f'<td>{value_text(r["samples_per_joule"])}</td></tr>'
        for _, r in sweep.iterrows())
    table = ("<table><tr><th>group</th><th>configuration</th><th>limit W</th>"
             "<th>enforced W</th><th>drawn W</th><th>samples/s</th><th>samples/J</th></tr>"
             f"{cells}</table>")
    drawn = []
    for column, title, unit in (("samples_per_joule", "Energy efficiency against the power "
                                 "limit", "samples/J"),
                                ("throughput_samples_per_s", "Throughput against the power "
                                 "limit", "samples/s")):
        series = [(f"{group} · {config}", rows["watts"].to_numpy(float),
                   rows[column].to_numpy(float))
                  for (group, config), rows in sweep.groupby(["group", "config"], sort=False)]
        drawn.append(charts.add(line_figure(title, "board power limit (W)", f"median {unit}",
                                            series[:MAX_SERIES])))
    n = sweep.groupby(["group", "config"]).ngroups
    more = (f'<p class="note">{n - MAX_SERIES} more configurations in the table, not '
            "drawn.</p>" if n > MAX_SERIES else "")
    return f"<h2>Power limit sweep</h2>\n{table}\n" + "\n".join(drawn) + f"\n{more}"
