"""The report's panels: one chart per workload (with its parameters) and mode, the
backends side by side in it and the groups as bars of their own colour, so that no axis
holds two workloads (MNIST at 300k samples/s beside LeNet-5 at 10k would flatten the
smaller one). What is the same in every configuration of a panel is said once, in its
title; what is the same across the whole report, in the report's header.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import pandas as pd

from gpubench.results import schema
from gpubench.results.report_plot import Charts, bar_figure, esc, layout, axis, numbers, text, color

# Latency percentile columns drawn for inference (those present).
PERCENTILES = (("latency_p50_ms", "p50"), ("latency_p90_ms", "p90"), ("latency_p99_ms", "p99"),
               ("latency_p999_ms", "p99.9"))
# Environment facts the header names once when every row agrees.
FACTS = (("host", "host"), ("device_name", "device"), ("driver_version", "driver"),
         ("cuda_version", "CUDA"), ("framework", "framework"),
         ("framework_version", "framework version"), ("suite_id", "suite"))


def _text(v: Any) -> str:
    return schema.key_text(v) if v is not None else ""


def panel_title(ident: Dict[str, Any]) -> str:
    """workload [params] · mode (· scenario when it is not plain throughput)."""
    workload = _text(ident.get("workload"))
    params = _text(ident.get("params"))
    scenario = _text(ident.get("scenario"))
    parts = [workload + (f" [{params}]" if params else ""), _text(ident.get("mode"))]
    if scenario and scenario != "throughput":
        parts.append(scenario)
    return " · ".join(p for p in parts if p)


def label_parts(ident: Dict[str, Any]) -> List[Tuple[str, str]]:
    """The parts of a configuration's label besides its panel: backend, precision,
    batch, the identity columns not at their default, the device."""
    batch = _text(ident.get("batch_size"))
    parts = [("backend", _text(ident.get("backend"))), ("precision", _text(ident.get("precision"))),
             ("batch", f"batch {batch}" if batch else "")]
    parts += [(c, f"{c}={v}") for c, v in schema.non_default_configuration(ident)
              if c != "scenario"]
    parts.append(("device", _text(ident.get("device_name"))))
    return [(k, v) for k, v in parts if v]


def uniform_facts(trials: pd.DataFrame) -> List[Tuple[str, str]]:
    """(name, value) of the FACTS every row of the report agrees on."""
    out = []
    for column, name in FACTS:
        if column not in trials.columns:
            continue
        values = {_text(v) for v in trials[column].dropna().unique()} - {""}
        if len(values) == 1:
            out.append((name, values.pop()))
    return out


def panels(idents: Sequence[Dict[str, Any]], omit: Sequence[str] = ()) -> Dict[str, List[Tuple[int, str]]]:
    """Panel title -> [(index into idents, its x label)]: the label holds the parts
    that vary within the panel (the backend at least); the parts common to the panel
    go into its title, those in `omit` (named in the header) nowhere."""
    by_panel: Dict[str, List[int]] = {}
    for i, ident in enumerate(idents):
        by_panel.setdefault(panel_title(ident), []).append(i)
    out: Dict[str, List[Tuple[int, str]]] = {}
    for title, members in by_panel.items():
        parts = [dict(label_parts(idents[i])) for i in members]
        keys = list(dict.fromkeys(k for p in parts for k in p))
        varying = [k for k in keys if len({p.get(k, "") for p in parts}) > 1]
        common = [parts[0][k] for k in keys if k not in varying and k in parts[0]
                  and parts[0][k] not in omit and k != "backend"]
        shown = [k for k in keys if k in varying or k == "backend"]
        full = title + (" · " + " ".join(common) if common else "")
        out[full] = [(i, " ".join(p[k] for k in shown if p.get(k)) or title)
                     for i, p in zip(members, parts)]
    return out


def bar_panels(rows: Sequence[Dict[str, Any]], groups: Sequence[str], fields: Tuple[str, str, str],
               unit: str, charts: Charts, omit: Sequence[str] = ()) -> str:
    """One bar chart per panel of `rows` (summary rows with `ident`), the value and
    its CI from `fields` (median, low, high); rows without a finite value left out."""
    rows = [r for r in rows if math.isfinite(float(r[fields[0]]))]
    if not rows:
        return ""
    out = []
    for title, members in panels([r["ident"] for r in rows], omit).items():
        values = {}
        for i, label in members:
            r = rows[i]
            values[(label, str(r["group"]))] = tuple(float(r[f]) for f in fields)
        labels = list(dict.fromkeys(label for _, label in members))
        out.append(charts.add(bar_figure(title, unit, labels, groups, values)))
    return '<div class="panels">' + "\n".join(out) + "</div>"


def latency_panels(trials: pd.DataFrame, groups: Sequence[str], charts: Charts,
                   omit: Sequence[str] = ()) -> str:
    """Inference: per panel, the median over ok trials of each latency percentile, per
    backend (and group), the percentiles side by side. The server scenario's rows are
    left to the latency-against-load section."""
    cols = [(c, name) for c, name in PERCENTILES if c in trials.columns]
    if not cols or "mode" not in trials.columns:
        return ""
    t = trials[(trials["mode"] == "infer") & (trials["status"] == "ok")]
    if "scenario" in t.columns:
        t = t[t["scenario"] != "server"]
    t = t[t[[c for c, _ in cols]].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)]
    if t.empty:
        return ""
    key = [c for c in schema.match_columns() if c in t.columns]
    rows = []
    for (group, *_), part in t.groupby(["group", *key], sort=False, dropna=False):
        ident = part.iloc[0].to_dict()
        rows.append((str(group), ident, {c: float(pd.to_numeric(part[c], errors="coerce").median())
                                         for c, _ in cols}))
    out = []
    several = len(groups) > 1
    for title, members in panels([r[1] for r in rows], omit).items():
        xs = [label + (f" · {rows[i][0]}" if several else "") for i, label in members]
        data = []
        for j, (c, name) in enumerate(cols):
            ys = [rows[i][2][c] for i, _ in members]
            if not any(math.isfinite(y) for y in ys):
                continue
            data.append({"type": "bar", "name": name, "x": [text(x) for x in xs],
                         "y": numbers(ys), "marker": {"color": color(j)},
                         "hovertemplate": "%{x}<br>" + name + ": %{y:.4~g} ms<extra></extra>"})
        out.append(charts.add({"data": data, "layout": layout(
            text(title), 300, barmode="group", xaxis=axis(type="category"),
            yaxis=axis("latency (ms), median of the trials", rangemode="tozero"))}))
    note = ('<p class="note">Step latency percentiles of inference runs (the trials\' '
            "medians); the server scenario's are in Latency against load.</p>")
    return ("<h2>Inference latency</h2>\n" + note + '<div class="panels">' + "\n".join(out)
            + "</div>")


def facts_html(facts: Sequence[Tuple[str, str]]) -> str:
    return " · ".join(f"{esc(name)} <b>{esc(value)}</b>" for name, value in facts)
