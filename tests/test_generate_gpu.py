"""--mode generate on torch-cuda (skipped, with the reason, where there is no GPU): eager
and CUDA-graph decode give the uncached model's tokens, every precision runs, and the
decode rate stays within its memory-bandwidth bound."""

import numpy as np
import pytest

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run

pytestmark = pytest.mark.gpu

FAST = ProtocolConfig(trials=2, warmup_s=0.1, min_trial_s=0.1)
SMALL = {"layers": "2", "d_model": "128", "heads": "4", "seq_len": "128", "vocab": "512"}


@pytest.mark.parametrize("exec_mode", ["eager", "cuda-graphs"])
def test_cuda_engine_tokens_are_uncached_greedy_tokens(exec_mode):
    import torch

    from gpubench.backends.base import StepConfig
    from gpubench.backends.torch_generate_step import TorchGenerateStep
    from gpubench.workloads import resolve_workload

    step = TorchGenerateStep(resolve_workload("gpt", SMALL),
                             StepConfig("generate", "fp32", 4, exec_mode=exec_mode),
                             torch.device("cuda", 0))
    engine = step.generation_engine(4, 64)
    assert engine.check["tokens_compared"] > 0
    assert engine.facts()["decode"] == ("static" if exec_mode == "cuda-graphs" else "dynamic")
    prompt = np.arange(9) % 512
    tokens = engine.prefill([2], [prompt]) + [t for _ in range(8) for t in engine.decode([2])]
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(9):
            seq.append(int(step.model(torch.tensor([seq], device="cuda"))[0, -1].argmax()))
    assert tokens == seq[len(prompt):]
    assert engine.last_call_s > 0


# every precision once, each exec mode twice (pytest -m gpu runs in gpu-check's budget)
@pytest.mark.parametrize("exec_mode, precision", [("eager", "fp32"), ("eager", "fp16"),
                                                  ("cuda-graphs", "bf16"),
                                                  ("cuda-graphs", "tf32")])
def test_generate_runs_within_its_bandwidth_bound(tmp_path, precision, exec_mode):
    outcome = execute_run(RunRequest(workload="gpt", backend="torch-cuda", mode="generate",
                                     precision=precision, exec=exec_mode, params=SMALL,
                                     batch_size=8, prompt_len=32, output_len=32,
                                     protocol=FAST, out_dir=tmp_path))
    assert outcome.status == "ok", outcome.error
    t = outcome.trials
    assert (t["tpot_p50_ms"] > 0).all() and (t["ttft_p50_ms"] > 0).all()
    bound = t["decode_bound_tokens_per_s"]
    if bound.notna().all():  # a GPU in peaks.py's table, or NVML's peak
        assert (t["output_tokens_per_s"] <= bound).all()
