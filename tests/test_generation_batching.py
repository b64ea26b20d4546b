"""The generation server's schedulers (measure/generation/batching.py) on a fake engine
and a fake clock: continuous batching admits a request at the next decode step, static
batching makes it wait for the batch; TTFT counts queueing; the drain limit cuts
requests, which then miss their bounds."""

from typing import List, Sequence

import numpy as np
import pytest

from gpubench.measure.generation.batching import serve_continuous, serve_static
from gpubench.measure.generation.engine import GenerationEngine
from gpubench.measure.generation.latency import goodput_columns

PREFILL_S, DECODE_S = 0.010, 0.005


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep_until(self, t: float) -> None:
        self.now = max(self.now, t)


class FakeEngine(GenerationEngine):
    """Each call costs a fixed time on the fake clock; checks slots are used rightly."""

    def __init__(self, clock: FakeClock, max_batch: int, max_len: int = 64) -> None:
        self.clock, self.max_batch, self.max_len = clock, max_batch, max_len
        self.position = {}  # slot -> tokens in its cache
        self.calls: List[tuple] = []

    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> List[int]:
        for s, p in zip(slots, prompts):
            assert s not in self.position, "prefill into an occupied slot"
            self.position[s] = len(p)
        self.clock.now += PREFILL_S
        self.calls.append(("prefill", tuple(slots)))
        return [1] * len(slots)

    def decode(self, slots: Sequence[int]) -> List[int]:
        for s in slots:
            self.position[s] += 1
            assert self.position[s] <= self.max_len
        self.clock.now += DECODE_S
        self.calls.append(("decode", tuple(slots)))
        return [1] * len(slots)

    def free(self, slot: int) -> None:
        del self.position[slot]


def run(scheduler, arrivals, output_len=10, max_batch=4, deadline=10.0):
    clock = FakeClock()
    engine = FakeEngine(clock, max_batch)
    prompts = [np.zeros(4, dtype=np.int64) for _ in arrivals]
    served = scheduler(engine, arrivals, prompts, output_len, clock, clock.sleep_until,
                       deadline)
    assert engine.position == {}, "every slot freed at the end"
    return served, engine


# A arrives at 0 and is decoding when B arrives at 12 ms (A's prefill ended at 10 ms; its
# first decode step runs 10-15 ms)
ARRIVALS = [0.0, 0.012]


def test_continuous_batching_admits_a_request_mid_batch_and_its_ttft_counts_queueing():
    served, engine = run(serve_continuous, ARRIVALS)
    a, b = served.requests
    # B joined at the next step (15 ms), long before A's batch ended
    assert b.token_s[0] < a.token_s[-1]
    assert ("prefill", (1,)) in engine.calls
    assert b.ttft_s == pytest.approx(0.015 + PREFILL_S - 0.012)  # 3 ms queued + prefill
    assert b.ttft_s > PREFILL_S  # the queueing counts
    assert max(served.decode_batches) == 2  # A and B decoded together
    assert all(len(r.token_s) == 10 and r.finished for r in served.requests)


def test_static_batching_makes_a_late_request_wait_for_the_batch():
    cont, _ = run(serve_continuous, ARRIVALS)
    stat, engine = run(serve_static, ARRIVALS)
    a, b = stat.requests
    # B's first token only after A's last: A's batch ran to its end first
    assert b.token_s[0] > a.token_s[-1]
    a_ends = PREFILL_S + 9 * DECODE_S
    assert b.ttft_s == pytest.approx(a_ends + PREFILL_S - 0.012)
    assert b.ttft_s > cont.requests[1].ttft_s
    assert max(stat.decode_batches) == 1  # never decoded together
    assert a.ttft_s == pytest.approx(cont.requests[0].ttft_s)  # A alike in both


def test_static_batching_takes_what_queued_up_to_max_batch():
    arrivals = [0.0, 0.001, 0.002, 0.003, 0.004]  # the last four queue behind the first
    served, engine = run(serve_static, arrivals, output_len=3, max_batch=3)
    prefills = [slots for kind, slots in engine.calls if kind == "prefill"]
    assert [len(s) for s in prefills] == [1, 3, 1]


def test_continuous_batching_fills_only_free_slots():
    arrivals = [0.0, 0.0, 0.0]
    served, engine = run(serve_continuous, arrivals, output_len=4, max_batch=2)
    prefills = [slots for kind, slots in engine.calls if kind == "prefill"]
    assert [len(s) for s in prefills] == [2, 1]  # the third waits for a freed slot
    third = served.requests[2]
    assert third.token_s[0] > max(served.requests[0].token_s)


def test_the_deadline_cuts_requests_and_they_miss_their_bounds():
    # 20 requests at once into 2 slots, 50 tokens each: the deadline comes first
    served, _ = run(serve_continuous, [0.0] * 20, output_len=50, max_batch=2, deadline=0.5)
    assert served.unfinished > 0
    assert served.end_s >= 0.5
    cut = [r for r in served.requests if not r.finished]
    assert not any(r.within(None, None) for r in cut)  # unbounded, and still not good
    done = [r for r in served.requests if r.finished]
    cols = goodput_columns(served.requests, 1.0, None, None)
    assert cols["requests_within_bounds"] == len(done) < 20


def test_an_idle_server_waits_for_the_next_arrival():
    served, _ = run(serve_continuous, [0.0, 5.0], output_len=2)
    late = served.requests[1]
    assert late.ttft_s == pytest.approx(PREFILL_S)  # nothing queued: straight in
