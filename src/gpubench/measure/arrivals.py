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
from typing import Callable, Iterable, Optional, Sequence, Union

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
    """Issues the queries of a schedule at `start_s + schedule_s[i]` (time.perf_counter)
    into `put`, as their ids (places in the schedule): it sleeps until the next arrival,
    then issues every query already due at once (a burst takes one lock). Latency counts
    from the scheduled time, so an issue that ran late counts against the server, never
    for it (no coordinated omission); `issued_s` records when each went out (the
    batcher's timeout counts from there)."""

    def __init__(self, schedule_s: np.ndarray, start_s: float,
                 put: Callable[[Iterable[int]], None], done: Callable[[], None],
                 issued_s: Optional[np.ndarray] = None) -> None:
        super().__init__(name="gpubench-arrivals", daemon=True)
        self.due_s = start_s + np.asarray(schedule_s, dtype=float)
        self.put, self.done = put, done
        self.issued_s = np.full(len(self.due_s), np.nan) if issued_s is None else issued_s
        self._halt = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._issue()
        except BaseException as exc:  # re-raised by the serving loop (join_and_check)
            self.error = exc
        finally:
            self.done()

    def _issue(self) -> None:
        due, n, i = self.due_s, len(self.due_s), 0
        while i < n and not self._halt.is_set():
            now = clock()
            if due[i] > now:
                self._halt.wait(due[i] - now)
                continue
            j = int(np.searchsorted(due, now, side="right"))
            self.issued_s[i:j] = now
            self.put(range(i, j))
            i = j

    def stop(self) -> None:
        self._halt.set()

    def join_and_check(self) -> None:
        self.stop()
        self.join()
        if self.error is not None:
            raise self.error
