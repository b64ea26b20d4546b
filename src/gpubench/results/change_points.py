"""Change points of a run series: PELT with the l2 cost (a change in the mean of the
logs), from ruptures, the maintained change-point library.

ruptures' `Pelt(model="l2")` is pure Python and computes each candidate segment's cost
with a pass over the segment: 1.2 s for one configuration's 362 nights, minutes for a
fleet's year. Its `KernelCPD(kernel="linear")` solves the same penalised problem (the
linear kernel's segment cost is the l2 cost: the sum of squared deviations from the
segment's mean) with PELT in C, in well under a millisecond; tests/test_change_points.py
holds its breakpoints to `Pelt(model="l2", jump=1)`'s on seeded series of the kinds
history sees.
"""

from __future__ import annotations

from typing import List

import numpy as np

from gpubench.errors import UserError


def pelt_l2(signal: np.ndarray, pen: float, min_size: int) -> List[int]:
    """The breakpoints (where each new segment starts) of the 1-d `signal`, as ruptures'
    `Pelt(model="l2", min_size=min_size, jump=1).fit(signal).predict(pen)[:-1]`."""
    try:
        import ruptures
    except ImportError as exc:
        raise UserError(f"change points need ruptures (pip install ruptures): {exc}") from None
    x = np.asarray(signal, dtype=float).ravel()
    min_size = max(int(min_size), 1)
    if x.size < 2 * min_size:  # no segmentation fits (ruptures would refuse it)
        return []
    # Centred: the cost is the same, and the C code's sums stay small.
    found = ruptures.KernelCPD(kernel="linear", min_size=min_size, jump=1).fit(
        (x - x.mean()).reshape(-1, 1)).predict(pen=pen)
    return [int(b) for b in found[:-1]]
