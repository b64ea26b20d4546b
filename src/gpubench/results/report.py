"""`gpubench report`: one self-contained HTML file from result folders.

Inline CSS and inline SVG only: no JavaScript, no external URL, and a
Content-Security-Policy that forbids loading anything, so the file opens offline and
an injected script could not run. Every string from a result file goes through
html.escape (`esc`): a workload or error text holding `<script>` shows as text.

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
from gpubench.results.report_svg import bar_chart, downsample, esc, line_chart
from gpubench.results.report_latency import latency_section
from gpubench.results.report_power import power_section
from gpubench.results.report_scaling import scaling_section
from gpubench.results.report_trend import trend_section
from gpubench.stats import describe

THR = "throughput_samples_per_s"
# samples.csv quantities drawn as traces: column, title, unit.
TRACES = (("power_w", "Power", "W"), ("sm_clock_mhz", "SM clock", "MHz"),
          ("gpu_util_pct", "GPU utilisation", "%"), ("temp_c", "GPU temperature", "°C"),
          ("cpu_util_pct", "CPU utilisation (machine)", "%"))
SAMPLE_COLUMNS = ("t_s", "device_index", "trial", "power_w", "gpu_util_pct", "mem_util_pct",
                  "mem_used_bytes", "sm_clock_mhz", "mem_clock_mhz", "temp_c", "cpu_util_pct",
                  "proc_cpu_pct", "rss_bytes")
MAX_TRACES = 12  # runs drawn per trace chart; the rest are named in a note

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}.t{text-align:left}
.slower{color:#b00;font-weight:bold}.faster{color:#070}.inconclusive{color:#a60}
svg{max-width:100%;height:auto}.failed,.timeout{color:#b00}.note{color:#666;font-size:12px}pre{white-space:pre-wrap;margin:0}
"""
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
    return rows


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
           optional: Sequence[str] = ()) -> str:
    """An HTML table of already escaped cells; `optional` columns empty in every row
    are left out."""
    keep = [i for i, h in enumerate(headers) if h not in optional or any(r[i] for r in rows)]
    head = "".join(f'<th class="t">{esc(headers[i])}</th>' if i < text_cols else f"<th>{esc(headers[i])}</th>"
                   for i in keep)
    body = "".join("<tr>" + "".join(
        f'<td class="t">{r[i]}</td>' if i < text_cols else f"<td>{r[i]}</td>" for i in keep) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def label_html(label: str) -> str:
    """An escaped configuration label that may break after a `;` (a params list has no
    spaces: unbroken, it would widen the table past the page)."""
    return ";<wbr>".join(esc(part) for part in str(label).split(";"))


def _summary_section(rows: List[Dict[str, object]]) -> str:
    headers = ("group", "configuration", "ok trials", "median samples/s", "95% CI", "CV",
               "max QPS", "p50 ms", "J/sample", "W", "SM MHz", "throttled", "status",
               "error (last line)")
    cells = []
    for r in rows:
        ci = f"{value_text(r['ci_low'])}–{value_text(r['ci_high'])}" if num(r["ci_low"], "g") else ""
        status = esc(r["status"])
        cells.append([esc(r["group"]), label_html(r["config"]), esc(r["trials"]), value_text(r["median"]),
                      ci, num(r["cv"], ".1%"), value_text(r["max_qps"]), num(r["p50_ms"], ".4g"),
                      num(r["j_per_sample"], ".4g"),
                      num(r["power_w"], ".1f"), num(r["sm_clock_mhz"], ".0f"),
                      "yes" if r["throttled"] else "",
                      status if r["status"] == "ok" else f'<span class="failed">{status}</span>',
                      f'<pre class="t">{esc(r["error"])}</pre>' if r["error"] else ""])
    return _table(headers, cells, optional=("max QPS", "p50 ms", "J/sample", "W", "SM MHz",
                                            "throttled", "error (last line)"))


def _throughput_chart(rows: List[Dict[str, object]], groups: List[str]) -> str:
    values = {(str(r["config"]), str(r["group"])): (float(r["median"]), float(r["ci_low"]), float(r["ci_high"]))
              for r in rows if math.isfinite(float(r["median"]))}
    if not values:
        if any(math.isfinite(float(r["max_qps"])) for r in rows):
            return ('<p class="note">Throughput: a --find-max-qps search states its max QPS '
                    "(the table above), not samples/s.</p>")
        return '<p class="note">Throughput: no ok trial in these results.</p>'
    configs = list(dict.fromkeys(c for c, _ in values))
    return bar_chart("Throughput (median, 95% CI)", "samples/s", configs, groups, values)


def _energy_chart(data: ReportData) -> str:
    """Joules per sample per configuration and group, with the CI of the median."""
    t = data.trials[data.trials["status"] == "ok"].assign(_config=lambda f: _configs(f))
    values = {}
    for (config, group), g in t.groupby(["_config", "group"], sort=False):
        d = describe(g[load.DERIVED].to_numpy(dtype=float))
        if d["n"]:
            values[(config, group)] = (d["median"], d["ci_low"], d["ci_high"])
    if not values:
        return '<p class="note">Energy per sample: not measured in these results (no energy_j).</p>'
    configs = list(dict.fromkeys(c for c, _ in values))
    return bar_chart("Energy per sample (median, 95% CI)", "J/sample", configs, data.groups, values)


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


def _traces_section(data: ReportData) -> str:
    s = data.samples
    if s.empty:
        return '<p class="note">No telemetry time series (samples.csv) in these results.</p>'
    first = data.trials.drop_duplicates("run_id").set_index("run_id")
    names = {str(rid): f"{row['group']} · {config_label(row)}" for rid, row in first.iterrows()}
    run_ids = [r for r in dict.fromkeys(s["run_id"]) if r in names]
    shown, hidden = run_ids[:MAX_TRACES], run_ids[MAX_TRACES:]
    charts = []
    for column, title, unit in TRACES:
        if column not in s.columns or s[column].notna().sum() == 0:
            continue
        series = []
        for rid in shown:
            run = s[(s["run_id"] == rid) & s[column].notna()].sort_values("t_s")
            if len(run):
                xs, ys = downsample(run["t_s"].to_numpy(float), run[column].to_numpy(float))
                series.append((f"{names[rid]} ({rid})", xs, ys))
        if series:
            charts.append(line_chart(f"{title} during the runs", "time since run start (s)", unit, series))
    if not charts:
        return '<p class="note">samples.csv holds none of: ' + esc(", ".join(c for c, _, _ in TRACES)) + ".</p>"
    if hidden:
        charts.append(f'<p class="note">{len(hidden)} more runs not drawn: {esc(", ".join(hidden))}.</p>')
    return "\n".join(charts)


def render_report(data: ReportData, threshold: float = 0.05) -> str:
    rows = summary_rows(data)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    groups = ", ".join(esc(g) for g in data.groups)
    inputs = "".join(f"<li>{esc(p)}</li>" for p in data.inputs)
    by = f" by <code>{esc(data.by)}</code>" if data.by else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gpubench report</title><style>{CSS}</style></head>
<body>
<h1>gpubench report</h1>
<p class="note">gpubench {esc(__version__)} · {esc(stamp)} · {len(data.trials)} trial rows · groups{by}: {groups}</p>
<ul class="note">{inputs}</ul>
<h2>Summary</h2>
{_summary_section(rows)}
<h2>Throughput per configuration</h2>
{_throughput_chart(rows, data.groups)}
<h2>Energy per sample</h2>
{_energy_chart(data)}
<h2>Comparison against {esc(data.groups[0])}</h2>
{_comparison_section(data, threshold)}
{scaling_section(data.trials, data.groups)}
{power_section(data.trials, data.groups)}
{latency_section(data.trials, data.groups)}
{trend_section(data.trials, threshold)}
<h2>Telemetry</h2>
{_traces_section(data)}
</body></html>
"""


def build_report(paths: Sequence[Path], by: Optional[str] = None, baseline: Optional[str] = None,
                 threshold: float = 0.05, filters=None) -> str:
    return render_report(load_report(paths, by, baseline, filters), threshold)
