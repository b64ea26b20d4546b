"""Poisson arrivals for the server scenario: the schedule, drawn before a probe from a
seeded generator, and the thread that issues its queries at their times.

The schedule is unit-rate exponential gaps drawn in fixed chunks and scaled by
1/rate, so one seed gives the same arrival times on every run, and one seed at two
rates gives the same pattern compressed: the --find-max-qps search compares rates on
the same arrivals (common random numbers), so a probe passes or fails on the rate, not
on a luckier draw. It runs until both the minimum duration and the minimum query count
are reached, as LoadGen generates its server queries.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional, Sequence, Union

import numpy as np


clock = time.perf_counter

CHUNK = 4096  # gaps drawn at a time: the draw depends on the seed alone, not on the rate
# streams of one seed: the arrival times, and which library sample each query carries
ARRIVAL_STREAM, SAMPLE_STREAM = 0, 1
Seed = Union[int, Sequence[int]]  # a seed, or a seed and more (the trial)


def _rng(seed: Seed, stream: int) -> np.random.Generator:
    return np.random.default_rng([*np.atleast_1d(seed).tolist(), stream])


def poisson_schedule(rate_qps: float, seed: Seed, min_duration_s: float,
                     min_queries: int) -> np.ndarray:
    """Arrival times (s from the schedule's start) of a Poisson process of `rate_qps`:
    up to the first arrival at which both `min_duration_s` has passed and
    `min_queries` queries have arrived."""
    if not rate_qps > 0:
        raise ValueError(f"a Poisson rate must be positive, got {rate_qps}")
    rng = _rng(seed, ARRIVAL_STREAM)
    parts: List[np.ndarray] = []
    last, count = 0.0, 0
    while True:
        times = last + np.cumsum(rng.standard_exponential(CHUNK)) / rate_qps
        done = np.flatnonzero((times >= min_duration_s)
                              & (np.arange(count + 1, count + CHUNK + 1) >= min_queries))
        if done.size:
            parts.append(times[:done[0] + 1])
            return np.concatenate(parts)
        parts.append(times)
        last, count = float(times[-1]), count + CHUNK


def query_samples(seed: Seed, queries: int, library_size: int) -> np.ndarray:
    """The library sample each query carries, drawn with the schedule's seed."""
    return _rng(seed, SAMPLE_STREAM).integers(0, library_size, queries)


class ArrivalThread(threading.Thread):
    """Issues a probe's queries at their scheduled times: `issue_due` issues every query
    due by now and says when the next is due (QueryQueue.issue_due); the thread sleeps
    until then, so a burst of late arrivals goes out at once. Latency counts from the
    scheduled time, so an issue that ran late counts against the server, never for it
    (no coordinated omission)."""

    def __init__(self, issue_due: Callable[[], Optional[float]]) -> None:
        super().__init__(name="gpubench-arrivals", daemon=True)
        self.issue_due = issue_due
        self._halt = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                due = self.issue_due()
                if due is None:
                    return
                self._halt.wait(max(0.0, due - clock()))
        except BaseException as exc:  # re-raised by the serving loop (join_and_check)
            self.error = exc

    def stop(self) -> None:
        self._halt.set()

    def join_and_check(self) -> None:
        self.stop()
        self.join()
        if self.error is not None:
            raise self.error
