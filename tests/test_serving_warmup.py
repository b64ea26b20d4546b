"""The serving scenarios' warm-up schedule: before the first timed query, every batch
size a scenario serves has run at least twice (serving.WARMUP_RUNS_PER_SHAPE, 2). torch's
compile:reduce-overhead (CUDA-graph trees) runs a new shape eagerly once and records its
graph on the second call, so a shape run only once before timing would record a CUDA
graph inside a timed probe. A recording step on a virtual clock
(tests/suite_plugins.py) logs every batch it serves, and whether a trial had begun."""

from collections import Counter

import pytest

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.scenarios.registry import resolve_scenario
from gpubench.telemetry import NullSampler
from gpubench.workloads import resolve_workload
from suite_plugins import VirtualServiceStep, VirtualTime


class RecordingStep(VirtualServiceStep):
    """Serves on the virtual clock and logs (timed?, batch size) for every batch."""

    def __init__(self, batch_size):
        super().__init__(batch_size)
        self.timed = False
        self.served = []

    def serve(self, samples):
        self.served.append((self.timed, len(samples)))
        return super().serve(samples)


class TrialMarker(NullSampler):
    """The scenarios bracket every trial or probe with the sampler: its first
    begin_trial is the moment timing starts."""

    def __init__(self, step):
        self.step = step

    def begin_trial(self, trial):
        self.step.timed = True


SCENARIOS = {  # scenario: (request settings, batch cap)
    "server": (dict(target_qps=800.0, latency_bound_ms=50.0, batch_size=4), 4),
    "offline": (dict(batch_size=8), 8),  # 143 samples a query: a last batch of 7
    "single-stream": ({}, 1),
    "multi-stream": (dict(batch_size=4), 4),
}


def _served_before_and_during_timing(monkeypatch, scenario):
    VirtualTime().install(monkeypatch)
    settings, batch = SCENARIOS[scenario]
    protocol = ProtocolConfig(trials=2, warmup_s=0.01, min_trial_s=0.05)
    req = RunRequest("linreg", "test-virtual-service-time", mode="infer", scenario=scenario,
                     protocol=protocol, min_queries=None if scenario == "offline" else 20,
                     **settings)
    step = RecordingStep(batch)
    rows = []
    ctx = ScenarioContext(step=step, request=req, workload=resolve_workload("linreg", {}),
                          batch_size=batch, peak_tflops=None, sampler=TrialMarker(step),
                          progress=lambda *a, **k: None, emit=rows.append)
    resolve_scenario(scenario).run(ctx)
    assert len(rows) == 2 and step.timed
    before = Counter(size for timed, size in step.served if not timed)
    during = Counter(size for timed, size in step.served if timed)
    return before, during, batch


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_shape_served_in_a_trial_ran_twice_before_timing(monkeypatch, scenario):
    before, during, batch = _served_before_and_during_timing(monkeypatch, scenario)
    assert during and all(before[size] >= 2 for size in during), (before, during)


def test_the_server_warms_every_batch_size_twice_in_a_row(monkeypatch):
    """The server's batcher may form any size up to the cap: each runs twice (eagerly,
    then recorded), then full batches for the timed warm-up; nothing else."""
    before, during, batch = _served_before_and_during_timing(monkeypatch, "server")
    assert {size: before[size] for size in range(1, batch)} == {1: 2, 2: 2, 3: 2}
    assert before[batch] >= 2 + 10  # twice, then the timed warm-up's batches (10 at least)
    assert set(before) == {1, 2, 3, 4}


def test_offline_warms_its_partial_last_batch_twice(monkeypatch):
    before, during, batch = _served_before_and_during_timing(monkeypatch, "offline")
    assert set(during) == {8, 7}  # 17 full batches and a last one of 7 a query
    assert before[7] == 2
