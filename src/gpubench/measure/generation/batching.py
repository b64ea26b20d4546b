"""How a generation server forms its batches over a GenerationEngine (engine.py): the
loop of one probe, pure of any framework and clock, so a fake engine on a fake clock
tests it.

- continuous (iteration-level, Orca's and vLLM's): at every step, requests that have
  arrived take the free KV-cache slots (one prefill call, which stamps their first
  token), then one decode call runs every request in a slot, each at its own position;
  a request that has its last token leaves and frees its slot for the next step;
- static: a batch of up to max_batch requests is taken from the queue, prefilled, and
  decoded until its last request finished; only then is the next batch formed, so a
  request that arrives meanwhile waits for the whole batch.

Requests arrive at their scheduled times (seconds on the loop's clock); the loop sees
them between engine calls, as a server's scheduler does, so a request's TTFT runs from
its scheduled arrival and holds its queueing. Token times are the clock read after each
engine call (which returns once the tokens exist). Nothing waits for an idle server but
`sleep_until` the next arrival.

A probe is bounded: at `deadline_s` the loop stops whatever is queued or decoding; such
requests are unfinished (RequestTimes.finished False) and count as missing their bounds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Sequence

from gpubench.measure.generation import BATCHING
from gpubench.measure.generation.engine import GenerationEngine
from gpubench.measure.generation.latency import RequestTimes

CONTINUOUS, STATIC = BATCHING

Clock = Callable[[], float]
SleepUntil = Callable[[float], None]


@dataclass
class Served:
    """What one probe's loop did: each request's times (in arrival order) and the batch
    of every decode call."""

    requests: List[RequestTimes]
    decode_batches: List[int] = field(default_factory=list)
    prefill_batches: List[int] = field(default_factory=list)
    # each call's device seconds (the engine's last_call_s), and the prompt tokens prefilled
    decode_s: List[float] = field(default_factory=list)
    prefill_s: List[float] = field(default_factory=list)
    prompt_tokens: int = 0
    end_s: float = 0.0  # the clock when the loop stopped

    @property
    def unfinished(self) -> int:
        return sum(not r.finished for r in self.requests)


class _Loop:
    """The state both schedulers share: arrivals not yet seen, the queue, the slots."""

    def __init__(self, engine: GenerationEngine, arrivals_s: Sequence[float],
                 prompts: Sequence[object], output_len: int, clock: Clock,
                 sleep_until: SleepUntil, deadline_s: float) -> None:
        if output_len < 1:
            raise ValueError(f"a request generates at least one token, got {output_len}")
        self.engine, self.prompts, self.output_len = engine, prompts, output_len
        self.clock, self.sleep_until, self.deadline_s = clock, sleep_until, deadline_s
        order = sorted(range(len(arrivals_s)), key=lambda i: arrivals_s[i])
        self.times = [RequestTimes(float(a), prompt_len=len(p), finished=False)
                      for a, p in zip(arrivals_s, prompts)]
        self.pending: Deque[int] = deque(order)  # not arrived yet, by arrival
        self.queue: Deque[int] = deque()  # arrived, waiting for a slot
        self.running: Dict[int, int] = {}  # slot -> request
        self.free_slots: List[int] = list(range(engine.max_batch))[::-1]
        self.served = Served(self.times)

    def arrive(self) -> float:
        """Moves the requests due by now into the queue; the clock read."""
        now = self.clock()
        while self.pending and self.times[self.pending[0]].arrival_s <= now:
            self.queue.append(self.pending.popleft())
        return now

    def idle_wait(self) -> bool:
        """Nothing to run: waits for the next arrival; False when none is left (or the
        deadline comes first)."""
        if not self.pending:
            return False
        due = self.times[self.pending[0]].arrival_s
        if due > self.deadline_s:
            return False
        self.sleep_until(due)
        return True

    def prefill(self, requests: List[int]) -> None:
        slots = [self.free_slots.pop() for _ in requests]
        prompts = [self.prompts[i] for i in requests]
        tokens = self.engine.prefill(slots, prompts)
        now = self.clock()
        self.served.prefill_batches.append(len(requests))
        self.served.prefill_s.append(self.engine.last_call_s)
        self.served.prompt_tokens += sum(len(p) for p in prompts)
        for slot, i, _ in zip(slots, requests, tokens):
            self.running[slot] = i
            self._stamp(slot, i, now)

    def decode(self) -> None:
        slots = sorted(self.running)
        self.engine.decode(slots)
        now = self.clock()
        self.served.decode_batches.append(len(slots))
        self.served.decode_s.append(self.engine.last_call_s)
        for slot in slots:
            self._stamp(slot, self.running[slot], now)

    def _stamp(self, slot: int, i: int, now: float) -> None:
        r = self.times[i]
        r.token_s.append(now)
        if len(r.token_s) >= self.output_len:
            r.finished = True
            del self.running[slot]
            self.engine.free(slot)
            self.free_slots.append(slot)

    def admit(self, limit: int) -> None:
        """Prefills up to `limit` queued requests into free slots (one call)."""
        joining = [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]
        if joining:
            self.prefill(joining)

    def stop(self) -> Served:
        for slot in list(self.running):  # cut at the deadline: their slots go back
            self.engine.free(slot)
        self.served.end_s = self.clock()
        return self.served


def serve_continuous(engine: GenerationEngine, arrivals_s: Sequence[float],
                     prompts: Sequence[object], output_len: int, clock: Clock,
                     sleep_until: SleepUntil, deadline_s: float) -> Served:
    """Iteration-level batching (module docstring): arrived requests join free slots at
    every step, finished ones leave."""
    loop = _Loop(engine, arrivals_s, prompts, output_len, clock, sleep_until, deadline_s)
    while loop.arrive() < deadline_s:
        if not loop.running and not loop.queue:
            if not loop.idle_wait():
                break
            continue
        loop.admit(len(loop.free_slots))
        if loop.running and loop.clock() < deadline_s:
            loop.decode()
    return loop.stop()


def serve_static(engine: GenerationEngine, arrivals_s: Sequence[float],
                 prompts: Sequence[object], output_len: int, clock: Clock,
                 sleep_until: SleepUntil, deadline_s: float) -> Served:
    """Request-level batching (module docstring): a batch runs to its end before the
    next is formed."""
    loop = _Loop(engine, arrivals_s, prompts, output_len, clock, sleep_until, deadline_s)
    while loop.arrive() < deadline_s:
        if not loop.queue:
            if not loop.idle_wait():
                break
            continue
        loop.admit(engine.max_batch)
        while loop.running and loop.clock() < deadline_s:
            loop.decode()
    return loop.stop()


SCHEDULERS = {CONTINUOUS: serve_continuous, STATIC: serve_static}
