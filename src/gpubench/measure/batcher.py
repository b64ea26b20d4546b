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
from typing import Callable, Deque, Iterable, List, Optional

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
    """Queries (ids) issued by the arrival thread (put, then close when the schedule
    ends), taken in batches by the serving loop (next_batch). `enqueued_s[id]` is when
    each entered the queue (the arrival thread writes it before put)."""

    def __init__(self, max_batch: int, timeout_s: float, enqueued_s: np.ndarray,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.max_batch, self.timeout_s, self.clock = max_batch, timeout_s, clock
        self.enqueued_s = enqueued_s
        self._waiting: Deque[int] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, ids: Iterable[int]) -> None:
        with self._cond:
            self._waiting.extend(ids)
            self._cond.notify()

    def close(self) -> None:
        """No more queries will come: what waits goes without waiting for the timeout."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def next_batch(self, deadline_s: float) -> List[int]:
        """The next batch by the policy; [] once the queue is closed and empty, or when
        `deadline_s` passes first (the probe's drain limit: what still waits is counted
        unfinished)."""
        with self._cond:
            while True:
                now = self.clock()
                if now >= deadline_s:
                    return []
                waiting = self._waiting
                oldest = float(self.enqueued_s[waiting[0]]) if waiting else None
                wait = dispatch_wait_s(len(waiting), oldest, now, self.max_batch, self.timeout_s)
                if wait == 0.0 or (self._closed and waiting):
                    n = min(len(waiting), self.max_batch)
                    return [waiting.popleft() for _ in range(n)]
                if wait is None and self._closed:
                    return []
                left = deadline_s - now
                self._cond.wait(left if wait is None else min(wait, left))

    def drain(self) -> List[int]:
        """Whatever still waits (taken out): the queries a probe left unfinished."""
        with self._cond:
            left = list(self._waiting)
            self._waiting.clear()
            return left
