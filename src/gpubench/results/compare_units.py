"""compare's statistical unit and its noise floor: which values the statistics run on
(per-process or per-run medians, else trials) and how noisy the configuration is,
here and over its past runs (results/compare.py's docstring says how they are used)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.results import schema
from gpubench.results.compare_stats import NOISE_MULTIPLE, noise_floor
from gpubench.results.noise_priors import SEPARATE_RUNS_MULTIPLE, NoisePrior

# Four units a side is the fewest at which a two-sided Mann-Whitney test can reach
# p < 0.05 (4 vs 4: p >= 0.029; 3 vs 3: p >= 0.1), i.e. can call a change at all.
MIN_RUNS_PER_SIDE = 4
READS = ("run_id", "process")  # a side's columns naming its units (compare cuts to READS)


def unit_columns(ok: pd.DataFrame) -> List[str]:
    """The columns naming a statistical unit of a side: a run, or one worker process of
    a run (--processes; rows without the column are process 0)."""
    return [c for c in ("run_id", "process") if c in ok.columns]


def unit_groups(ok: pd.DataFrame, metric: str) -> Dict[tuple, List[float]]:
    """The metric's values per unit (run_id, process): a process left empty is 0, a row
    without a run id belongs to no unit (as pandas' groupby drops it)."""
    columns = unit_columns(ok)
    keys = [ok[c].to_numpy(dtype=object) for c in columns]
    if "process" in columns:
        i = columns.index("process")
        keys[i] = [0 if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in keys[i]]
    groups: Dict[tuple, List[float]] = {}
    for key, value in zip(zip(*keys), ok[metric].to_numpy(dtype=float)):
        if not any(v is None or (isinstance(v, float) and math.isnan(v)) for v in key):
            groups.setdefault(key, []).append(value)
    return groups


def unit_values(oks: Dict[str, pd.DataFrame], metric: str) -> Tuple[str, Dict[str, np.ndarray], List[str]]:
    """The values the statistics run on: per-process medians (a run's worker processes,
    or runs of one process each) when both sides have enough of them, else the trials
    themselves (see the module docstring)."""
    groups = {name: unit_groups(ok, metric) for name, ok in oks.items()}
    units = {name: len(g) for name, g in groups.items()}
    runs = {name: len({k[0] for k in g}) if "run_id" in oks[name].columns else 0
            for name, g in groups.items()}
    if min(units.values()) >= MIN_RUNS_PER_SIDE:
        values = {name: np.array([np.median(g[k]) for k in sorted(g)], dtype=float)
                  for name, g in groups.items()}
        unit = "run" if units == runs else "process"
        plural = "runs" if unit == "run" else "processes"
        return unit, values, [f"statistics over per-{unit} medians "
                              f"({units['base']} vs {units['new']} {plural})"]
    notes = []
    include = (f"(--processes {MIN_RUNS_PER_SIDE} or more, or {MIN_RUNS_PER_SIDE}+ runs a side, "
               "include it)")
    if all(len(ok) for ok in oks.values()) and min(units.values()) == 1:
        notes.append(f"one process on a side: run-to-run variation is not measured {include}")
    elif all(len(ok) for ok in oks.values()):
        notes.append(f"statistics over trials pooled from {units['base']} vs {units['new']} "
                     f"processes: run-to-run variation is not measured {include}")
    return "trial", {name: ok[metric].to_numpy(dtype=float) for name, ok in oks.items()}, notes


def separate_runs(oks: Dict[str, pd.DataFrame]) -> bool:
    """Whether the two sides' trials come from different runs (no run on both)."""
    runs = [set(map(str, ok["run_id"].to_numpy(dtype=object))) if "run_id" in ok.columns else set()
            for ok in oks.values()]
    return all(runs) and not (runs[0] & runs[1])


def unit_noise(base: np.ndarray, new: np.ndarray) -> float:
    """The configuration's own run-to-run noise, from the spread of each side's unit
    medians around their side's median (compare_stats.noise_floor, the sides as two
    segments); NaN with too few units."""
    return noise_floor(np.concatenate([base, new]), breaks=[base.size])


def history_noise(paths: Sequence[Path], metric: str,
                  by: Optional[str]) -> Dict[Tuple[str, ...], Tuple[float, int]]:
    """Per configuration (compare's match key): the run-to-run noise of its runs under
    `paths` (results/history.py's noise floor, change points taken into account) and
    how many runs; the largest where `by` merges several."""
    from gpubench.results.history import history_paths

    found: Dict[Tuple[str, ...], Tuple[float, int]] = {}
    # A results folder or store that holds no run yet (the first night) is no history,
    # not bad input.
    paths = [p for p in paths if not _empty(Path(p))]
    if not paths:
        return found
    for config in history_paths(list(paths), metric=metric).configs:
        if np.isfinite(config.noise):
            key = schema.configuration_key(config.config, schema.match_columns(by))
            found[key] = max(found.get(key, (0.0, 0)), (config.noise, len(config.runs)))
    return found


def _empty(path: Path) -> bool:
    """A folder without a trials.csv under it, or a results store without trial rows."""
    from gpubench.results.compare_load import is_store_input
    from gpubench.results.store.layout import open_store, table_files

    if is_store_input(path):
        return not table_files(open_store(path), "trials")
    return path.is_dir() and not any(path.rglob("trials.csv"))


@dataclass
class Floor:
    """The threshold a comparison's verdict uses and the noise floor that set it."""
    threshold: float  # the threshold used, a fraction: max(--threshold, multiple x noise)
    multiple: float = 0.0
    noise: float = 0.0
    why: str = ""  # what the noise is ("the cpu prior run-to-run noise of separate runs")
    kind: str = "noise floor"  # how a change inside it is named in the note
    hint: str = ""  # what would measure it instead
    notes: List[str] = field(default_factory=list)
    asked: float = 0.0  # --threshold

    @property
    def raised(self) -> bool:
        return self.threshold > self.asked

    def inside_note(self, change_pct: float) -> str:
        """Why a change past --threshold but inside the floor is not called."""
        return (f"change {change_pct:+.1f}% is inside the {self.kind}: {self.multiple:g} x "
                f"{self.why} {self.noise * 100:.1f}% = {self.threshold * 100:.1f}%"
                + (f"; {self.hint}" if self.hint else ""))


def noise_threshold(threshold: float, *, unit: str, separate: bool, paired: bool, own: float,
                    past: float, past_runs: int, prior: NoisePrior) -> Floor:
    """The threshold a verdict uses: the largest of `threshold` and each known noise
    floor times its multiple (results/compare.py's docstring says which floors count)."""
    history = f"run-to-run noise over its {past_runs} past runs"
    if paired:
        floors = [(NOISE_MULTIPLE, own, "the spread of its per-round ratios / sqrt(rounds)",
                   "noise floor", ""),
                  (NOISE_MULTIPLE, past, f"its {history}", "noise floor", "")]
    elif unit != "trial":
        floors = [(NOISE_MULTIPLE, own, f"this configuration's {unit}-to-{unit} noise here",
                   "noise floor", ""),
                  (NOISE_MULTIPLE, past, f"this configuration's {history}", "noise floor", "")]
    elif separate and np.isfinite(past):
        floors = [(SEPARATE_RUNS_MULTIPLE, past, f"its {history}",
                   "run-to-run floor of separate runs", "")]
    elif separate:
        floors = [(SEPARATE_RUNS_MULTIPLE, prior.noise, f"the {prior.device_class} prior",
                   "run-to-run floor of separate runs",
                   f"--noise-from a history or --processes {MIN_RUNS_PER_SIDE} measure it")]
    else:
        floors = [(NOISE_MULTIPLE, past, f"this configuration's {history}", "noise floor", "")]
    floors = [f for f in floors if np.isfinite(f[1])]
    multiple, noise, why, kind, hint = max(floors, key=lambda f: f[0] * f[1],
                                           default=(0.0, 0.0, "", "noise floor", ""))
    used = max(threshold, multiple * noise)
    out = Floor(used, multiple, noise, why, kind, hint, asked=threshold)
    if used > threshold:
        source = (f", {prior.source}" if why.startswith(f"the {prior.device_class} prior") else "")
        out.notes.append(f"threshold {used * 100:.3g}%, not {threshold * 100:g}%: {multiple:g} x "
                         f"{why} ({noise * 100:.2g}%{source})")
    return out
