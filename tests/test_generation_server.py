"""The generate-mode server scenario (scenarios/serving/generate_server.py) over a fake
engine whose calls take real (slept) time: fixed-rate probes as rows with the token
columns and goodput, and a --find-max-qps search on both token bounds whose answer
lands on the last probe's row."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from gpubench.measure.generation.engine import GenerationEngine
from gpubench.measure.protocol_config import ProtocolConfig
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.scenarios.serving.generate_server import GenerateServerScenario
from gpubench.telemetry.base import NullSampler
from gpubench.workloads import resolve_workload

PREFILL_S, DECODE_S = 0.001, 0.0005
TINY_GPT = {"layers": "2", "d_model": "32", "heads": "2", "seq_len": "64", "vocab": "64"}


class SleepingEngine(GenerationEngine):
    def __init__(self, max_batch, max_len):
        self.max_batch, self.max_len = max_batch, max_len
        self.used = {}
        self.most_slots = 0

    def prefill(self, slots, prompts):
        for s, p in zip(slots, prompts):
            assert s not in self.used and len(p) + 1 <= self.max_len
            assert p.dtype == np.int64 and p.max() < 64
            self.used[s] = len(p)
        self.most_slots = max(self.most_slots, len(self.used))
        time.sleep(PREFILL_S)
        return [0] * len(slots)

    def decode(self, slots):
        for s in slots:
            self.used[s] += 1
            assert self.used[s] <= self.max_len
        time.sleep(DECODE_S)
        self.last_call_s = DECODE_S
        return [0] * len(slots)

    def free(self, slot):
        del self.used[slot]


class FakeStep:
    device = SimpleNamespace(kind="cpu")

    def __init__(self):
        self.engines = []

    def generation_engine(self, max_batch, max_len):
        self.engines.append(SleepingEngine(max_batch, max_len))
        return self.engines[-1]

    def peak_mem_bytes(self):
        return None


def request(**serving):
    values = dict(target_qps=None, find_max_qps=False, ttft_bound_ms=None, tpot_bound_ms=None,
                  prompt_dist=None, batching=None, min_queries=30, seed=0, prompt_len=8,
                  output_len=8,
                  protocol=ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.05))
    values.update(serving)
    return SimpleNamespace(**values)


def run(req, batch=4):
    rows = []
    step = FakeStep()
    ctx = ScenarioContext(step=step, request=req, workload=resolve_workload("gpt", TINY_GPT),
                          batch_size=batch, peak_tflops=None, sampler=NullSampler(),
                          progress=lambda *a, **k: None, emit=rows.append)
    stop, extra = GenerateServerScenario().run(ctx)
    return rows, stop, extra, step


def test_fixed_rate_probes_are_rows_with_token_latencies_and_goodput():
    req = request(target_qps=100.0, ttft_bound_ms=200.0, tpot_bound_ms=50.0,
                  prompt_dist="uniform:4-12", batching="continuous")
    rows, stop, extra, step = run(req)
    assert [r["trial"] for r in rows] == [0, 1]
    for r in rows:
        assert r["requests"] >= 30 and r["queries_unfinished"] == 0
        assert 0 < r["ttft_p50_ms"] <= r["ttft_p99_ms"]
        assert r["tpot_p50_ms"] >= DECODE_S * 1e3 * 0.9
        assert r["goodput_rps"] == pytest.approx(r["requests_within_bounds"] / r["duration_s"])
        assert r["tokens_per_s"] == pytest.approx(8 * r["requests"] / r["duration_s"])
        assert r["throughput_samples_per_s"] == pytest.approx(r["requests"] / r["duration_s"])
        # decode's own rate: its tokens over its calls' device seconds (the fake's sleeps)
        assert 0 < r["output_tokens_per_s"] <= 4 / DECODE_S
        assert r["latency_bound_met"] is True and "max_goodput_qps" not in r
    serving = extra["serving"]
    assert serving["batching"] == "continuous" and serving["max_len"] == 12 + 8
    assert serving["prompts"]["prompt_dist"] == "uniform:4-12"
    assert step.engines[0].most_slots <= 4


def test_bounds_too_tight_leave_goodput_at_zero_and_the_bound_unmet():
    req = request(target_qps=100.0, ttft_bound_ms=0.01, tpot_bound_ms=0.01)
    rows, *_ = run(req)
    assert all(r["requests_within_bounds"] == 0 and r["goodput_rps"] == 0 for r in rows)
    assert not any(r["latency_bound_met"] for r in rows)


def test_find_max_qps_searches_on_both_token_bounds():
    # full batch of 4: a request takes 1 + 7 x 0.5 = 4.5 ms, ~900 requests/s at most
    req = request(find_max_qps=True, ttft_bound_ms=25.0, tpot_bound_ms=5.0)
    rows, stop, extra, _ = run(req)
    assert stop == "max_goodput_qps_found"
    assert len(rows) >= 3 and all("goodput_rps" in r for r in rows)
    assert all("max_goodput_qps" not in r for r in rows[:-1])
    found = rows[-1]["max_goodput_qps"]
    search = extra["serving"]["search"]
    assert found == search["max_qps"] and found is not None
    # the answer's last probe held both bounds; the bracket closed above it
    assert [r["latency_bound_met"] for r in rows if r["offered_qps"] == found][-1] is True
    assert search["lowest_fail_qps"] is None or search["lowest_fail_qps"] > found
    assert found < 4 / (PREFILL_S + 7 * DECODE_S) * 1.2  # not above the engine's capacity
