"""PELT with the l2 cost, as ruptures' `Pelt(model="l2", min_size=m, jump=1)` computes
it, in numpy: the cost of a segment from prefix sums (sum of squared deviations =
S2 - S1^2 / n) for every admissible start at once, instead of one numpy `var` call per
(start, end) pair. ruptures spends ~0.3 s on a series of 180 runs (13,500 cost calls);
this takes a few milliseconds, which is what lets the dashboard analyse a fleet's
thousand-odd series in seconds.

The recursion is ruptures' step for step: the admissible starts in the same order
(including its quirk: a start without a partition yet, 0 < t < min_size, stays in
the list and shifts the pairing of the pruning step, as ruptures' `zip` does), the first
minimum on ties, and the totals summed in the same order. Only the segment costs are
computed differently (prefix sums of the centred signal instead of numpy's two-pass
variance), so a choice could differ only between totals equal to ~1e-12; the tests
compare the two on random series with steps.
"""

from __future__ import annotations

import math
from typing import List

import numpy as np

from gpubench.results import history as hist


def pelt_l2(signal: np.ndarray, pen: float, min_size: int) -> List[int]:
    """The change points (starts of new segments), ruptures' `predict(pen)[:-1]`."""
    x = np.asarray(signal, float).ravel()
    n = x.size
    c = x - x.mean()
    s1 = np.concatenate(([0.0], np.cumsum(c)))
    s2 = np.concatenate(([0.0], np.cumsum(c * c)))
    best = np.zeros(n + 1)
    prev = np.zeros(n + 1, dtype=int)
    admissible = np.empty(0, dtype=int)
    for end in [*range(min_size, n), n]:
        admissible = np.append(admissible, end - min_size)
        starts = admissible[(admissible == 0) | (admissible >= min_size)]  # partitioned
        length = end - starts
        cost = (s2[end] - s2[starts]) - (s1[end] - s1[starts]) ** 2 / length
        total = best[starts] + (cost + pen)
        j = int(np.argmin(total))
        best[end], prev[end] = total[j], starts[j]
        admissible = admissible[:starts.size][total <= best[end] + pen]
    breaks = []
    t = prev[n]
    while t > 0:
        breaks.append(int(t))
        t = prev[t]
    return sorted(breaks)


def candidate_breaks(values, min_segment: int) -> List[int]:
    """history.candidate_breaks, computed by pelt_l2: the same penalty on the same logs."""
    logs = np.log(np.asarray(values, float))
    n = logs.size
    if n < 2 * min_segment:
        return []
    sigma = hist.diff_sigma(logs)
    return pelt_l2(logs, hist.PENALTY_FACTOR * sigma ** 2 * math.log(n), min_segment)
