"""CUDA-event latency timing, against a stand-in for torch.cuda.Event that behaves as
torch's does (the CUDA event is created on the first record()): every event is created
before a trial's clock starts, and every record names the step's own stream (a bare
record() lands on GPU 0's current stream whatever GPU the step runs on)."""

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
