"""The torch generation engine on a tiny gpt (torch-cpu, one thread): its cached greedy
tokens are the uncached model's, and the check before timing catches a broken cache."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpubench.backends.base import StepConfig  # noqa: E402
from gpubench.backends.torch_generate import TorchGenerationEngine  # noqa: E402
from gpubench.backends.torch_generate_check import GenerationMismatch, check_generation  # noqa: E402
from gpubench.backends.torch_generate_step import TorchGenerateStep  # noqa: E402
from gpubench.workloads import resolve_workload  # noqa: E402

TINY = {"layers": "2", "d_model": "32", "heads": "2", "seq_len": "32", "vocab": "64"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_step(precision="fp32", exec_mode=None, seed=0):
    workload = resolve_workload("gpt", TINY)
    return TorchGenerateStep(workload, StepConfig("generate", precision, 4, seed=seed,
                                                  exec_mode=exec_mode), torch.device("cpu"))


def uncached_greedy(model, prompt, n):
    """Greedy decoding by the full-sequence forward pass each token, no cache."""
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            logits = model(torch.tensor([seq]))[0, -1]
            seq.append(int(logits.argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_tokens_are_uncached_greedy_tokens(precision):
    step = tiny_step(precision)
    engine = step.generation_engine(3, 32)
    assert engine.check["tokens_compared"] > 0
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, 64, size=n) for n in (5, 9, 5)]  # two lengths, one batch
    out = [[t] for t in engine.prefill([0, 1, 2], prompts)]
    for _ in range(12):
        for seq, token in zip(out, engine.decode([0, 1, 2])):
            seq.append(token)
    for prompt, tokens in zip(prompts, out):
        assert tokens == uncached_greedy(step.model, prompt, 13)


def test_slots_join_and_leave_at_their_own_positions():
    step = tiny_step()
    engine = step.generation_engine(4, 32)
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 64, size=7), rng.integers(0, 64, size=3)
    got_a = engine.prefill([2], [a])
    for _ in range(4):
        got_a += engine.decode([2])
    got_b = engine.prefill([0], [b])  # joins the running batch at another position
    for _ in range(5):
        ta, tb = engine.decode([2, 0])
        got_a.append(ta)
        got_b.append(tb)
    engine.free(2)
    got_b += engine.decode([0])
    assert got_a == uncached_greedy(step.model, a, 10)
    assert got_b == uncached_greedy(step.model, b, 7)
    with pytest.raises(ValueError, match="holds no request"):
        engine.decode([2])


class CorruptCache(TorchGenerationEngine):
    """A cache bug: the prefill writes K at the wrong positions (shifted by one)."""

    def prefill(self, slots, prompts):
        out = super().prefill(slots, prompts)
        with torch.inference_mode():
            self.k_cache.copy_(self.k_cache.roll(1, dims=3))
        return out


def test_check_catches_a_broken_cache():
    step = tiny_step()
    good = TorchGenerationEngine(step.model, 4, 32, torch.device("cpu"))
    assert check_generation(good, step.model, 64, 1e-4)["ties"] == 0
    broken = CorruptCache(step.model, 4, 32, torch.device("cpu"))
    with pytest.raises(GenerationMismatch, match="cached decoding differs from the uncached"):
        check_generation(broken, step.model, 64, 1e-4)


def test_engine_facts_and_cache_bytes():
    engine = tiny_step().generation_engine(4, 16)
    facts = engine.facts()
    # K and V: layers 2 x slots 4 x heads 2 x 16 positions x head_dim 16, float32
    assert facts["kv_cache_bytes"] == 2 * 2 * 4 * 2 * 16 * 16 * 4
    assert facts["decode"] == "dynamic" and facts["check"]["tokens_compared"] > 0


def test_static_decode_masks_every_slot_to_its_own_positions():
    """The fixed-shape decode that compile and CUDA graphs run (all slots, the whole
    cache, a mask), uncompiled: the same tokens, also for slots left out of a step."""
    step = tiny_step()
    engine = TorchGenerationEngine(step.model, 4, 32, torch.device("cpu"), static=True)
    assert check_generation(engine, step.model, 64, 1e-4)["tokens_compared"] > 0
    assert engine.facts()["decode"] == "static"


def test_compiled_decode_gives_the_uncached_tokens():
    """torch.compile of the static decode step (about 20 s on a small CPU)."""
    step = tiny_step(exec_mode="compile")
    engine = step.generation_engine(2, 16)
    assert engine.facts()["decode"] == "static" and engine.compile_s > 0
    assert engine.check["tokens_compared"] > 0
    prompt = np.arange(5) % 64
    tokens = engine.prefill([1], [prompt]) + [t for _ in range(6) for t in engine.decode([1])]
    assert tokens == uncached_greedy(step.model, prompt, 7)
