"""history's PELT (results/change_points.py) finds ruptures' breakpoints: the same
recursion, its segment costs from cumulative sums instead of a pass over each segment.
Seeded series of the kinds history sees: pure noise, steps up and down, several steps,
a wild night, a metric without noise, at the lengths and penalties history uses."""

import math

import numpy as np
import pytest

from gpubench.results.change_points import pelt_l2
from gpubench.results.history import PENALTY_FACTOR, diff_sigma

ruptures = pytest.importorskip("ruptures")


def series(kind: str, n: int, rng) -> np.ndarray:
    x = 1000.0 * (1 + 0.02 * rng.standard_normal(n))
    if kind == "step":
        x[rng.integers(n // 4, 3 * n // 4):] *= rng.choice([0.9, 1.1])
    elif kind == "steps":
        for at in sorted(rng.integers(5, n - 5, 3)):
            x[at:] *= 1 + rng.normal(0, 0.08)
    elif kind == "wild":
        x[rng.integers(0, n)] *= 3
    elif kind == "flat":  # peak memory: no noise at all, one real step
        x = np.full(n, 2.0 ** 30)
        x[n // 2:] += 2.0 ** 20
    return x


@pytest.mark.parametrize("kind", ["noise", "step", "steps", "wild", "flat"])
def test_the_breakpoints_are_ruptures_breakpoints(kind):
    rng = np.random.default_rng(["noise", "step", "steps", "wild", "flat"].index(kind))
    checked = 0
    for trial in range(40):
        n = int(rng.integers(12, 160))
        min_size = int(rng.choice([2, 3, 5, 7]))
        logs = np.log(series(kind, n, rng))
        pen = PENALTY_FACTOR * diff_sigma(logs) ** 2 * math.log(n) * rng.choice([0.3, 1.0, 3.0])
        want = [] if n < 2 * min_size else ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(
            logs.reshape(-1, 1)).predict(pen=pen)[:-1]
        assert pelt_l2(logs, pen, min_size) == want, (kind, trial, n, min_size, pen)
        checked += bool(want)
    assert kind in ("noise", "wild", "flat") or checked  # some series had breakpoints
