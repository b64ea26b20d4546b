"""Text renderings of a Comparison that need no terminal: markdown (fit for a CI job
summary or a pull-request comment) and JSON. The terminal table is in cli/compare.py."""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any, Dict, List

import pandas as pd

from gpubench.results import schema
from gpubench.results.compare import Comparison, counts
from gpubench.results.compare_stats import ALPHA, MIN_TRIALS

RULE = (f"slower/faster: the ratio of medians is past the threshold, its 95% CI "
        f"excludes 1 and p < {ALPHA} (test: Mann-Whitney, or Wilcoxon signed-rank on the "
        f"paired rounds of one suite); same: the CI lies within ±threshold; "
        f"inconclusive: otherwise, inside a noise floor, or fewer than {MIN_TRIALS} ok "
        f"trials a side")


def num(value: Any, fmt: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else format(v, fmt)


def value_text(value: Any) -> str:
    """A measured value: thousands separated when large, 4 significant digits else."""
    text = num(value, "g")
    return num(value, ",.0f") if text and abs(float(value)) >= 1000 else num(value, ".4g")


def signed_pct(value: Any) -> str:
    return num(value, "+.1f") + "%" if num(value, "g") else ""


def config_label(row: pd.Series) -> str:
    """workload [params] backend mode precision batch N, the other identity columns
    that are not their default (`exec=xla`), then (device); blanks skipped."""
    def text(column: str) -> str:
        v = row.get(column)
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    parts = [text("workload") + (f" [{text('params')}]" if text("params") else ""),
             text("backend"), text("mode"), text("precision"),
             f"batch {text('batch_size')}" if text("batch_size") else "",
             *(f"{c}={v}" for c, v in schema.non_default_configuration(row)),
             f"({text('device_name')})" if text("device_name") else ""]
    return " ".join(p for p in parts if p)


def verdict_text(row: pd.Series) -> str:
    """The verdict as read, with what it stands on when that is not the run or process
    (`faster (pooled trials)`)."""
    verdict = str(row["verdict"]).replace("_", " ")
    caveat = row.get("caveat")
    return f"{verdict} ({caveat})" if isinstance(caveat, str) and caveat else verdict


def ci_text(row: pd.Series) -> str:
    low, high = num(row["ci_low"], ".3f"), num(row["ci_high"], ".3f")
    return f"{low}–{high}" if low and high else ""


def headline(comparison: Comparison) -> str:
    tally = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts(comparison.table).items())
    return (f"{comparison.metric}, threshold {comparison.threshold:.1%}: {tally}")


OPTIONAL = ("J/sample Δ", "SM clock Δ", "note")  # columns left out when empty in every row
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|#!~])")


def md_escape(text: Any) -> str:
    """Text from result files as literal markdown: HTML as entities (no raw `<`), then
    markdown punctuation backslash-escaped (no links, emphasis or table breaks)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=False))


def to_markdown(comparison: Comparison) -> str:
    t = comparison.table
    lines: List[str] = ["## gpubench compare", ""]
    if comparison.by:
        lines.append(f"Grouped by `{comparison.by}`; baseline {md_escape(comparison.groups[0])!s}, "
                     f"compared: {', '.join(md_escape(g) for g in comparison.groups[1:])}.")
    else:
        lines.append(f"Base: {md_escape(comparison.inputs[0])} · New: {md_escape(comparison.inputs[1])}")
    c = counts(t)
    status = "**regression**" if c.get("slower") else "no regression"
    lines += ["", f"{status} · {md_escape(headline(comparison))}", ""]
    header = ["verdict", "configuration", "base", "new", "n base/new", "median base",
              "median new", "change", "95% CI of ratio", "p", "test", "J/sample Δ", "SM clock Δ", "note"]
    if not comparison.by:
        header.remove("base")
        header.remove("new")
    rows = []
    for _, r in t.iterrows():
        verdict = verdict_text(r)
        cells = {
            "verdict": verdict.replace("slower", "**slower**", 1) if r["verdict"] == "slower" else verdict,
            "configuration": md_escape(config_label(r)),
            "base": md_escape(r["base"]), "new": md_escape(r["new"]),
            "n base/new": f"{r['n_base']}/{r['n_new']}",
            "median base": value_text(r["median_base"]), "median new": value_text(r["median_new"]),
            "change": signed_pct(r["change_pct"]), "95% CI of ratio": ci_text(r),
            "p": num(r["p_value"], ".3g"), "test": md_escape(r.get("test") or ""),
            "J/sample Δ": signed_pct(r["j_per_sample_change_pct"]),
            "SM clock Δ": md_escape(clock_text(r)),
            "note": md_escape(r["note"]) if r["note"] else "",
        }
        rows.append(cells)
    header = [h for h in header if h not in OPTIONAL or any(c[h] for c in rows)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if h in ("verdict", "configuration", "base", "new", "note")
                                else "--:" for h in header) + "|")
    lines += ["| " + " | ".join(c[h] for h in header) + " |" for c in rows]
    lines += ["", f"<sub>{md_escape(RULE)}.</sub>", ""]
    if len(comparison.scaling):
        lines += ["### Weak scaling efficiency: throughput(N) / (N x throughput(1))", "",
                  "| configuration | ranks | base | new | efficiency base | efficiency new | change |",
                  "|---|--:|---|---|--:|--:|--:|"]
        lines += [f"| {md_escape(config_label(r))} | {r['world_size']:.0f} | {md_escape(r['base'])} "
                  f"| {md_escape(r['new'])} | {r['efficiency_base']:.1%} | {r['efficiency_new']:.1%} "
                  f"| {r['change_points']:+.1f} points |" for _, r in comparison.scaling.iterrows()]
        lines.append("")
    return "\n".join(lines)


def clock_text(row: pd.Series) -> str:
    """The SM clock change, and the share of throttled trials when any was."""
    fracs = [row["throttled_base_frac"], row["throttled_new_frac"]]
    shown = [num(f, ".0%") or "–" for f in fracs]
    mark = f" (throttled {shown[0]} → {shown[1]})" if any(num(f, "g") and f > 0 for f in fracs) else ""
    return signed_pct(row["sm_clock_change_pct"]) + mark


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def to_json(comparison: Comparison, outcome: str, exit_code: int) -> str:
    rows: List[Dict[str, Any]] = [{k: _clean(v) for k, v in r.items()}
                                  for r in comparison.table.to_dict(orient="records")]
    payload = {"metric": comparison.metric, "threshold": comparison.threshold,
               "inputs": comparison.inputs, "by": comparison.by, "groups": comparison.groups,
               "rule": RULE, "counts": counts(comparison.table), "outcome": outcome,
               "exit_code": exit_code, "rows": rows,
               "scaling": [{k: _clean(v) for k, v in r.items()}
                           for r in comparison.scaling.to_dict(orient="records")]}
    return json.dumps(payload, indent=2) + "\n"
