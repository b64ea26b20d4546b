"""benchmarks/generate_decode.py's hand-written decode loop is the same computation as
gpubench's engine (its ratio compares like with like): both decode the same tokens from
the same weights and prompts. No timing is judged here."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import generate_decode as gd  # noqa: E402

from gpubench.backends.base import StepConfig  # noqa: E402
from gpubench.backends.torch_generate_step import TorchGenerateStep  # noqa: E402
from gpubench.workloads import resolve_workload  # noqa: E402


def test_hand_loop_and_engine_decode_the_same_tokens():
    torch.set_num_threads(1)
    tiny = {"layers": "2", "d_model": "32", "heads": "2", "seq_len": "32", "vocab": "64"}
    step = TorchGenerateStep(resolve_workload("gpt", tiny), StepConfig("generate", "fp32", 3),
                             torch.device("cpu"))
    engine = step.generation_engine(3, 24)
    hand = gd.HandDecoder(step.model, 3, 24)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, 64, size=8) for _ in range(3)]
    rate_e, tokens_e = gd.engine_round(engine, prompts, 15, 1e-9)
    rate_h, tokens_h = gd.hand_round(hand, torch.from_numpy(np.stack(prompts)), 15, 1e-9)
    assert tokens_e == tokens_h and len(tokens_e[0]) == 16
    assert rate_e > 0 and rate_h > 0
