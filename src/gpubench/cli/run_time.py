"""Where a run's time went (run.json's phases_s, wall_s, fixed_s: measure/phases.py) in
words, for `gpubench show` and a suite's progress: `time: launch 0.0 s, imports 0.3 s,
preflight 0.9 s, ... (wall 2.2 s, fixed 2.1 s)`, wrapped to the width, no number cut."""

from __future__ import annotations

import textwrap
from typing import Any, List, Mapping, Tuple

LABELS = {"warmup": "warm-up"}
NBSP = "\u00a0"  # joins a phase's name and number: lines break between phases only
MIN_SHOWN_S = 0.05  # a phase shorter than this reads 0.0 s: left out, the wall holds it


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:,.0f} s"


def _shown(timed: Mapping[str, Any]) -> List[Tuple[str, float]]:
    """('imports 2.6 s', 2.6...) for each phase shown, in the run's order."""
    from gpubench.measure.phases import TIMED_PHASES

    phases = timed.get("phases_s")
    if not isinstance(phases, Mapping):
        return []
    return [(f"{LABELS.get(p, p)} {_seconds(float(phases[p]))}", float(phases[p]))
            for p in TIMED_PHASES
            if isinstance(phases.get(p), (int, float)) and phases[p] >= MIN_SHOWN_S]


def phase_parts(timed: Mapping[str, Any]) -> List[str]:
    """'launch 0.4 s', 'imports 2.6 s', ... in the run's order; [] when not recorded."""
    return [text for text, _ in _shown(timed)]


def totals_text(timed: Mapping[str, Any]) -> str:
    """'wall 3.1 s, fixed 2.9 s' (fixed: the wall less the requested warm-up and trials)."""
    parts = [f"{name} {_seconds(float(timed[key]))}" for name, key in
             (("wall", "wall_s"), ("fixed", "fixed_s")) if isinstance(timed.get(key), (int, float))]
    return ", ".join(parts)


def time_lines(timed: Mapping[str, Any], width: int) -> List[str]:
    """The run's time in lines of at most `width` columns (breaking between phases only);
    [] for a run.json without phases (written before they were recorded)."""
    parts = phase_parts(timed)
    if not parts:
        return []
    totals = totals_text(timed)
    whole = [p.replace(" ", NBSP) for p in parts + ([f"({totals})"] if totals else [])]
    text = "time: " + ", ".join(whole[:len(parts)]) + "".join(f" {t}" for t in whole[len(parts):])
    return [line.replace(NBSP, " ") for line in textwrap.wrap(
        text, width=max(width, 40), subsequent_indent="      ", break_on_hyphens=False,
        break_long_words=False)]


def compact_time(timed: Mapping[str, Any], width: int) -> str:
    """One line of at most `width` columns: the wall time, then the longest phases in
    the run's order, as many as fit (the wall alone, whole, when none does; '' without
    phases)."""
    kept = _shown(timed)
    if not kept or not isinstance(timed.get("wall_s"), (int, float)):
        return ""
    head = f"last run {_seconds(float(timed['wall_s']))}"

    def line() -> str:
        return f"{head}: {', '.join(text for text, _ in kept)}" if kept else head

    while kept and len(line()) > width:
        kept.remove(min(kept, key=lambda shown: shown[1]))  # the shortest phase goes first
    return line()
