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

from typing import Any, List

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


class DeviceClock:
    """Serving's completion times on the device's clock (steps with CUDA events:
    torch-cuda, tensorrt), mapped onto the host's time.perf_counter so that they compare
    with the host-clock moments queries were issued at.

    The mapping: with `stream` idle, the host reads its clock and records a reference
    event at once, which the device runs as soon as it is recorded; a completion is an
    event recorded after the batch's work, and its time is the host reading plus the
    events' elapsed time. The launch of the reference event (microseconds) is the
    mapping's error, bounded by `alignment_s` (the host time around recording and
    waiting for it). One event is reused: serve() waits for it before the next batch."""

    def __init__(self, stream: Any) -> None:
        import time

        self.stream, self._clock = stream, time.perf_counter
        self._done = torch.cuda.Event(enable_timing=True)
        self._ref = torch.cuda.Event(enable_timing=True)
        self._done.record(stream)  # the first record creates the CUDA event: not in a batch
        stream.synchronize()
        t0 = self._clock()
        self._ref.record(stream)
        stream.synchronize()
        self.ref_host_s = t0
        self.alignment_s = self._clock() - t0

    def facts(self) -> dict:
        return {"latency_clock": "device_events", "clock_alignment_s": self.alignment_s}

    def stamp(self) -> float:
        """Records an event after the work queued on the stream so far, waits for it, and
        returns when it ran on the device, in time.perf_counter seconds."""
        self._done.record(self.stream)
        self._done.synchronize()
        return self.ref_host_s + self._ref.elapsed_time(self._done) / 1e3
