"""The server scenario's dynamic batcher: queries wait in a queue, and the serving loop
takes them in batches of up to `max_batch` samples, as Triton's dynamic batcher and
TF Serving's batching do.

The policy (`dispatch_wait_s`, pure): a batch goes as soon as `max_batch` queries wait,
or once the oldest waiting query has waited `timeout_s` since it was enqueued;
otherwise the batcher waits for whichever comes first. With a timeout of 0 it is greedy:
whatever waits when the model is free goes at once, so batches form only under load
(while a batch runs, queries pile up).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Deque, List, Optional

import numpy as np

# A query is its place in the probe's schedule (an int): its scheduled time, its sample
# and when it was enqueued live in the probe's arrays, so the hot path moves ints.


def dispatch_wait_s(waiting: int, oldest_enqueued_s: Optional[float], now_s: float,
                    max_batch: int, timeout_s: float) -> Optional[float]:
    """How long the batcher waits before taking a batch: 0 = now (a full batch waits, or
    the oldest query has waited the timeout), a positive time = at most that (unless
    more queries arrive first), None = until a query arrives (none waits)."""
    if waiting == 0 or oldest_enqueued_s is None:
        return None
    if waiting >= max_batch:
        return 0.0
    return max(0.0, oldest_enqueued_s + timeout_s - now_s)


class QueryQueue:
    """A probe's queries: issued when due (their ids, places in the schedule `due_s`, in
    time.perf_counter seconds) and taken in batches by the serving loop (next_batch).

    The arrival thread (arrivals.py) issues them, sleeping until each is due;
    the serving loop also issues whatever has come due each time it looks for a batch,
    so a busy server sees its arrivals on time even when the arrival thread wakes late
    (a loaded machine delays a sleeping thread by milliseconds). `issued_s[id]` is when
    each entered the queue: the batch timeout counts from there, latency from `due_s`."""

    def __init__(self, max_batch: int, timeout_s: float, due_s: np.ndarray,
                 clock: Callable[[], float] = time.perf_counter,
                 condition: Optional[threading.Condition] = None) -> None:
        # `clock` and `condition` (its lock, and the waits of next_batch) are the real
        # ones unless a test runs the queue on a virtual clock (tests/suite_plugins.py)
        self.max_batch, self.timeout_s, self.clock = max_batch, timeout_s, clock
        self.due_s = due_s
        self.issued_s = np.full(len(due_s), np.nan)
        self._next = 0  # the first query not yet issued
        self._waiting: Deque[int] = collections.deque()
        self._cond = condition if condition is not None else threading.Condition()

    def _issue(self, now: float) -> None:
        """Under the lock: every query due by `now` joins the queue."""
        j = int(np.searchsorted(self.due_s, now, side="right"))
        if j > self._next:
            self.issued_s[self._next:j] = now
            self._waiting.extend(range(self._next, j))
            self._next = j

    def issue_due(self) -> Optional[float]:
        """Issues every query due by now; returns when the next one is due (None: all
        are issued)."""
        with self._cond:
            before = self._next
            self._issue(self.clock())
            if self._next > before:
                self._cond.notify()
            return float(self.due_s[self._next]) if self._next < len(self.due_s) else None

    @property
    def all_issued(self) -> bool:
        return self._next >= len(self.due_s)

    def next_batch(self, deadline_s: float) -> List[int]:
        """The next batch by the policy; [] once every query is issued and taken, or when
        `deadline_s` passes first (the probe's drain limit: what still waits is counted
        unfinished)."""
        with self._cond:
            while True:
                now = self.clock()
                if now >= deadline_s:
                    return []
                self._issue(now)
                waiting = self._waiting
                oldest = float(self.issued_s[waiting[0]]) if waiting else None
                wait = dispatch_wait_s(len(waiting), oldest, now, self.max_batch, self.timeout_s)
                done = self.all_issued  # no more will come: no reason to wait for them
                if wait == 0.0 or (done and waiting):
                    n = min(len(waiting), self.max_batch)
                    return [waiting.popleft() for _ in range(n)]
                if wait is None and done:
                    return []
                left = deadline_s - now  # idle: the arrival thread's notify wakes it
                self._cond.wait(left if wait is None else min(wait, left))

    def drain(self) -> List[int]:
        """Whatever still waits (taken out): the queries a probe left unfinished."""
        with self._cond:
            left = list(self._waiting)
            self._waiting.clear()
            return left
