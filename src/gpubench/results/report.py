"""`gpubench report`: one self-contained HTML file from result folders.

Tables in HTML and charts drawn by plotly.js (results/report_plot.py), which is embedded
in the file once: it opens offline. A Content-Security-Policy loads nothing from
anywhere and runs only the page's own two scripts (allowed by their hashes), so an
injected script could not run; and every string from a result file is escaped
(`esc` in HTML, `text` in a figure): a workload or error text holding `<script>` shows
as text.

Laid out for reading: the inputs (a suite) are named once at the top with what every
row shares (host, device, driver...); throughput and energy are drawn one panel per
workload and mode with the backends side by side (report_panels.py); inference gets
its latency percentiles; telemetry is small multiples, a panel per run.

Groups are the inputs (one per RESULTS argument, labelled by its name) or, with
`by`, the values of that column; the first group (or `baseline`) is the one the
others are compared against.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

from gpubench import __version__
from gpubench.errors import UserError
from gpubench.results import compare_load as load
from gpubench.results.compare import compare, counts
from gpubench.results.compare_format import (
    RULE, ci_text, clock_text, config_label, num, signed_pct, value_text,
)
from gpubench.results.report_plot import RENDER_JS, Charts, esc, plotly_js, script_hash
from gpubench.results.report_latency import latency_section
from gpubench.results.report_panels import (
    bar_panels, facts_html, latency_panels, panel_title, uniform_facts,
)
from gpubench.results.report_power import power_section
from gpubench.results.report_scaling import scaling_section
from gpubench.results.report_telemetry import telemetry_section
from gpubench.results.report_trend import trend_section
from gpubench.stats import describe

THR = "throughput_samples_per_s"
SAMPLE_COLUMNS = ("t_s", "device_index", "trial", "power_w", "gpu_util_pct", "mem_util_pct",
                  "mem_used_bytes", "sm_clock_mhz", "mem_clock_mhz", "temp_c", "cpu_util_pct",
                  "proc_cpu_pct", "rss_bytes")
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1280px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}.t{text-align:left}tr.panel td{background:#fafafa;font-weight:bold;text-align:left}
.slower{color:#b00;font-weight:bold}.faster{color:#070}.inconclusive{color:#a60}
.failed,.timeout{color:#b00}.note{color:#666;font-size:12px}pre{white-space:pre-wrap;margin:0}
.facts{font-size:13px;margin:4px 0 12px}.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px}
.chart{min-height:120px}
"""
# Nothing is loaded from anywhere; the page's own scripts run (their hashes are added).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@dataclass
class ReportData:
    trials: pd.DataFrame   # checked trial rows with a `group` column
    samples: pd.DataFrame  # samples.csv rows with `run_id` (may be empty)
    groups: List[str]      # baseline first
    inputs: List[str]
    by: Optional[str]


def _read_samples(path: Path, trials: pd.DataFrame) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()  # a run that recorded no telemetry
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "t_s" not in frame.columns:
        raise UserError(f"{path}: missing required column t_s")
    load.check_units(frame.columns, SAMPLE_COLUMNS, path)
    frame = load.check_numeric(frame, [c for c in SAMPLE_COLUMNS if c in frame.columns], path)
    if "run_id" not in frame.columns:  # a run folder's samples belong to its one run
        run_ids = list(dict.fromkeys(trials["run_id"].dropna().astype(str)))
        if len(run_ids) != 1:
            raise UserError(f"{path}: no run_id column, and {path.parent / 'trials.csv'} holds "
                            f"{len(run_ids)} runs")
        frame.insert(0, "run_id", run_ids[0])
    frame["run_id"] = frame["run_id"].astype(str)
    return frame


def load_report(paths: Sequence[Path], by: Optional[str] = None,
                baseline: Optional[str] = None, filters=None) -> ReportData:
    if not paths:
        raise UserError("report needs at least one RESULTS input")
    names = _input_labels([Path(p) for p in paths])
    trial_frames, sample_frames = [], []
    for path, name in zip(paths, names):
        if load.is_store_input(Path(path)):  # a results store (results/store/read.py)
            from gpubench.results.store.read import read_samples

            frame = load.read_input(Path(path), filters).assign(group=name)
            trial_frames.append(frame)
            sample_frames.append(read_samples(Path(path), frame["run_id"].dropna().astype(str)))
            continue
        files = load.find_trial_files(Path(path))
        frame = load.read_input(Path(path), filters) if filters else load.read_files(files)
        frame["group"] = name
        trial_frames.append(frame)
        for f in files:
            own = frame[frame["source"] == str(f)]
            sample_frames.append(_read_samples(f.parent / "samples.csv", own))
    trials = pd.concat(trial_frames, ignore_index=True)
    label = " and ".join(str(p) for p in paths)
    if by is not None:
        trials["group"] = load.by_labels(trials, by, label).replace("", "(empty)")
    groups = list(dict.fromkeys(trials["group"]))
    if baseline is not None:
        if baseline not in groups:
            raise UserError(f"--baseline {baseline!r}: no such group in {label} "
                            f"(groups: {', '.join(repr(g) for g in groups)})")
        groups.remove(baseline)
        groups.insert(0, baseline)
    samples = [s for s in sample_frames if len(s)]
    return ReportData(trials, pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(),
                      groups, [str(p) for p in paths], by)


def _input_labels(paths: List[Path]) -> List[str]:
    """Short distinct names: the folder (or file) name, with its parent when needed."""
    labels = [p.parent.name if p.name == "trials.csv" else p.name or str(p) for p in paths]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = f"{label} ({i + 1})"
    return labels


def _configs(trials: pd.DataFrame) -> pd.Series:
    return trials.apply(config_label, axis=1)


def summary_rows(data: ReportData) -> List[Dict[str, object]]:
    """One row per group and configuration, over its ok trials."""
    t = data.trials.assign(_config=_configs(data.trials))
    rows = []
    for config in dict.fromkeys(t["_config"]):
        for group in data.groups:
            g = t[(t["_config"] == config) & (t["group"] == group)]
            if g.empty:
                continue
            ok = g[g["status"] == "ok"]
            search = is_search(ok)
            # a search's probes ran at rates it chose: their pooled samples/s say nothing
            d = describe(ok.loc[~search, THR].to_numpy(dtype=float))
            errors = g["error"].dropna().astype(str) if "error" in g.columns else pd.Series(dtype=str)
            errors = errors[errors.str.strip() != ""]
            statuses = sorted(set(g["status"].astype(str)))
            rows.append({
                "group": group, "config": config, "trials": f"{len(ok)}/{len(g)}",
                "ident": g.iloc[0].to_dict(),
                "max_qps": _last(ok[search], "max_qps"),
                "median": d["median"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "cv": d["cv"],
                "p50_ms": _median(ok[~search], "latency_p50_ms"),
                "j_per_sample": _median(ok, load.DERIVED),
                "power_w": _median(ok, "power_avg_w"), "sm_clock_mhz": _median(ok, "sm_clock_mhz"),
                "throttled": ok["throttled"].astype(str).str.lower().isin(("true", "1", "1.0")).any()
                if "throttled" in ok.columns else False,
                "status": "ok" if statuses == ["ok"] else "/".join(statuses),
                "error": errors.iloc[-1].strip().splitlines()[-1] if len(errors) else "",
            })
    order = list(dict.fromkeys(panel_title(r["ident"]) for r in rows))
    return sorted(rows, key=lambda r: order.index(panel_title(r["ident"])))  # stable: a panel together


def is_search(trials: pd.DataFrame) -> pd.Series:
    """The rows of --find-max-qps probes: the server scenario's, at no fixed rate."""
    if "offered_qps" not in trials.columns or "target_qps" not in trials.columns:
        return pd.Series(False, index=trials.index)
    return ((trials["scenario"] == "server") & trials["target_qps"].isna()
            & trials["offered_qps"].notna())


def _last(frame: pd.DataFrame, column: str) -> float:
    """The last value of `column` (a search's result is on its last probe's row)."""
    if column not in frame.columns:
        return math.nan
    values = pd.to_numeric(frame[column], errors="coerce").dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def _median(frame: pd.DataFrame, column: str) -> float:
    if column not in frame.columns:
        return math.nan
    values = pd.to_numeric(frame[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 2,
           optional: Sequence[str] = (), headings: Optional[Dict[int, str]] = None) -> str:
    """An HTML table of already escaped cells; `optional` columns empty in every row
    are left out; `headings` (row index -> escaped text) a full-width row before it."""
    keep = [i for i, h in enumerate(headers) if h not in optional or any(r[i] for r in rows)]
    head = "".join(f'<th class="t">{esc(headers[i])}</th>' if i < text_cols else f"<th>{esc(headers[i])}</th>"
                   for i in keep)
    headings = headings or {}
    body = "".join(
        (f'<tr class="panel"><td colspan="{len(keep)}">{headings[n]}</td></tr>' if n in headings else "")
        + "<tr>" + "".join(f'<td class="t">{r[i]}</td>' if i < text_cols else f"<td>{r[i]}</td>"
                           for i in keep) + "</tr>"
        for n, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def label_html(label: str) -> str:
    """An escaped configuration label that may break after a `;` (a params list has no
    spaces: unbroken, it would widen the table past the page)."""
    return ";<wbr>".join(esc(part) for part in str(label).split(";"))


def _summary_section(rows: List[Dict[str, object]], several_groups: bool) -> str:
    headers = ("group", "configuration", "ok trials", "median samples/s", "95% CI", "CV",
               "max QPS", "p50 ms", "J/sample", "W", "SM MHz", "throttled", "status",
               "error (last line)")
    cells, panel_rows = [], {}
    for r in rows:
        panel = esc(panel_title(r["ident"]))
        if panel not in panel_rows.values():  # a heading before a panel's first row
            panel_rows[len(cells)] = panel
        ci = f"{value_text(r['ci_low'])}–{value_text(r['ci_high'])}" if num(r["ci_low"], "g") else ""
        status = esc(r["status"])
        cells.append([esc(r["group"]), label_html(r["config"]), esc(r["trials"]), value_text(r["median"]),
                      ci, num(r["cv"], ".1%"), value_text(r["max_qps"]), num(r["p50_ms"], ".4g"),
                      num(r["j_per_sample"], ".4g"),
                      num(r["power_w"], ".1f"), num(r["sm_clock_mhz"], ".0f"),
                      "yes" if r["throttled"] else "",
                      status if r["status"] == "ok" else f'<span class="failed">{status}</span>',
                      f'<pre class="t">{esc(r["error"])}</pre>' if r["error"] else ""])
    optional = ("max QPS", "p50 ms", "J/sample", "W", "SM MHz", "throttled", "error (last line)")
    if not several_groups:  # one group: the inputs are named once, at the top
        headers, cells = headers[1:], [c[1:] for c in cells]
    return _table(headers, cells, text_cols=2 if several_groups else 1, optional=optional,
                  headings=panel_rows if len(panel_rows) > 1 else None)


def _throughput_chart(rows: List[Dict[str, object]], groups: List[str], charts: Charts,
                      omit: Sequence[str]) -> str:
    panels = bar_panels(rows, groups, ("median", "ci_low", "ci_high"), "samples/s", charts, omit)
    if not panels:
        if any(math.isfinite(float(r["max_qps"])) for r in rows):
            return ('<p class="note">Throughput: a --find-max-qps search states its max QPS '
                    "(the table above), not samples/s.</p>")
        return '<p class="note">Throughput: no ok trial in these results.</p>'
    return ('<p class="note">Median samples/s of each configuration\'s ok trials; whiskers: 95% '
            "CI of the median. One panel per workload and mode, each on its own scale "
            "from 0.</p>" + panels)


def _energy_chart(data: ReportData, charts: Charts, omit: Sequence[str]) -> str:
    """Joules per sample per configuration and group, with the CI of the median."""
    t = data.trials[data.trials["status"] == "ok"].assign(_config=lambda f: _configs(f))
    rows = []
    for (config, group), g in t.groupby(["_config", "group"], sort=False):
        d = describe(g[load.DERIVED].to_numpy(dtype=float))
        if d["n"]:
            rows.append({"group": group, "ident": g.iloc[0].to_dict(), "median": d["median"],
                         "ci_low": d["ci_low"], "ci_high": d["ci_high"]})
    panels = bar_panels(rows, data.groups, ("median", "ci_low", "ci_high"), "J/sample", charts,
                        omit)
    if not panels:
        return '<p class="note">Energy per sample: not measured in these results (no energy_j).</p>'
    return ('<p class="note">Energy per sample (median, 95% CI), one panel per workload and '
            "mode.</p>" + panels)


def _comparison_section(data: ReportData, threshold: float) -> str:
    if len(data.groups) < 2:
        return '<p class="note">One group only: nothing to compare.</p>'
    base = data.trials[data.trials["group"] == data.groups[0]]
    parts = []
    for group in data.groups[1:]:
        table = compare(base, data.trials[data.trials["group"] == group], THR, threshold,
                        by=data.by, labels=(data.groups[0], group))
        tally = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts(table).items())
        cells = [[label_html(config_label(r)), f'<span class="{esc(r["verdict"])}">{esc(r["verdict"].replace("_", " "))}</span>',
                  f"{r['n_base']}/{r['n_new']}", value_text(r["median_base"]), value_text(r["median_new"]),
                  signed_pct(r["change_pct"]), ci_text(r), num(r["p_value"], ".2g"),
                  signed_pct(r["j_per_sample_change_pct"]), esc(clock_text(r)),
                  esc(r["note"] or "")] for _, r in table.iterrows()]
        parts.append(f"<h3>{esc(group)} against {esc(data.groups[0])}: {esc(tally)}</h3>" + _table(
            ("configuration", "verdict", "n", "median base", "median new", "change", "95% CI of ratio",
             "p", "J/sample Δ", "SM clock Δ", "note"), cells, text_cols=1,
            optional=("J/sample Δ", "SM clock Δ", "note")))
    parts.append(f'<p class="note">Throughput, threshold {threshold:.1%}. {esc(RULE)}.</p>')
    return "\n".join(parts)


def _header(data: ReportData) -> str:
    """The inputs named once, with the facts every row shares."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t = data.trials
    runs = t["run_id"].nunique() if "run_id" in t.columns else 0
    configs = _configs(t).nunique()
    by = f" by <code>{esc(data.by)}</code>" if data.by else ""
    inputs = "".join(f"<li>{esc(p)}</li>" for p in data.inputs)
    groups = (f" · groups{by}: " + ", ".join(f"<b>{esc(g)}</b>" for g in data.groups)
              if len(data.groups) > 1 else "")
    facts = uniform_facts(t)
    return (f'<ul class="facts">{inputs}</ul>'
            f'<p class="facts">{runs} runs · {configs} configurations · {len(t)} trial rows'
            f"{groups}</p>"
            + (f'<p class="facts">{facts_html(facts)}</p>' if facts else "")
            + f'<p class="note">gpubench {esc(__version__)} · {esc(stamp)}</p>')


def render_report(data: ReportData, threshold: float = 0.05) -> str:
    rows = summary_rows(data)
    charts = Charts()
    omit = [value for _, value in uniform_facts(data.trials)]
    several = len(data.groups) > 1
    body = f"""<h1>gpubench report</h1>
{_header(data)}
<h2>Summary</h2>
{_summary_section(rows, several)}
<h2>Throughput per configuration</h2>
{_throughput_chart(rows, data.groups, charts, omit)}
<h2>Energy per sample</h2>
{_energy_chart(data, charts, omit)}
{latency_panels(data.trials, data.groups, charts, omit)}
<h2>Comparison against {esc(data.groups[0])}</h2>
{_comparison_section(data, threshold)}
{scaling_section(data.trials, data.groups, charts)}
{power_section(data.trials, data.groups, charts)}
{latency_section(data.trials, data.groups, charts)}
{trend_section(data.trials, threshold, charts)}
<h2>Telemetry</h2>
{telemetry_section(data.trials, data.samples, several, charts)}
"""
    return page("gpubench report", body, charts)


def page(title: str, body: str, charts: Charts) -> str:
    """A whole HTML page: plotly.js and the render script inline (allowed by hash),
    the figures as JSON; without charts, no script at all."""
    scripts, csp = "", CSP
    if charts.figures:
        library = plotly_js()
        scripts = (f"<script>{library}</script>\n{charts.data_script()}\n"
                   f"<script>{RENDER_JS}</script>")
        csp += f"; script-src {script_hash(library)} {script_hash(RENDER_JS)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body>
{body}
{scripts}
</body></html>
"""


def build_report(paths: Sequence[Path], by: Optional[str] = None, baseline: Optional[str] = None,
                 threshold: float = 0.05, filters=None) -> str:
    return render_report(load_report(paths, by, baseline, filters), threshold)
