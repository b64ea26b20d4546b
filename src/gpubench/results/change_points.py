"""PELT (Killick et al. 2012) with the l2 cost, step for step the recursion of ruptures'
`Pelt(model="l2", jump=1)` (1.1.x), computed from cumulative sums so that a series of a
year of nights costs milliseconds, not seconds.

ruptures computes each candidate segment's cost as `x[t:b].var() * (b - t)`, a pass over
the segment for each of the O(n^2) (start, end) pairs PELT looks at when nothing prunes
them (a series without changes): 1.2 s for a configuration's 362 nights, minutes for a
fleet's 276 configurations. Here a segment's cost is sum(x^2) - sum(x)^2 / m from
prefix sums of the centred series (the same value up to rounding: the series' logs lie
within a few percent of each other), all of one end's candidates at once.

What is kept exactly, quirks included (tests/test_change_points.py holds the breakpoints
to ruptures' on seeded series): the admissible starts (each end b adds b - min_size),
the total of a candidate partition (the left partition's total plus this segment's cost
plus the penalty), the first minimum winning a tie, and the pruning.
"""

from __future__ import annotations

from typing import List

import numpy as np


def pelt_l2(signal: np.ndarray, pen: float, min_size: int) -> List[int]:
    """The breakpoints (where each new segment starts) of the 1-d `signal`, as ruptures'
    `Pelt(model="l2", min_size=min_size, jump=1).fit(signal).predict(pen)[:-1]`."""
    x = np.asarray(signal, dtype=float).ravel()
    n = x.size
    min_size = max(int(min_size), 1)
    if n < 2 * min_size:  # ruptures' sanity_check: no segmentation fits
        return []
    x = x - x.mean()
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])
    total = np.zeros(n + 1)  # total[t]: the best partition of x[:t]
    previous = np.full(n + 1, -1, dtype=np.int64)
    admissible = np.empty(n + 1, dtype=np.int64)
    count = 0
    for end in [*range(min_size, n), n]:
        start = end - min_size
        # ruptures adds every end - min_size; the starts 1 .. min_size-1 have no partition
        # (a KeyError there), come last and so fall off its zip: never adding them is the same
        if start == 0 or start >= min_size:
            admissible[count] = start
            count += 1
        starts = admissible[:count]
        length = end - starts
        cost = (s2[end] - s2[starts]) - (s1[end] - s1[starts]) ** 2 / length
        candidates = total[starts] + (np.maximum(cost, 0.0) + pen)  # a variance is >= 0
        best = int(candidates.argmin())  # the first of equal minima, as min() keeps
        total[end] = candidates[best]
        previous[end] = starts[best]
        keep = candidates <= total[end] + pen
        count = int(keep.sum())
        admissible[:count] = starts[keep]
    breaks = []
    end = n
    while previous[end] > 0:
        end = int(previous[end])
        breaks.append(end)
    return sorted(breaks)
