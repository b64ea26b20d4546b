"""Per-step latency from CUDA events (through torch), shared by the backends that run
on torch's CUDA streams (torch-cuda, tensorrt).

Two things make events honest:
- They are recorded on the stream the step's work runs on, named explicitly. A bare
  `Event.record()` records on the current stream of the *current* device, which is GPU 0
  unless set: with `--device 1` the events would time an idle GPU and read near zero.
- torch creates the CUDA event lazily, on its first `record()`. A pool creates (and
  first records) every event before a trial's clock starts, and trials reuse them, so no
  cudaEventCreate is ever timed.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
import torch

from gpubench.backends.base import StepTimer


class CudaEventTimer(StepTimer):
    """A start and an end event around every step, all on `stream`; read after
    synchronising."""

    def __init__(self, starts: List[Any], ends: List[Any], stream: Any) -> None:
        self.starts, self.ends, self.stream = starts, ends, stream

    def latencies_s(self) -> np.ndarray:
        return np.array([s.elapsed_time(e) for s, e in zip(self.starts, self.ends)]) / 1e3


class CudaEventPool:
    """The timing events of one step, on its stream, created before any trial and
    reused by every trial (a trial's latencies are read before the next one starts)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._starts: List[Any] = []
        self._ends: List[Any] = []

    def timer(self, iterations: int) -> CudaEventTimer:
        missing = iterations - len(self._starts)
        if missing > 0:
            fresh = [torch.cuda.Event(enable_timing=True) for _ in range(2 * missing)]
            for event in fresh:  # the first record creates the CUDA event: do it now
                event.record(self.stream)
            self.stream.synchronize()
            self._starts += fresh[:missing]
            self._ends += fresh[missing:]
        return CudaEventTimer(self._starts[:iterations], self._ends[:iterations], self.stream)


# The device clock's reference is never older than this when a completion is read off it
# (DeviceClock): the host's and the device's clocks drift apart (ppm; NTP slews the host's
# by up to 500 ppm), and cudaEventElapsedTime is float32 milliseconds, whose resolution
# falls with the span from the reference (about 8 ns at 0.1 s, 30 us at 5 minutes).
REFERENCE_MAX_AGE_S = 0.1
ANCHOR_TRIES = 3  # an anchor whose window is over twice the tightest seen is taken again


class DeviceClock:
    """Serving's completion times on the device's clock (steps with CUDA events:
    torch-cuda, tensorrt), mapped onto the host's time.perf_counter so that they compare
    with the host-clock moments queries were issued at.

    The mapping (an anchor): with `stream` idle, the host reads its clock and records a
    reference event at once, which the device runs as soon as it is recorded. A
    completion is an event recorded after the batch's work, and its time is the
    reference's host reading plus the events' elapsed time. The launch of the reference
    event (microseconds) is the anchor's error, bounded by its window (the host time
    around recording and waiting for it); an anchor whose window is over twice the
    tightest seen (the thread was preempted) is taken again, up to ANCHOR_TRIES times.

    The anchor is renewed, not kept for the run: whenever a completion finds the reference
    older than `max_age_s`, the stream is idle (serve() waited for the completion, its
    last work), so the clock anchors anew right then and reads the completion backwards
    from the new reference. Every completion is thus read against a reference at most
    `max_age_s` old, whatever the gaps between batches, trials and probes: the clocks'
    drift cannot accumulate over a long search, and the float32 elapsed time spans at most
    that long. The anchor runs after the completion, outside that batch's latency: it
    delays only the next batch, by one event's round trip (microseconds), at most once
    every `max_age_s`.

    facts() is run.json's record of the mapping, kept up to date as anchors are taken
    (the scenario writes run.json after its trials): `clock_alignment_s`, the widest
    anchor window (the mapping's bound), and `clock_anchors`. Two events are reused:
    serve() waits for the completion event before the next batch."""

    def __init__(self, stream: Any, max_age_s: float = REFERENCE_MAX_AGE_S) -> None:
        import time

        self.stream, self.max_age_s = stream, max_age_s
        self._clock = time.perf_counter
        self._done = torch.cuda.Event(enable_timing=True)
        self._ref = torch.cuda.Event(enable_timing=True)
        self._done.record(stream)  # the first record creates the CUDA event: not in a batch
        stream.synchronize()
        self.ref_host_s = 0.0
        self.alignment_s = 0.0  # the widest window of the anchors taken
        self._tightest_s = math.inf
        self._facts: Dict[str, Any] = {"latency_clock": "device_events",
                                       "clock_alignment_s": 0.0,
                                       "clock_reference_max_age_s": max_age_s,
                                       "clock_anchors": 0}
        self.anchor()

    def facts(self) -> Dict[str, Any]:
        return self._facts

    def anchor(self) -> None:
        """Takes a new reference: the stream must be idle (nothing queued on it)."""
        for _ in range(ANCHOR_TRIES):
            t0 = self._clock()
            self._ref.record(self.stream)
            self.stream.synchronize()
            window = self._clock() - t0
            self._tightest_s = min(self._tightest_s, window)
            if window <= 2 * self._tightest_s:
                break
        self.ref_host_s = t0
        self.alignment_s = max(self.alignment_s, window)
        self._facts["clock_alignment_s"] = self.alignment_s
        self._facts["clock_anchors"] += 1

    def stamp(self) -> float:
        """Records an event after the work queued on the stream so far, waits for it, and
        returns when it ran on the device, in time.perf_counter seconds."""
        self._done.record(self.stream)
        self._done.synchronize()
        if self._clock() - self.ref_host_s <= self.max_age_s:
            return self.ref_host_s + self._ref.elapsed_time(self._done) / 1e3
        self.anchor()  # the stream is idle: the completion was its last work
        return self.ref_host_s - self._done.elapsed_time(self._ref) / 1e3
