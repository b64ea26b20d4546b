"""The dashboard's HTML pages: the index (every series as a small chart, newest
regressions first, filters) and one page per series (its chart, the spread of its
runs, its changes and runs as tables). Every text from the results is escaped."""

from __future__ import annotations

import datetime
from typing import Dict, List, Sequence, Tuple

import pandas as pd

from gpubench import __version__
from gpubench.results.compare_format import num, value_text
from gpubench.results.dashboard.figures import series_figure, spread_figure
from gpubench.results.report_plot import Charts, esc

ASSETS = "assets"
# Scripts: the site's own files only (no inline script runs); nothing is fetched.
CSP = ("default-src 'none'; script-src 'self' file:; style-src 'self' 'unsafe-inline' file:; "
       "img-src data:")
EAGER = 8  # index charts drawn at once; the others when they scroll into view


def _page(title: str, body: str, charts: Charts, root: str, eager: int = 0) -> str:
    eager_attr = f' data-eager="{eager}"' if eager else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gpubench {esc(__version__)} dashboard">
<title>{esc(title)}</title>
<link rel="stylesheet" href="{root}{ASSETS}/dashboard.css"></head>
<body{eager_attr}>
{body}
{charts.data_script()}
<script src="{root}{ASSETS}/plotly.min.js"></script>
<script src="{root}{ASSETS}/dashboard.js"></script>
</body></html>
"""


def _date(t) -> str:
    return "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d")


def _badge(history) -> str:
    if history.status == "regression":
        ch = history.changes[-1]
        return (f'<span class="badge regression">regression {ch.change_pct:+.1f}% since '
                f"{esc(ch.started[:10])}</span>")
    if history.changes:
        ch = history.changes[-1]
        return (f'<span class="badge changed">{esc(ch.verdict)} {ch.change_pct:+.1f}% on '
                f"{esc(ch.started[:10])}</span>")
    if history.status == "too_few_runs":
        return '<span class="badge">too few runs for change points</span>'
    return '<span class="badge">no change</span>'


def _select(name: str, label: str, values: Sequence[str]) -> str:
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in sorted(set(values)))
    return (f'<label>{esc(label)} <select data-filter="{name}"><option value="">all</option>'
            f"{options}</select></label>")


def index_html(tables, found: Dict, order: List[int], env: pd.DataFrame, source: str,
               unit: str) -> str:
    series = tables.series.set_index("series")
    charts = Charts("s")
    by_series = dict(tuple(env.groupby("series"))) if len(env) else {}
    cards = []
    for sid in order:
        s, h = series.loc[sid], found[sid]
        fig = series_figure(h, by_series.get(sid, env.iloc[:0]), unit)
        last = _date(h.runs["started"].max()) if len(h.runs) else ""
        noise = f" · noise {h.noise:.1%}" if pd.notna(h.noise) else ""
        cards.append(
            f'<div class="card" data-machine="{esc(s["host"])}" data-workload="{esc(s["workload"])}"'
            f' data-backend="{esc(s["backend"])}" data-status="{esc(h.status)}"'
            f' data-label="{esc((s["label"] + " " + s["host"]).lower())}">'
            f'<div class="card-head"><a href="configs/{esc(s["page"])}">{esc(s["label"])}</a>'
            f'{_badge(h)}<span class="machine">{esc(s["host"])}</span></div>'
            f"{charts.add(fig)}"
            f'<div class="note">{len(h.runs)} runs · newest {esc(last)}{esc(noise)}</div></div>')
    runs = tables.runs
    start, end = _date(runs["started"].min()), _date(runs["started"].max())
    regressions = sum(found[sid].status == "regression" for sid in order)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""<h1>gpubench dashboard</h1>
<p class="facts">{esc(source)} · {len(runs):,} runs · {len(order):,} series (configuration and
machine) · {series["host"].nunique()} machines · {esc(start)} to {esc(end)} ·
<b>{regressions}</b> regressed</p>
<p class="note">Each point: a run's median {esc(unit)} over its ok trials, whiskers its 95% CI.
Dashed: segment medians between change points (gpubench history: red slower, green faster,
grey a shift within the threshold). Purple triangles: driver, CUDA, cuDNN or framework
changed. Newest regressions first. Built {esc(stamp)} by gpubench {esc(__version__)}.</p>
<div class="filters">{_select("machine", "machine", series["host"].tolist())}
{_select("workload", "workload", series["workload"].tolist())}
{_select("backend", "backend", series["backend"].tolist())}
<label><input type="checkbox" id="only-regressions"> regressions only</label>
<label>search <input type="search" id="search" placeholder="mnist fp16"></label>
<span id="count" class="note"></span></div>
<div class="cards">
{chr(10).join(cards)}
</div>"""
    return _page("gpubench dashboard", body, charts, "", eager=EAGER)


def _rows(headers: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1) -> str:
    head = "".join(f'<th class="t">{esc(h)}</th>' if i < text_cols else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="t">{c}</td>' if i < text_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def config_html(s: pd.Series, runs_all: pd.DataFrame, values: pd.DataFrame, history,
                env: pd.DataFrame, unit: str, threshold: float) -> Tuple[str, str]:
    """(file name, page) of one series: `s` its row of the series table, `runs_all`
    and `values` its rows of the runs and values tables."""
    charts = Charts("c")
    fig = series_figure(history, env, unit, height=380, compact=False)
    spread = spread_figure(history.runs, values, unit)
    changes = [[esc(ch.started[:16].replace("T", " ")), esc(ch.run_id),
                value_text(ch.median_before), value_text(ch.median_after),
                f'<span class="{esc(ch.verdict)}">{ch.change_pct:+.1f}% {esc(ch.verdict)}</span>',
                f"{num(ch.ci_low, '.3f')}–{num(ch.ci_high, '.3f')}", num(ch.p_value, ".2g"),
                f"{ch.n_before}/{ch.n_after}"] for ch in reversed(history.changes)]
    env_rows = [[esc(_date(r.started)), esc(r.run_id), esc(r.what)]
                for r in env.sort_values("started", ascending=False).itertuples()]
    newest = runs_all.sort_values("started", ascending=False, na_position="last")
    run_rows = [[esc(str(r.started)[:16]), esc(r.run_id), esc(r.status), str(r.trials),
                 value_text(r.value), (f"{value_text(r.ci_low)}–{value_text(r.ci_high)}"
                                       if pd.notna(r.ci_low) else ""),
                 esc(r.driver_version), esc(r.cuda_version),
                 esc(f"{r.framework} {r.framework_version}".strip())]
                for r in newest.itertuples()]
    notes = "".join(f"<li>{esc(n)}</li>" for n in history.notes)
    body = f"""<p><a href="../index.html">&larr; all series</a></p>
<h1>{esc(s["label"])}</h1>
<p class="facts">machine <b>{esc(s["host"])}</b> · {len(runs_all)} runs · {_badge(history)}</p>
<ul class="note">{notes}</ul>
<h2>Run medians over time</h2>
{charts.add(fig, "chart big")}
<h2>Spread of each run's trials</h2>
{charts.add(spread, "chart big")}
<h2>Change points</h2>
{_rows(("run started", "run", "median before", "median after", "change", "95% CI of ratio",
        "p", "runs before/after"), changes, 2) if changes else '<p class="note">None found.</p>'}
<p class="note">{esc(unit)}, threshold {threshold:.1%}; as gpubench history finds them.</p>
<h2>Environment changes</h2>
{_rows(("run started", "run", "change"), env_rows, 3) if env_rows else '<p class="note">None.</p>'}
<h2>Runs, newest first</h2>
{_rows(("started", "run", "status", "ok trials", "median", "95% CI", "driver", "CUDA",
        "framework"), run_rows, 3)}"""
    return s["page"], _page(s["label"], body, charts, "../")
