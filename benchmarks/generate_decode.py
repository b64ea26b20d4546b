#!/usr/bin/env python3
"""Decode tokens/s of gpubench's generation engine against a hand-written decode loop
over the same weights and the same static KV cache layout ([layers, batch, heads,
max_len, head_dim], a step writing its position and attending to the positions before
it), interleaved round by round in one process (one thread) so that machine noise hits
both alike. Both time only their decode steps, on the host's clock, around the whole
loop: the harness's bookkeeping (slot positions, tokens back on the host every step) is
inside gpubench's figure. Prints the ratio gpubench / hand-written of the median rates
(target >= 0.95), checks that both decoded the same tokens, and then runs
`gpubench run --mode generate` once on the same configuration to set the row's
output_tokens_per_s (decode's device seconds: here the host's after each step) beside them.

    .venv/bin/python benchmarks/generate_decode.py [--rounds 5] [--round-s 0.5]
        [--batch 4] [--prompt-len 16] [--output-len 48] [--json]

Default: gpt tiny (layers=2, d_model=64, heads=4, seq_len=64, vocab=1024) on torch-cpu.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from gpubench.backends.base import StepConfig  # noqa: E402
from gpubench.backends.torch_generate_step import TorchGenerateStep  # noqa: E402
from gpubench.workloads import resolve_workload  # noqa: E402

TINY_GPT = {"layers": "2", "d_model": "64", "heads": "4", "seq_len": "64", "vocab": "1024"}


class HandDecoder:
    """GPT-2's decode written out: the weights taken from the gpubench model's modules
    (so both decode the same tokens), the cache a plain tensor per K and V."""

    def __init__(self, model: torch.nn.Module, batch: int, max_len: int) -> None:
        mods = list(model.children())
        self.tok, self.pos = mods[0].token.weight, mods[0].position.weight
        self.blocks = []
        for attn_block, mlp_block in zip(mods[1:-2:2], mods[2:-2:2]):
            ln1, attn = attn_block.body[0], attn_block.body[1]
            ln2, fc, _, out = mlp_block.body
            self.blocks.append((ln1, attn.qkv, attn.proj, ln2, fc, out))
        self.ln_f = mods[-2]
        self.heads = mods[1].body[1].heads
        d = self.tok.shape[1]
        self.hd = d // self.heads
        shape = (len(self.blocks), batch, self.heads, max_len, self.hd)
        self.k, self.v = torch.zeros(shape), torch.zeros(shape)

    def forward(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """ids [B, L] at positions start..start+L-1; returns the last position's logits."""
        b, length = ids.shape
        x = self.tok[ids] + self.pos[start:start + length]
        end = start + length
        for i, (ln1, qkv, proj, ln2, fc, out) in enumerate(self.blocks):
            q, k, v = qkv(ln1(x)).reshape(b, length, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
            self.k[i, :, :, start:end] = k
            self.v[i, :, :, start:end] = v
            y = F.scaled_dot_product_attention(q, self.k[i, :, :, :end], self.v[i, :, :, :end],
                                               is_causal=length > 1)
            x = x + proj(y.transpose(1, 2).reshape(b, length, -1))
            x = x + out(F.gelu(fc(ln2(x))))
        return F.linear(self.ln_f(x[:, -1]), self.tok)


def hand_round(hand: HandDecoder, prompts: torch.Tensor, steps: int,
               budget_s: float) -> Tuple[float, List[List[int]]]:
    """Decode tokens/s over generations until `budget_s` of decode has passed."""
    spent, tokens_done = 0.0, 0
    with torch.no_grad():
        while spent < budget_s:
            tok = hand.forward(prompts, 0).argmax(-1)
            out = [tok]
            pos = prompts.shape[1]
            t0 = time.perf_counter()
            for _ in range(steps):
                tok = hand.forward(tok[:, None], pos).argmax(-1)
                out.append(tok)
                pos += 1
            spent += time.perf_counter() - t0
            tokens_done += steps * prompts.shape[0]
    return tokens_done / spent, torch.stack(out, 1).tolist()


def engine_round(engine, prompts: List[np.ndarray], steps: int,
                 budget_s: float) -> Tuple[float, List[List[int]]]:
    slots = list(range(len(prompts)))
    spent, tokens_done = 0.0, 0
    while spent < budget_s:
        out = [[t] for t in engine.prefill(slots, prompts)]
        t0 = time.perf_counter()
        for _ in range(steps):
            for seq, t in zip(out, engine.decode(slots)):
                seq.append(t)
        spent += time.perf_counter() - t0
        tokens_done += steps * len(slots)
        for s in slots:
            engine.free(s)
    return tokens_done / spent, out


def gpubench_row_rate(args: argparse.Namespace) -> Dict[str, float]:
    from gpubench.measure.protocol import ProtocolConfig
    from gpubench.measure.runner import RunRequest, execute_run

    with tempfile.TemporaryDirectory() as tmp:
        outcome = execute_run(RunRequest(
            workload="gpt", backend="torch-cpu", mode="generate", params=TINY_GPT,
            batch_size=args.batch, prompt_len=args.prompt_len, output_len=args.output_len,
            threads=1, telemetry="none", out_dir=Path(tmp),
            protocol=ProtocolConfig(trials=3, warmup_s=0.5, min_trial_s=args.round_s)))
        assert outcome.status == "ok", outcome.error
        t = outcome.trials
        return {"output_tokens_per_s": float(t["output_tokens_per_s"].median()),
                "tpot_p50_ms": float(t["tpot_p50_ms"].median())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-s", type=float, default=0.5, help="decode seconds a side a round")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--output-len", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    max_len = args.prompt_len + args.output_len
    step = TorchGenerateStep(resolve_workload("gpt", TINY_GPT),
                             StepConfig("generate", "fp32", args.batch, threads=1),
                             torch.device("cpu"))
    engine = step.generation_engine(args.batch, max_len)
    hand = HandDecoder(step.model, args.batch, max_len)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, int(TINY_GPT["vocab"]), size=args.prompt_len) for _ in range(args.batch)]
    prompt_tensor = torch.from_numpy(np.stack(prompts))
    steps = args.output_len - 1
    engine_round(engine, prompts, steps, 0.3)  # warm-up, both
    hand_round(hand, prompt_tensor, steps, 0.3)
    rates: Dict[str, List[float]] = {"gpubench": [], "hand": []}
    same_tokens = True
    for r in range(args.rounds):  # alternate who goes first
        order = ("gpubench", "hand") if r % 2 == 0 else ("hand", "gpubench")
        for who in order:
            if who == "gpubench":
                rate, tokens_engine = engine_round(engine, prompts, steps, args.round_s)
            else:
                rate, tokens_hand = hand_round(hand, prompt_tensor, steps, args.round_s)
            rates[who].append(rate)
        same_tokens &= tokens_engine == tokens_hand
    median = {k: statistics.median(v) for k, v in rates.items()}
    ratios = [g / h for g, h in zip(rates["gpubench"], rates["hand"])]
    row = gpubench_row_rate(args)
    result = {"config": {**TINY_GPT, "batch": args.batch, "prompt_len": args.prompt_len,
                         "output_len": args.output_len, "threads": 1, "rounds": args.rounds},
              "gpubench_decode_tokens_per_s": median["gpubench"],
              "hand_decode_tokens_per_s": median["hand"],
              "ratio": median["gpubench"] / median["hand"],
              "ratio_per_round": [round(x, 3) for x in ratios],
              "same_tokens": same_tokens, "gpubench_run_row": row,
              "row_over_hand": row["output_tokens_per_s"] / median["hand"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"decode tokens/s: gpubench engine {median['gpubench']:,.0f}, hand-written "
              f"{median['hand']:,.0f}: ratio {result['ratio']:.3f} (target >= 0.95; per round "
              f"{result['ratio_per_round']}); same tokens: {same_tokens}")
        print(f"gpubench run --mode generate: output_tokens_per_s {row['output_tokens_per_s']:,.0f} "
              f"(TPOT p50 {row['tpot_p50_ms']:.3f} ms): {result['row_over_hand']:.3f} x hand-written")
    ok = same_tokens and math.isfinite(result["ratio"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
