"""A generate trial's row from its batches' device seconds, on made-up seconds: TTFT is
a batch's prefill, TPOT and ITL its decode steps, the rates and the description's work
follow; and the work itself counted by hand for the tiny gpt."""

from types import SimpleNamespace

import pytest

from gpubench.measure.generation.batches import Generation
from gpubench.measure.generation.plan import generation_lengths, generation_work
from gpubench.measure.protocol import TrialResult
from gpubench.measure.scenarios.generate import GenerateThroughputScenario
from gpubench.workloads import resolve_workload

TINY = {"layers": "2", "d_model": "32", "heads": "2", "seq_len": "32", "vocab": "64"}


def test_work_of_the_tiny_gpt_counted_by_hand():
    w = generation_work(resolve_workload("gpt", TINY), "fp32", batch=4, prompt_len=16,
                        output_len=16)
    # K and V: 2 layers x 4 slots x 32 positions x d 32, 4 bytes
    assert w.kv_cache_bytes == 2 * 2 * 4 * 32 * 32 * 4
    # weights read once a step, shared by 4 tokens: every parameter but the position
    # table (embedding 64x32, per layer LN 64 + attention 4224 + LN 64 + MLP 8352,
    # final LN 64); K and V of the 24 positions a token sees on average (16 + 16/2)
    weights = 64 * 32 + 2 * (64 + 4224 + 64 + 8352) + 64
    assert w.decode_bytes_per_token == pytest.approx(weights * 4 / 4 + 2 * 2 * 32 * 24 * 4)
    assert w.bound_tokens_per_s(None) is None
    assert w.bound_tokens_per_s(100.0) == pytest.approx(100e9 / w.decode_bytes_per_token)
    # bf16 halves every byte; prefill grows with the prompt and the batch
    half = generation_work(resolve_workload("gpt", TINY), "bf16", 4, 16, 16)
    assert half.decode_bytes_per_token == pytest.approx(w.decode_bytes_per_token / 2)
    longer = generation_work(resolve_workload("gpt", TINY), "fp32", 8, 16, 16)
    assert longer.prefill_flops == 2 * w.prefill_flops


def test_lengths_default_to_128_fitted_to_seq_len():
    assert generation_lengths(None, None, 1024) == (128, 128)
    assert generation_lengths(None, None, 32) == (16, 16)
    assert generation_lengths(20, None, 32) == (20, 12)
    assert generation_lengths(None, 30, 32) == (2, 30)


def test_trial_row_from_device_seconds():
    # batch 2, prompt 5, output 3: a prefill of 10 ms, then decode steps of 2 and 4 ms
    gens = [Generation(0.010, [0.002, 0.004]), Generation(0.010, [0.002, 0.004])]
    work = generation_work(resolve_workload("gpt", TINY), "fp32", 2, 5, 3)
    step = SimpleNamespace(peak_mem_bytes=lambda: None)
    ctx = SimpleNamespace(batch_size=2, peak_tflops=None, step=step)
    engine = SimpleNamespace(compile_s=None, kv_cache_bytes=123)
    result = TrialResult(0, 2, 0.05, None, {"energy_j": 1.2}, None)
    row = GenerateThroughputScenario.trial_row(ctx, result, gens, work, engine, 50.0, 5, 3)
    assert row["requests"] == row["samples"] == 4
    assert row["ttft_p50_ms"] == pytest.approx(10.0) and row["ttft_p99_ms"] == pytest.approx(10.0)
    assert row["tpot_p50_ms"] == pytest.approx(3.0)  # (2 + 4) / 2 after the first token
    assert row["itl_p50_ms"] == pytest.approx(3.0)  # gaps 2, 4 in each of 4 requests
    assert row["itl_p99_ms"] == pytest.approx(4.0, rel=0.02)
    assert row["output_tokens_per_s"] == pytest.approx(2 * 2 * 2 / 0.012)  # decode tokens / s
    assert row["prefill_tokens_per_s"] == pytest.approx(2 * 5 * 2 / 0.020)
    assert row["tokens_per_s"] == pytest.approx(2 * 3 * 2 / 0.05)  # all output, wall time
    assert row["energy_j_per_output_token"] == pytest.approx(1.2 / 12)
    flops = 2 * work.prefill_flops + 8 * work.decode_flops_per_token
    assert row["tflops"] == pytest.approx(flops / 0.032 / 1e12)
    assert row["mfu"] is None  # no peak known
    assert row["decode_bound_tokens_per_s"] == pytest.approx(50e9 / work.decode_bytes_per_token)
    assert row["kv_cache_bytes"] == 123 and row["mem_bw_source"] == "analytic"


def test_cpu_estimate_counts_a_generated_batch_not_a_full_sequence():
    from gpubench.measure.cpu_estimate import step_flops
    from gpubench.measure.preflight import preflight
    from gpubench.measure.request import request_from

    values = {"workload": "gpt", "backend": "torch-cpu", "params": TINY, "batch_size": 4}
    infer = request_from({**values, "mode": "infer"})
    generate = request_from({**values, "mode": "generate", "prompt_len": 16, "output_len": 16})
    full = step_flops(infer, preflight(infer))  # 4 forwards over all 32 positions
    made = step_flops(generate, preflight(generate))  # 16 prompt + 15 decoded positions
    assert 0.5 * full < made < full


def test_memory_check_weighs_the_positions_a_request_fills():
    from gpubench.measure.preflight import memory_plan
    from gpubench.measure.request import request_from

    req = request_from({"workload": "gpt", "backend": "torch-cpu", "mode": "generate",
                        "params": {"seq_len": "1024"}})
    workload = resolve_workload("gpt", {"seq_len": "1024"})
    weighed, mode = memory_plan(req, workload, (128, 128))
    assert weighed.input_shape == (256,) and mode == "infer"
    assert memory_plan(req, workload, None) == (workload, "generate")


def test_peak_memory_bandwidth_from_the_datasheet_table():
    from gpubench.peaks import peak_mem_bw_gbs

    assert peak_mem_bw_gbs("NVIDIA H100 80GB HBM3") == 3350.0
    assert peak_mem_bw_gbs("NVIDIA H100 PCIe") == 2000.0
    assert peak_mem_bw_gbs("NVIDIA A100-SXM4-80GB") == 2039.0
    assert peak_mem_bw_gbs("NVIDIA A100-SXM4-40GB") == 1555.0
    assert peak_mem_bw_gbs("Tesla V100-SXM3-32GB") is None  # a variant the table leaves out
    assert peak_mem_bw_gbs("Intel(R) Xeon(R) Processor") is None and peak_mem_bw_gbs(None) is None
