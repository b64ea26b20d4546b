"""The report's weak scaling section: per configuration run at world size 1 and more,
each group's efficiency throughput(N) / (N x throughput(1)) (results/scaling.py) in a
table and a plotly chart of efficiency against ranks. Empty when no group holds such a
configuration: a report of plain runs is unchanged."""

from __future__ import annotations

from typing import List

import pandas as pd

from gpubench.results.compare_format import config_label
from gpubench.results.report_plot import Charts, esc, line_figure
from gpubench.results.scaling import scaling_by_group

MAX_SERIES = 12  # lines in the chart; the table holds them all


def scaling_section(trials: pd.DataFrame, groups: List[str], charts: Charts) -> str:
    """The `<h2>`, table and chart, or "" when nothing scales."""
    scaling = scaling_by_group([(g, trials[trials["group"] == g]) for g in groups])
    if scaling.empty:
        return ""
    scaling["config"] = [config_label(row) for _, row in scaling.iterrows()]
    cells = "".join(
        f'<tr><td class="t">{esc(r["group"])}</td><td class="t">{esc(r["config"])}</td>'
        f'<td>{int(r["world_size"])}</td><td>{r["global_samples_per_s"]:,.4g}</td>'
        f'<td>{r["per_rank_samples_per_s"]:,.4g}</td><td>{r["efficiency"]:.1%}</td></tr>'
        for _, r in scaling.iterrows())
    table = ("<table><tr><th>group</th><th>configuration</th><th>ranks</th>"
             "<th>global samples/s</th><th>per rank</th><th>efficiency</th></tr>"
             f"{cells}</table>")
    series = []
    for (group, config), rows in scaling.groupby(["group", "config"], sort=False):
        rows = rows.sort_values("world_size")
        series.append((f"{group} · {config}", rows["world_size"].to_numpy(float),
                       rows["efficiency"].to_numpy(float) * 100))
    chart = charts.add(line_figure("Weak scaling efficiency", "ranks (world size)",
                                   "efficiency (%): throughput(N) / (N x throughput(1))",
                                   series[:MAX_SERIES]))
    more = (f'<p class="note">{len(series) - MAX_SERIES} more configurations in the table, '
            "not drawn.</p>" if len(series) > MAX_SERIES else "")
    return f"<h2>Weak scaling</h2>\n{table}\n{chart}\n{more}"
