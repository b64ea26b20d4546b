"""Compare: a pure function from two result tables to a table of verdicts (no printing,
no exit codes: the CLI renders the table and picks the exit code).

Rows are matched on the configuration declared in results/schema.py (minus the `--by` column, the one being compared);
runs, devices and hosts of one side holding the same configuration are pooled. Only
trials with status ok and a value of the metric count. Per match: medians, ratio
new/base, a 95% CI of the ratio (rank-based: compare_stats.py), Mann-Whitney U p-value and a verdict (the
rule is in results/compare_stats.py); beside it the change in joules per sample and
in SM clock, and the share of throttled trials, so that a slowdown caused by
throttling shows as such. A configuration on one side only is listed with verdict
`base_only` / `new_only`, never dropped. A run of ranks (--nproc) counts each trial
once (rank 0's row: results/rank_rows.py); its whole-run figures are the metrics
`global_throughput_samples_per_s` and `global_energy_j`.

The statistical unit: trials of one process share its conditions (clocks, placement,
memory layout, neighbours), so with one process a side the test sees only within-
process noise and can call a run-to-run wobble a regression. When both sides hold at
least MIN_RUNS_PER_SIDE processes of a configuration (a run's worker processes,
`--processes K`, or runs of one process each), the statistics are taken over
per-process medians instead (`unit` = process, or run when every run is one process),
which carries the run-to-run variation; otherwise over trials (`unit` = trial), with a
note when a side has a single process.

The noise floor (compare_units.noise_threshold): with processes or runs as the unit,
the spread of each side's unit medians (compare_stats.noise_floor) is the
configuration's own noise here (`noise_pct`); with `noise_from`, past runs (a nightly
store) give its run-to-run noise (`history_noise_pct`, results/history.py), which also
holds the drift between runs that processes of one run, sharing that minute's machine,
cannot show. A change is called only past NOISE_MULTIPLE (1.5) x the larger of them, or
the threshold when larger still (`threshold_pct`, with a note when raised), as history
does. Separate runs with trials as the unit (no run in common, not paired) rest on a
run-to-run floor: the history's, else the stated prior of the rows' device class
(results/noise_priors.py), times SEPARATE_RUNS_MULTIPLE (2.8 = 1.96 x sqrt(2): two runs'
noise in one ratio). A change past the threshold asked that the data resolve but that
lies inside a floor which raised it is `inconclusive` (never slower/faster, nor `same`),
with the reason in the note.

Paired analysis (results/compare_paired.py): when both sides' rows come from one suite
with the same number of rounds, round k of base is paired with round k of new
(Wilcoxon signed-rank on the per-pair log-ratios, a bootstrap CI over rounds, seeded by
`seed`); its floor is the spread of the per-round ratios over the square root of
their number (the spread of their median). The `test` column says which
test ran ("wilcoxon paired rounds", "wilcoxon paired trials", "mann-whitney"), and the
note why a suite's rows were not paired; `unpaired` forces Mann-Whitney.

Contended trials (`contended` true: they ran slow, or beside other processes' CPU or
GPU use; telemetry/contention.py) are left out of everything above unless
`include_contended`, and excluded ones (`excluded` non-empty: "throttled") unless
`include_throttled`; both counted in the note. A row that was not judged (empty: v1
rows, older v2 rows) counts.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results import compare_load as load
from gpubench.results import schema
from gpubench.results.fingerprint_diff import with_changes
from gpubench.results.rank_rows import one_row_per_trial
from gpubench.results.scaling import scaling_by_group, scaling_changes
from gpubench.results import compare_rows as sides_rows
from gpubench.results.compare_paired import UNPAIRED, assess_paired, paired_note, paired_noise, pairing
from gpubench.results.compare_stats import ALPHA, DIRECTIONS, HIGHER, VERDICTS, assess_batch
from gpubench.results.compare_units import (  # noqa: F401 (MIN_RUNS_PER_SIDE: re-exported)
    MIN_RUNS_PER_SIDE, Floor, history_noise, noise_threshold, separate_runs, unit_noise, unit_values,
)
from gpubench.results import compare_paired, compare_units, noise_priors
from gpubench.results.noise_priors import prior_for

DEFAULT_METRIC = "throughput_samples_per_s"
ONE_SIDED = ("base_only", "new_only")
VERDICT_COLUMNS = (
    "metric", "better", "n_base", "n_new", "median_base",
    "median_new", "ratio", "ci_low", "ci_high", "change_pct", "p_value", "verdict",
    "j_per_sample_base", "j_per_sample_new", "j_per_sample_change_pct",
    "sm_clock_base_mhz", "sm_clock_new_mhz", "sm_clock_change_pct",
    "throttled_base_frac", "throttled_new_frac", "unit", "test", "noise_pct", "history_noise_pct",
    "threshold_pct", "note",
    "caveat",  # what the verdict stands on, when not the run: "pooled trials"
    "changed",  # what differs between the sides' fingerprints (results/fingerprint_diff.py)
)
# A verdict called on trials pooled across separate runs: their run-to-run variation is
# not in the test, so a wobble between runs can pass for a change (the table says so
# in the verdict itself).
POOLED_CAVEAT = "pooled trials"


def result_columns() -> Tuple[str, ...]:
    """The verdict table's columns: the two labels, the match columns, the verdict."""
    return ("base", "new", *schema.match_columns()) + VERDICT_COLUMNS


RESULT_COLUMNS = result_columns()  # as declared at import


def _keys(frame: pd.DataFrame, key: Sequence[str]) -> List[Tuple[str, ...]]:
    """One tuple per row of the match columns, as text (batch 64 == 64.0): each
    column's distinct values are turned into text once (a store's nights repeat them)."""
    columns = []
    for c in key:
        if c not in frame.columns:
            columns.append([""] * len(frame))
            continue
        codes, uniques = pd.factorize(frame[c], use_na_sentinel=True)
        texts = np.array([schema.key_text(v) for v in uniques] + [""], dtype=object)
        columns.append(texts[codes].tolist())  # code -1 (missing) is the last: ""
    return list(zip(*columns))


# The columns the per-configuration loop reads besides the match key and the metric,
# as each module it calls declares them: a side's frame is cut to them first, since a
# store's rows hold every schema column and each configuration's slice would
# otherwise copy them all.
LOOP_COLUMNS = (load.DERIVED,) + sides_rows.READS + compare_paired.READS \
    + compare_units.READS + noise_priors.READS


def compare(base: pd.DataFrame, new: pd.DataFrame, metric: str = DEFAULT_METRIC,
            threshold: float = 0.05, by: Optional[str] = None, labels: Tuple[str, str] = ("base", "new"),
            seed: int = 0, include_contended: bool = False,
            history_noise: Optional[Dict[Tuple[str, ...], Tuple[float, int]]] = None,
            include_throttled: bool = False, unpaired: bool = False) -> pd.DataFrame:
    """The verdict table (RESULT_COLUMNS) of `new` against `base`, one row per
    configuration found on either side. `by` is left out of the match; contended trials
    are left out unless `include_contended`, excluded ones (throttled) unless
    `include_throttled`. `history_noise`: per configuration (its match key), the
    run-to-run noise learned from past runs and how many runs. `unpaired`: the
    Mann-Whitney test even where the sides' rounds of one suite could be paired.
    `seed`: the paired bootstrap's."""
    if metric not in DIRECTIONS:
        raise UserError(f"--metric {metric}: not a comparable metric (valid: {', '.join(DIRECTIONS)})")
    key = list(schema.match_columns(by))
    sides = {}
    for name, frame in (("base", base), ("new", new)):
        frame = load.with_derived(one_row_per_trial(frame))  # a run of ranks: a trial once
        if metric not in frame.columns:
            raise UserError(f"{labels[0 if name == 'base' else 1]}: no column {metric}")
        ok_mask = (frame["status"].eq("ok") & pd.to_numeric(frame[metric], errors="coerce").notna()).to_numpy()
        flags = (ok_mask & sides_rows.contended(frame), np.where(ok_mask, sides_rows.excluded(frame), ""))
        frame = frame[[c for c in dict.fromkeys((*key, metric, *LOOP_COLUMNS)) if c in frame.columns]]
        positions: Dict[tuple, List[int]] = {}
        for i, k in enumerate(_keys(frame, key)):
            positions.setdefault(k, []).append(i)
        sides[name] = (frame, positions, ok_mask, *flags)
    order = list(dict.fromkeys(list(sides["base"][1]) + list(sides["new"][1])))
    if not order:
        return pd.DataFrame(columns=list(result_columns()))

    rows: List[Dict[str, object]] = []
    values: Dict[str, List[np.ndarray]] = {"base": [], "new": []}
    for config in order:
        row: Dict[str, object] = dict(zip(key, config))
        row.update(base=labels[0], new=labels[1], metric=metric, better=DIRECTIONS[metric])
        notes: List[str] = []
        present = []
        oks = {}
        for name in ("base", "new"):
            frame, positions, ok_mask, contended_mask, excluded = sides[name]
            where = positions.get(config, [])
            here = frame.iloc[where]
            keep = ok_mask[where] & (include_contended | ~contended_mask[where]) \
                & (include_throttled | (excluded[where] == ""))
            ok = oks[name] = here[keep]
            present.append(bool(where))
            row[f"j_per_sample_{name}"] = sides_rows.median(ok[load.DERIVED])
            row[f"sm_clock_{name}_mhz"] = sides_rows.median(ok["sm_clock_mhz"]) if "sm_clock_mhz" in ok else np.nan
            row[f"throttled_{name}_frac"] = sides_rows.throttled_frac(ok)
            notes += sides_rows.side_note(name, here, here[ok_mask[where]], by)
            n_contended = int(contended_mask[where].sum())
            if n_contended:
                notes.append(f"{name}: {n_contended} contended trial{'s' if n_contended != 1 else ''} "
                             + ("kept (--include-contended)" if include_contended else
                                "left out (--include-contended keeps them)"))
            notes += sides_rows.excluded_note(name, excluded[where], include_throttled)
            if metric == "mem_bw_gbs":  # a modelled bandwidth must never pass for a measured one
                notes += sides_rows.bandwidth_note(name, ok)
        pair, why_unpaired = pairing(oks, metric)
        if unpaired and pair is not None:
            pair, why_unpaired = None, "not paired: --unpaired (the sides' rounds could be paired)"
        if pair is not None:
            unit, side_values = ("trial" if pair.by_trials else "round"), {"base": [], "new": []}
            notes.append(paired_note(pair))
            noise = paired_noise(pair)
        else:
            unit, side_values, unit_notes = unit_values(oks, metric)
            notes += unit_notes + ([why_unpaired] if why_unpaired else [])
            # the configuration's own noise is measured where the unit is a process or run
            noise = unit_noise(side_values["base"], side_values["new"]) if unit != "trial" else np.nan
        separate = pair is None and separate_runs(oks)
        row["unit"] = unit
        row["test"] = pair.test if pair is not None else UNPAIRED
        row["caveat"] = POOLED_CAVEAT if unit == "trial" and separate else ""
        past, past_runs = (history_noise or {}).get(config, (np.nan, 0))
        if history_noise is not None and not past_runs:
            notes.append("--noise-from: no past runs of this configuration (3 or more needed)")
        row["noise_pct"] = noise * 100
        row["history_noise_pct"] = past * 100
        # Paired: the verdict is on the median of the rounds' ratios, whose own spread is
        # their spread over the square root of their number (a single round's spread
        # would ask a suite of 20 rounds to beat one round's noise).
        own = noise / math.sqrt(len(pair.rounds)) if pair is not None else noise
        floor = noise_threshold(threshold, unit=unit, separate=separate, paired=pair is not None,
                                own=own, past=past, past_runs=past_runs,
                                prior=prior_for(oks.values()))
        row["threshold_pct"] = floor.threshold * 100
        notes += floor.notes
        row["_paired"] = (assess_paired(pair, DIRECTIONS[metric], floor.threshold, seed)
                          if pair is not None else None)
        for name in ("base", "new"):
            values[name].append(np.asarray(side_values[name], float))
        row["_present"], row["_floor"], row["_notes"] = tuple(present), floor, notes
        row["j_per_sample_change_pct"] = sides_rows.change_pct(row["j_per_sample_base"], row["j_per_sample_new"])
        row["sm_clock_change_pct"] = sides_rows.change_pct(row["sm_clock_base_mhz"], row["sm_clock_new_mhz"])
        rows.append(row)

    thresholds = np.array([row["threshold_pct"] / 100 for row in rows])
    stats = assess_batch(_padded(values["base"]), _padded(values["new"]), DIRECTIONS[metric],
                         thresholds, seed=seed)
    for i, row in enumerate(rows):
        paired = row.pop("_paired")
        row.update(paired if paired is not None else {k: v[i] for k, v in stats.items()})
        row["change_pct"] = (row["ratio"] - 1.0) * 100.0
        floor, notes = row.pop("_floor"), row.pop("_notes")
        if _inside_floor(row, floor):
            row["verdict"] = "inconclusive"
            notes.append(floor.inside_note(row["change_pct"]))
        in_base, in_new = row.pop("_present")
        if row["verdict"] not in VERDICTS[:3]:  # nothing was called: nothing to qualify
            row["caveat"] = ""
        if not in_new:
            row["verdict"] = "base_only"
        elif not in_base:
            row["verdict"] = "new_only"
        row["note"] = "; ".join(notes)
    table = pd.DataFrame(rows, columns=list(result_columns()))
    table["n_base"] = table["n_base"].astype(int)
    table["n_new"] = table["n_new"].astype(int)
    return table


def _inside_floor(row: Dict[str, object], floor: Floor) -> bool:
    """A change past --threshold that the data resolve (its CI excludes 1, p < alpha)
    but that lies inside a noise floor which raised the threshold: not `same` (it
    changed) and not called (run-to-run noise moves that much): inconclusive."""
    if not floor.raised or row["verdict"] not in ("same", "inconclusive"):
        return False
    ratio, low, high, p = (float(row[k]) for k in ("ratio", "ci_low", "ci_high", "p_value"))
    if not all(np.isfinite([ratio, low, high, p])) or p >= ALPHA or low <= 1 <= high:
        return False
    speed = ratio if row["better"] == HIGHER else 1 / ratio
    return abs(speed - 1) > floor.asked


def _padded(arrays: List[np.ndarray]) -> np.ndarray:
    width = max([a.size for a in arrays] + [1])
    out = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        out[i, :a.size] = a
    return out


@dataclass
class Comparison:
    """What `gpubench compare` shows: the verdict table and where it came from."""
    table: pd.DataFrame
    metric: str
    threshold: float
    inputs: List[str]
    by: Optional[str] = None
    groups: List[str] = field(default_factory=list)  # --by values, baseline first
    # weak scaling efficiency of each side where runs of ranks were run at several world
    # sizes (results/scaling.py); empty otherwise
    scaling: pd.DataFrame = field(default_factory=pd.DataFrame)


def compare_paths(base: Path, new: Optional[Path], metric: str = DEFAULT_METRIC,
                  threshold: float = 0.05, by: Optional[str] = None,
                  baseline: Optional[str] = None, seed: int = 0,
                  include_contended: bool = False,
                  noise_from: Sequence[Path] = (), include_throttled: bool = False,
                  unpaired: bool = False, filters: Sequence[Any] = ()) -> Comparison:
    """Loads BASE (and NEW) and compares. Without `by`: NEW against BASE. With `by`:
    the rows of both inputs together are split by the column's value, and every other
    value is compared against the baseline (`baseline`, or the value seen first).
    `noise_from`: past runs whose run-to-run noise sets each configuration's least
    callable change (history_noise). `include_throttled`, `unpaired`: as compare().
    `filters`: BASE's and NEW's (results/store/filters.py), the rows each side reads."""
    if metric not in DIRECTIONS:
        raise UserError(f"--metric {metric}: not a comparable metric (valid: {', '.join(DIRECTIONS)})")
    past = history_noise(noise_from, metric, by) if noise_from else None
    inputs = [str(base)] + ([str(new)] if new is not None else [])
    sides = list(filters) + [None] * (2 - len(filters))
    frames = [load.read_input(Path(p), f) for p, f in zip(inputs, sides)]
    inputs = [load.input_label(p, f) for p, f in zip(inputs, sides)]
    for frame, label in zip(frames, inputs):
        load.check_metric(frame, metric, label)
    if by is None:
        if new is None:
            raise UserError("compare needs NEW, or --by COLUMN to split BASE into groups")
        table = compare(frames[0], frames[1], metric, threshold, labels=("base", "new"), seed=seed,
                        include_contended=include_contended, history_noise=past,
                        include_throttled=include_throttled, unpaired=unpaired)
        table = with_changes(table, frames[0], frames[1], schema.match_columns(by),
                             {**load.fingerprints(frames[0]), **load.fingerprints(frames[1])})
        _require_match(table, inputs[0], inputs[1])
        _require_trials(table, include_contended, include_throttled)
        scaling = scaling_changes(scaling_by_group([("base", frames[0]), ("new", frames[1])]),
                                  "base")
        return Comparison(table, metric, threshold, inputs, scaling=scaling)
    label = " and ".join(inputs)
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    groups = load.split_by(combined, by, baseline, label)
    (base_value, base_frame), others = groups[0], groups[1:]
    prints = load.fingerprints(combined)
    tables = [with_changes(compare(base_frame, frame, metric, threshold, by=by, labels=(base_value, value),
                                   seed=seed, include_contended=include_contended, history_noise=past,
                                   include_throttled=include_throttled, unpaired=unpaired),
                           base_frame, frame, schema.match_columns(by), prints)
              for value, frame in others]
    table = pd.concat(tables, ignore_index=True)
    # A group that matches nothing is listed (base_only/new_only rows); none matching is an error.
    _require_match(table, f"{by}={base_value!r} in {label}",
                   ", ".join(f"{by}={value!r}" for value, _ in others), by)
    _require_trials(table, include_contended, include_throttled)
    scaling = scaling_changes(scaling_by_group(groups), base_value)
    return Comparison(table, metric, threshold, inputs, by, [g[0] for g in groups], scaling)


def _require_match(table: pd.DataFrame, base: str, new: str, by: Optional[str] = None) -> None:
    """Nothing in common is bad input, never a silent "no regressions"."""
    if table["verdict"].isin(ONE_SIDED).all():
        def configs(side: str) -> str:
            rows = table[table["verdict"] == f"{side}_only"]
            names = sorted({f"{r['workload']}/{r['backend']}/{r['mode']}/{r['precision']}/"
                            f"batch {r['batch_size']}" + "".join(
                                f" {c}={v}" for c, v in schema.non_default_configuration(r))
                            for _, r in rows.iterrows()})
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UserError(f"nothing matches between {base} ({configs('base')}) and {new} "
                        f"({configs('new')}) on {', '.join(schema.match_columns(by))}")


def _require_trials(table: pd.DataFrame, include_contended: bool,
                    include_throttled: bool = False) -> None:
    """A comparison in which no configuration has a usable trial on both sides (every
    one failed, or was contended and left out) decides nothing: bad input, never a
    silent pass."""
    both = table[~table["verdict"].isin(ONE_SIDED)]
    if len(both) and ((both["n_base"] == 0) | (both["n_new"] == 0)).all():
        why = "" if include_contended else " (contended trials are left out: --include-contended keeps them)"
        if not include_throttled and "throttled trial" in " ".join(both["note"]):
            why += " (throttled trials are left out: --include-throttled keeps them)"
        raise UserError("nothing to compare: no configuration has a usable trial on both sides"
                        f"{why}: {'; '.join(list(dict.fromkeys(n for n in both['note'] if n))[:2])}")


def counts(table: pd.DataFrame) -> Dict[str, int]:
    """Rows per verdict, in a fixed order (verdicts with no row left out)."""
    order = ("slower", "faster", "same", "inconclusive", "base_only", "new_only")
    found = table["verdict"].value_counts()
    return {v: int(found[v]) for v in order if v in found}


def outcome(table: pd.DataFrame, fail_on: str) -> str:
    """What the comparison amounts to for `--fail-on`: "regression" (a row is slower),
    "inconclusive" (a row is, and fail_on is "inconclusive"), or "ok"."""
    if fail_on == "never":
        return "ok"
    if (table["verdict"] == "slower").any():
        return "regression"
    if fail_on == "inconclusive" and (table["verdict"] == "inconclusive").any():
        return "inconclusive"
    return "ok"
