"""CUDA-event latency timing, against a stand-in for torch.cuda.Event that behaves as
torch's does (the CUDA event is created on the first record()): every event is created
before a trial's clock starts, and every record names the step's own stream (a bare
record() lands on GPU 0's current stream whatever GPU the step runs on). And serving's
device clock (DeviceClock) against a device whose clock drifts from the host's: its
reference is renewed, so the drift does not accumulate over a long search."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpubench.backends.cuda_events import CudaEventPool  # noqa: E402
from gpubench.backends.torch_step import TorchStep  # noqa: E402


class FakeStream:
    def __init__(self, device_index):
        self.device_index = device_index
        self.synchronized = 0

    def synchronize(self):
        self.synchronized += 1


class FakeEvent:
    created_during = []  # the phase in which each CUDA event was created

    phase = "setup"

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.handle = None
        self.streams = []

    def record(self, stream=None):
        if self.handle is None:  # torch creates the CUDA event lazily, here
            FakeEvent.created_during.append(FakeEvent.phase)
            self.handle = object()
        self.streams.append(stream)

    def elapsed_time(self, end):
        return 2.0  # ms


@pytest.fixture
def fake_events(monkeypatch):
    FakeEvent.created_during = []
    FakeEvent.phase = "setup"
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    return FakeEvent


def _timed_trial(timer, iterations):
    FakeEvent.phase = "trial"
    TorchStep._run_with_timer(iterations, timer, lambda i: None)
    FakeEvent.phase = "setup"


def test_events_are_created_before_the_trial_and_on_the_steps_stream(fake_events):
    stream = FakeStream(device_index=1)
    pool = CudaEventPool(stream)
    timer = pool.timer(50)
    assert fake_events.created_during == ["setup"] * 100
    assert stream.synchronized == 1  # the creating records have finished
    _timed_trial(timer, 50)
    assert "trial" not in fake_events.created_during
    for event in timer.starts + timer.ends:
        assert event.streams[1:] == [stream]  # the trial's record, on GPU 1's stream
    np.testing.assert_allclose(timer.latencies_s(), np.full(50, 0.002))


def test_trials_reuse_the_pool_and_grow_it_outside_the_clock(fake_events):
    pool = CudaEventPool(FakeStream(device_index=0))
    first = pool.timer(30)
    _timed_trial(first, 30)
    second = pool.timer(80)
    assert second.starts[:30] == first.starts and second.ends[:30] == first.ends
    _timed_trial(second, 80)
    assert fake_events.created_during == ["setup"] * 160
    assert len(pool.timer(10).latencies_s()) == 10


# -- serving's device clock: drift between the host's clock and the device's ------------
class DriftingDevice:
    """The host's time.perf_counter, moved by the test, and a device whose clock runs
    `drift` fast against it (in another epoch). An event runs when it is recorded (the
    test sets the host time to a batch's completion before serve() stamps it), and its
    elapsed time is float32 milliseconds, as cudaEventElapsedTime's; every span asked
    for is kept."""

    def __init__(self, drift):
        self.now, self.drift, self.spans_s = 1000.0, drift, []

    def perf_counter(self):
        return self.now

    def device_s(self):
        return (self.now - 1000.0) * (1 + self.drift) + 86400.0

    def event_class(self):
        device = self

        class DriftEvent:
            def __init__(self, enable_timing=False):
                self.at = None

            def record(self, stream=None):
                self.at = device.device_s()

            def synchronize(self):
                pass

            def elapsed_time(self, end):
                device.spans_s.append(abs(end.at - self.at))
                return float(np.float32((end.at - self.at) * 1e3))

        return DriftEvent


def _search_on_a_drifting_device(monkeypatch, drift, probes=16, probe_s=20.0, gap_s=0.5,
                                 batch_every_s=0.02):
    """A --find-max-qps search's worth of batches (16 probes of 20 s, 0.5 s apart: 5.5
    minutes): each probe's worst error of the completion times the clock returned."""
    import time

    from gpubench.backends.cuda_events import DeviceClock

    device = DriftingDevice(drift)
    monkeypatch.setattr(torch.cuda, "Event", device.event_class())
    monkeypatch.setattr(time, "perf_counter", device.perf_counter)
    clock = DeviceClock(FakeStream(device_index=0))
    worst = []
    for _ in range(probes):
        errors = []
        for _ in range(int(probe_s / batch_every_s)):
            device.now += batch_every_s  # the batch completes now
            errors.append(abs(clock.stamp() - device.now))
        worst.append(max(errors))
        device.now += gap_s  # the probe's row is written, the next probe set up
    return worst, device, clock


def test_the_clocks_drift_does_not_accumulate_over_a_search(monkeypatch):
    """5 ppm of drift (1 ms in 200 s) against a 5 ms latency bound: anchored once, the
    last probes' completions were off by 1.6 ms; re-anchored, every completion is within
    the drift of REFERENCE_MAX_AGE_S (0.5 us) and the last probe is as exact as the first."""
    worst, _, clock = _search_on_a_drifting_device(monkeypatch, drift=5e-6)
    assert max(worst) < 2e-6
    assert worst[-1] <= worst[0] + 1e-6  # nothing accumulates from probe to probe
    assert clock.facts()["clock_anchors"] > 16  # renewed within every probe


def test_completions_are_read_off_a_recent_reference(monkeypatch):
    """Every elapsed time the clock asks the device for spans at most
    REFERENCE_MAX_AGE_S, gaps between probes included (float32 milliseconds resolve
    about 8 ns there, 30 us at 5 minutes)."""
    _, device, clock = _search_on_a_drifting_device(monkeypatch, drift=0.0)
    assert device.spans_s and max(device.spans_s) <= 0.1 + 1e-9
    assert clock.max_age_s == 0.1  # REFERENCE_MAX_AGE_S
