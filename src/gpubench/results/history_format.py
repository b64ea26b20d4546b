"""Text renderings of a History that need no terminal: markdown (a CI job summary) and
JSON. The terminal table is in cli/history.py."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pandas as pd

from gpubench.results.compare_format import _clean, config_label, md_escape, num, signed_pct, value_text
from gpubench.results.history import NOISE_MULTIPLE, Change, ConfigHistory, History

STATUS_TEXT = {"regression": "regression", "ok": "ok", "too_few_runs": "too few runs"}


def headline(h: History) -> str:
    changed = sum(bool(c.changes) for c in h.configs)
    few = sum(c.status == "too_few_runs" for c in h.configs)
    order = f"ordered by {h.by}" if h.by else "ordered by time"
    return (f"{h.metric}, threshold {h.threshold:.1%}, min segment {h.min_segment} runs, {order}: "
            f"{len(h.configs)} configuration(s), {changed} with changes, "
            f"{h.regressions} regression(s)" + (f", {few} with too few runs" if few else ""))


def rule(h: History) -> str:
    return (f"a change: {h.min_segment}+ runs each side, segment medians' 95% CI excludes 1, "
            f"p < 0.05, at least {NOISE_MULTIPLE:g}x the configuration's noise floor (its runs' "
            "own spread); slower/faster: past the "
            "threshold; shift: real but within it; regression: the newest change is slower")


def few_runs_note(h: History) -> Optional[str]:
    """The configurations with too few runs for a change, said once (it stands for each
    one's own note, which holds TOO_FEW_PREFIX); None when there are none."""
    few = [c for c in h.configs if c.status == "too_few_runs"]
    if not few:
        return None
    counts = sorted(len(c.runs) for c in few)
    runs = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"
    return (f"{len(few)} configuration(s) have too few runs ({runs}) to look for a change: "
            f"it needs {h.min_segment} (--min-segment) on each side, {2 * h.min_segment} in all")


def label(c: ConfigHistory) -> str:
    return config_label(c.config)


def where(change: Change, by: Any) -> str:
    """Where a new segment starts: its `by` value (with by), its date, its run."""
    parts = [f"{by}={change.by_value}" if by else "", change.started[:10] or "",
             f"run {change.run_id}"]
    return " ".join(p for p in parts if p)


def change_ci(change: Change) -> str:
    low, high = num((change.ci_low - 1) * 100, "+.1f"), num((change.ci_high - 1) * 100, "+.1f")
    return f"[{low}%, {high}%]" if low and high else ""  # no "…": that reads as a cut


def pct(value: float) -> str:
    return num(value * 100, ".1f") + "%" if num(value, "g") else ""


def span(c: ConfigHistory) -> str:
    dates = c.runs["started"].dropna()
    if not len(dates):
        return ""
    first, last = f"{dates.min():%Y-%m-%d}", f"{dates.max():%Y-%m-%d}"
    return first if first == last else f"{first} to {last}"  # wraps at its spaces


def to_markdown(h: History) -> str:
    lines: List[str] = ["## gpubench history", "",
                        f"Inputs: {', '.join(md_escape(i) for i in h.inputs)}", ""]
    status = "**regression**" if h.regressions else "no regression"
    lines += [f"{status} · {md_escape(headline(h))}", ""]
    header = ["status", "configuration", "runs", "period", "noise", "change at", "median before",
              "median after", "change", "95% CI", "p", "verdict", "note"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if h_ in ("status", "configuration", "period", "change at", "verdict", "note")
                                else "--:" for h_ in header) + "|")
    for c in h.configs:
        base = [f"**{STATUS_TEXT[c.status]}**" if c.status == "regression" else STATUS_TEXT[c.status],
                md_escape(label(c)), str(len(c.runs)), span(c), pct(c.noise)]
        note = md_escape("; ".join(c.notes))
        if not c.changes:
            median = value_text(c.runs["value"].median()) if len(c.runs) else ""
            where_ = "" if c.status == "too_few_runs" else "no change"
            lines.append("| " + " | ".join(base + [where_, median, "", "", "", "", "", note]) + " |")
        for i, ch in enumerate(c.changes):
            verdict = f"**{ch.verdict}**" if ch.verdict == "slower" else ch.verdict
            lines.append("| " + " | ".join(base + [
                md_escape(where(ch, h.by)), value_text(ch.median_before), value_text(ch.median_after),
                signed_pct(ch.change_pct), change_ci(ch), num(ch.p_value, ".2g"), verdict,
                note if i == 0 else ""]) + " |")
    lines += ["", f"<sub>{md_escape(rule(h))}.</sub>", ""]
    return "\n".join(lines)


def config_json(c: ConfigHistory) -> Dict[str, Any]:
    runs = [{"run_id": r.run_id,
             "started_utc": "" if pd.isna(r.started) else r.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "by_value": r.by_value, "value": r.value, "trials": r.trials}
            for r in c.runs.itertuples()]
    segments = [{"start": a, "end": b, "runs": b - a,
                 "median": float(c.runs["value"].iloc[a:b].median())} for a, b in c.segments]
    return _clean_all({
        **c.config, "configuration": label(c), "status": c.status, "n_runs": len(c.runs),
        "noise_floor": c.noise, "changes": [vars(ch) for ch in c.changes],
        "segments": segments, "runs": runs, "notes": c.notes})


def _clean_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_all(v) for v in value]
    return _clean(value)


def to_json(h: History, outcome: str, exit_code: int) -> str:
    payload = {"metric": h.metric, "threshold": h.threshold, "min_segment": h.min_segment,
               "by": h.by, "since": h.since, "inputs": h.inputs, "method": h.method,
               "rule": rule(h), "outcome": outcome, "exit_code": exit_code,
               "regressions": h.regressions, "configurations": [config_json(c) for c in h.configs]}
    return json.dumps(payload, indent=2) + "\n"
