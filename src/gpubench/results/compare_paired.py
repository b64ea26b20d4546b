"""Paired analysis of one interleaved suite: round k of one side against round k of the
other.

A suite runs its configurations' worker processes round by round (suite/executor.py:
process rounds outside, repeats inside; each row's `round`), so a slow minute of the
machine falls on both sides of a round. Unpaired statistics (Mann-Whitney over the two
sides' values) count that drift as noise of each side; pairing takes it out: the
per-pair log-ratios log(new / base) are tested for a shift from 0 with the Wilcoxon
signed-rank test (exact), and the median ratio gets a bootstrap interval that resamples
whole rounds (the rounds are the independent units; seeded, so deterministic).

When: both sides' ok rows come from one suite (the same non-empty `suite_id`) and hold
the same number of rounds, at least MIN_PAIRED_ROUNDS; sorted by round, the i-th
process of one side ran beside the i-th of the other. With MIN_ROUND_PAIRS rounds or
more the pairs are the rounds (the medians of each round's trials): 5 pairs can never
give p < 0.05 with Wilcoxon (the least p is 2/2^5 = 0.0625). With fewer, trial j of a
round of one side is paired with trial j of the same round of the other, and the note
says so. Otherwise the comparison falls back to the unpaired test and the note says why
(different suites, different shards, unequal rounds, rounds missing); rows outside any
suite fall back silently (there is nothing to pair). Shards of one suite (--shard i/N)
share its suite_id but ran on different machines at the same time: round k of one shard
did not run beside round k of another, so only rows of one shard pair.

The noise of a paired comparison is the spread of its per-round log-ratios
(compare_stats.noise_floor of the per-round ratios of medians, `noise_pct`); its floor
is that spread over the square root of the number of rounds, the spread of their median,
which the verdict is on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from gpubench.results.compare_stats import HIGHER, noise_floor, verdicts

# The columns of a side's rows the pairing reads (compare cuts its frames to its
# modules' READS before the per-configuration loop).
READS = ("suite_id", "shard", "round", "trial", "run_id", "process")
PAIRED_ROUNDS = "wilcoxon paired rounds"
PAIRED_TRIALS = "wilcoxon paired trials"
UNPAIRED = "mann-whitney"
MIN_PAIRED_ROUNDS = 3  # fewer rounds: a bootstrap over rounds says nothing
MIN_ROUND_PAIRS = 6  # the fewest pairs whose exact Wilcoxon p can be < 0.05 (min p 2/2^n)
BOOTSTRAP_DRAWS = 4000
EXACT_MAX = 50  # pairs up to this: the exact Wilcoxon distribution


@dataclass
class Pairing:
    """Per round, in round order: the base side's and the new side's values in trial
    order."""
    suite_id: str
    rounds: List[Tuple[np.ndarray, np.ndarray]]

    @property
    def by_trials(self) -> bool:
        return len(self.rounds) < MIN_ROUND_PAIRS

    @property
    def test(self) -> str:
        return PAIRED_TRIALS if self.by_trials else PAIRED_ROUNDS

    def round_ratios(self) -> np.ndarray:
        return np.array([np.median(n) / np.median(b) for b, n in self.rounds])

    def log_ratios(self) -> List[np.ndarray]:
        """Per round, the log-ratios of its pairs (one a round, or one per trial pair)."""
        if not self.by_trials:
            return [np.log(np.atleast_1d(r)) for r in self.round_ratios()]
        out = []
        for b, n in self.rounds:
            k = min(b.size, n.size)
            out.append(np.log(n[:k] / b[:k]))
        return out


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def _units(ok: pd.DataFrame, metric: str) -> Optional[List[Tuple[float, np.ndarray]]]:
    """(round, values in trial order) per worker process of the side, in round order;
    None when a process has no round or more than one."""
    units = []
    keys = [c for c in ("run_id", "process") if c in ok.columns]
    for _, unit in ok.fillna({"process": 0}).groupby(keys):
        rounds = set(pd.to_numeric(unit["round"], errors="coerce"))
        if len(rounds) != 1 or not all(np.isfinite(r) for r in rounds):
            return None
        ordered = unit.sort_values("trial") if "trial" in unit.columns else unit
        units.append((rounds.pop(), ordered[metric].to_numpy(dtype=float)))
    return sorted(units, key=lambda u: u[0])


def pairing(oks: Dict[str, pd.DataFrame], metric: str) -> Tuple[Optional[Pairing], str]:
    """The pairing of the two sides' rounds, or None and why not ("" when neither side
    ran in a suite: nothing to say)."""
    sides = [oks["base"], oks["new"]]
    if not all(len(s) for s in sides):
        return None, ""
    ids = [{_text(v) for v in s["suite_id"]} if "suite_id" in s.columns else {""} for s in sides]
    if ids == [{""}, {""}]:
        return None, ""
    if any("" in i or len(i) != 1 for i in ids) or ids[0] != ids[1]:
        return None, "not paired: the sides do not come from one suite (unpaired test)"
    shards = [{_text(v) for v in s["shard"]} if "shard" in s.columns else {""} for s in sides]
    if len(shards[0]) != 1 or shards[0] != shards[1]:
        return None, ("not paired: the sides ran in different shards of the suite, on "
                      "different machines, so their rounds did not run side by side "
                      "(unpaired test)")
    units = [_units(s, metric) if "round" in s.columns else None for s in sides]
    if units[0] is None or units[1] is None:
        return None, "not paired: rounds missing (unpaired test)"
    if len(units[0]) != len(units[1]):
        return None, (f"not paired: unequal rounds ({len(units[0])} vs {len(units[1])}; "
                      "unpaired test)")
    if len(units[0]) < MIN_PAIRED_ROUNDS:
        return None, (f"not paired: {len(units[0])} round{'s' if len(units[0]) != 1 else ''}, "
                      f"{MIN_PAIRED_ROUNDS} needed (unpaired test)")
    return Pairing(ids[0].pop(), [(b, n) for (_, b), (_, n) in zip(*units)]), ""


def paired_noise(pair: Pairing) -> float:
    """The spread of the per-round ratios (robust CV), NaN with too few rounds."""
    return noise_floor(pair.round_ratios())


def _wilcoxon_p(logs: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    if logs.size == 0:
        return float("nan")
    if not np.any(logs):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = logs.size <= EXACT_MAX and np.count_nonzero(logs) == logs.size \
            and np.unique(np.abs(logs)).size == logs.size
        return float(wilcoxon(logs, method="exact" if exact else "auto").pvalue)


def _bootstrap(per_round: List[np.ndarray], seed: int) -> Tuple[float, float]:
    """95% percentile interval of the median log-ratio, whole rounds resampled."""
    width = max(r.size for r in per_round)
    table = np.full((len(per_round), width), np.nan)
    for i, r in enumerate(per_round):
        table[i, :r.size] = r
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_round), size=(BOOTSTRAP_DRAWS, len(per_round)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(table[draws].reshape(BOOTSTRAP_DRAWS, -1), axis=1)
    low, high = np.nanpercentile(medians, [2.5, 97.5])
    return float(low), float(high)


def assess_paired(pair: Pairing, direction: str, threshold: float, seed: int = 0) -> Dict[str, object]:
    """assess_batch's values for one paired comparison: n (pairs, both sides), the
    medians of the values paired, ratio = exp(median log-ratio), its bootstrap CI, the
    Wilcoxon p-value and the verdict (compare_stats' rule)."""
    per_round = pair.log_ratios()
    logs = np.concatenate(per_round)
    logs = logs[np.isfinite(logs)]
    used = ([(b[:min(b.size, n.size)], n[:min(b.size, n.size)]) for b, n in pair.rounds]
            if pair.by_trials else [(np.median(b), np.median(n)) for b, n in pair.rounds])
    base = np.concatenate([np.atleast_1d(b) for b, _ in used])
    new = np.concatenate([np.atleast_1d(n) for _, n in used])
    ratio = float(np.exp(np.median(logs))) if logs.size else float("nan")
    low, high = (math.exp(v) for v in _bootstrap(per_round, seed)) if logs.size else (math.nan,) * 2
    p = _wilcoxon_p(logs)
    speed, s_low, s_high = (ratio, low, high) if direction == HIGHER else (1 / ratio, 1 / high, 1 / low)
    verdict = verdicts(np.array([speed]), np.array([s_low]), np.array([s_high]), np.array([p]),
                       np.array([logs.size]), np.array([logs.size]), threshold)[0]
    return {"n_base": int(logs.size), "n_new": int(logs.size),
            "median_base": float(np.median(base)), "median_new": float(np.median(new)),
            "ratio": ratio, "ci_low": low, "ci_high": high, "p_value": p, "verdict": verdict}


def paired_note(pair: Pairing) -> str:
    rounds = len(pair.rounds)
    if pair.by_trials:
        pairs = sum(min(b.size, n.size) for b, n in pair.rounds)
        return (f"paired: {rounds} rounds of suite {pair.suite_id[:8]}, fewer than "
                f"{MIN_ROUND_PAIRS}, so trial j of a base round is paired with trial j of the "
                f"same new round ({pairs} pairs, Wilcoxon signed-rank); the CI resamples whole rounds")
    return (f"paired: round k of base against round k of new in suite {pair.suite_id[:8]} "
            f"({rounds} rounds, Wilcoxon signed-rank on the per-round log-ratios; "
            "the CI resamples rounds)")
