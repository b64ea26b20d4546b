"""Cached decoding checked against the uncached model before anything is timed: the
engine's greedy tokens must be the argmax of the full-sequence forward pass (the
description's own module, no cache) on the same weights, at every generated position.

The uncached pass reads the sequence the engine produced (teacher forcing): its logits
at position t depend on positions 0..t only (causal attention), so where every token is
the argmax of the uncached logits of its prefix, uncached greedy decoding from the same
prompt produces exactly these tokens. A token that differs is still accepted as a tie
where the uncached logits of the two are equal to rounding (TIE_REL of the largest logit
at the precision): random weights put near-equal logits side by side, and two exact
computations in different orders may pick either; each such tie is counted.

Two rounds: a static batch (every slot, one prompt length: the throughput loop's path)
and a ragged one (prompts of different lengths, decoded in a shuffled order of slots,
some left out: the per-slot positions and masks continuous batching uses). Both end near
max_len, where a cache's indexing goes wrong first.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from gpubench.measure.generation.engine import GenerationEngine

CHECK_DECODE_STEPS = 8  # decode steps a round
# logits equal to rounding, relative to the largest, per weight dtype
TIE_REL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
TF32_TIE_REL = 5e-3


class GenerationMismatch(RuntimeError):
    """Cached greedy decoding produced a token the uncached model does not."""


def _round(engine: GenerationEngine, prompts: Dict[int, np.ndarray],
           order: Sequence[int], steps: int) -> Dict[int, List[int]]:
    slots = sorted(prompts)
    firsts = engine.prefill(slots, [prompts[s] for s in slots])
    out = {s: [t] for s, t in zip(slots, firsts)}
    for i in range(steps):
        active = [s for s in order if len(prompts[s]) + len(out[s]) < engine.max_len]
        if i % 3 == 2 and len(active) > 1:
            active = active[1:]  # one slot sits this step out
        if not active:
            break
        for s, t in zip(active, engine.decode(active)):
            out[s].append(t)
    for s in slots:
        engine.free(s)
    return out


def _prompts(lengths: Dict[int, int], vocab: int, rng: np.random.Generator) -> Dict[int, np.ndarray]:
    return {s: rng.integers(0, vocab, size=n, dtype=np.int64) for s, n in lengths.items()}


def check_generation(engine: GenerationEngine, model: torch.nn.Module, vocab: int,
                     tie_rel: float, seed: int = 0) -> Dict[str, Any]:
    """Runs both rounds through `engine` (all slots free) and compares every token with
    the uncached model's. Raises GenerationMismatch with the first difference; returns
    run.json's record of the check."""
    rng = np.random.default_rng(seed)
    n, max_len = engine.max_batch, engine.max_len
    steps = min(CHECK_DECODE_STEPS, max_len - 2)
    longest = max_len - steps - 1  # the last token written lands at max_len - 1
    rounds = [
        ("static batch", _prompts({s: longest for s in range(n)}, vocab, rng), list(range(n))),
        ("ragged", _prompts({s: max(1, longest - 3 * s) for s in range(n)}, vocab, rng),
         list(rng.permutation(n)) if n > 1 else [0]),
    ]
    compared = ties = 0
    for name, prompts, order in rounds:
        outputs = _round(engine, prompts, [int(s) for s in order], steps)
        for slot, tokens in outputs.items():
            c, t = _compare(model, prompts[slot], tokens, tie_rel, f"{name} round, slot {slot}")
            compared, ties = compared + c, ties + t
    return {"tokens_compared": compared, "ties": ties, "tie_rel": tie_rel,
            "against": "the argmax of the uncached full-sequence forward pass"}


def _compare(model: torch.nn.Module, prompt: np.ndarray, tokens: List[int], tie_rel: float,
             where: str):
    device = next(model.parameters()).device
    sequence = np.concatenate([prompt, np.asarray(tokens[:-1], dtype=np.int64)])
    with torch.inference_mode():
        logits = model(torch.from_numpy(sequence)[None].to(device))[0].float()
    logits = logits[len(prompt) - 1:]  # the positions each generated token came from
    best = logits.argmax(-1).tolist()
    ties = 0
    for i, (cached, uncached) in enumerate(zip(tokens, best)):
        if cached == uncached:
            continue
        row = logits[i]
        gap = float(row[uncached] - row[cached])
        if gap <= tie_rel * float(row.abs().max()):
            ties += 1
            continue
        raise GenerationMismatch(
            f"cached decoding differs from the uncached model ({where}, output token {i}, "
            f"prompt of {len(prompt)}): cached {cached}, uncached argmax {uncached} "
            f"(logit gap {gap:.3g})")
    return len(tokens), ties
