"""What --mode generate resolves before anything is built, without a framework: whether
the workload decodes (a causal decoder with an LM head: gpt), the prompt and output
lengths (fitted to its seq_len), whether the backend has a decode step; and the work of
the description a generated batch does (models/analysis.py's FLOP counting):

- prefill: the forward pass over the prompt, its LM head at the last position only (the
  only logits a generation reads);
- a decoded token: the forward pass of one position (analysis at seq 1) plus its
  attention to the positions before it, 4*d FLOPs (scores and weighted sum) and 5 a
  score per head for the softmax, per layer and position, averaged over the decode steps
  (a step k of output_len - 1 attends to prompt_len + k positions);
- the bytes a decoded token reads: the weights once a decode step, shared by the batch's
  tokens (the position table aside: one row a token), and its own K and V of every
  position it attends to, per layer; its new K and V written.
The bandwidth bound of decode is the device's peak memory bandwidth over those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from gpubench.errors import Unsupported, UserError
from gpubench.measure.generation.options import DEFAULT_OUTPUT_LEN, DEFAULT_PROMPT_LEN
from gpubench.models.analysis import SOFTMAX_FLOPS_PER_SCORE, analyze
from gpubench.models.layers import Embedding, Layer, LMHead, Residual, SelfAttention
from gpubench.models.memory import PRECISION_BYTES
from gpubench.workloads import Workload

GENERATE_MODE = "generate"


def _attentions(layers: Tuple[Layer, ...]) -> list:
    found = []
    for layer in layers:
        if isinstance(layer, SelfAttention):
            found.append(layer)
        elif isinstance(layer, Residual):
            found += _attentions(layer.body) + _attentions(layer.shortcut)
    return found


def is_decoder(workload: Workload) -> bool:
    """A token embedding, causal attention only, an LM head at the end: it decodes."""
    layers = workload.layers
    attentions = _attentions(layers)
    return (bool(layers) and isinstance(layers[0], Embedding) and isinstance(layers[-1], LMHead)
            and bool(attentions) and all(a.causal for a in attentions))


def generation_lengths(prompt_len: Optional[int], output_len: Optional[int],
                       seq_len: int, workload: str = "gpt") -> Tuple[int, int]:
    """(prompt_len, output_len): those given, the defaults fitted to `seq_len` for the
    rest (128 each, or half of seq_len each); UserError when they cannot fit."""
    if prompt_len is None and output_len is None:
        prompt_len = min(DEFAULT_PROMPT_LEN, max(1, seq_len // 2))
    if output_len is None:
        output_len = min(DEFAULT_OUTPUT_LEN, seq_len - prompt_len)
    if prompt_len is None:
        prompt_len = min(DEFAULT_PROMPT_LEN, seq_len - output_len)
    if prompt_len < 1 or output_len < 1 or prompt_len + output_len > seq_len:
        raise UserError(f"--prompt-len {prompt_len} + --output-len {output_len} tokens do not "
                        f"fit {workload}'s seq_len {seq_len} (positions of its model): give "
                        f"shorter lengths or --param seq_len=N")
    return prompt_len, output_len


def seq_len_of(workload: Workload) -> int:
    return int(workload.input_shape[0])


def check_generate_workload(workload: Workload) -> None:
    if not is_decoder(workload):
        raise UserError(f"--mode generate decodes tokens with a causal decoder; workload "
                        f"{workload.name} is not one (gpt is)")


def check_generate_backend(backend: Any, all_backends: Any) -> None:
    """A backend without a decode step (its modes lack generate), with the ones that
    have one."""
    if GENERATE_MODE in backend.modes:
        return
    having = [name for name, make in sorted(all_backends.items())
              if GENERATE_MODE in make().modes]
    raise Unsupported(f"backend {backend.name} has no decode step (no KV-cache generation "
                      f"engine): --mode generate runs on {', '.join(having) or 'none here'}")


def resolved_lengths(req: Any, workload: Workload) -> Tuple[int, int]:
    return generation_lengths(req.prompt_len, req.output_len, seq_len_of(workload),
                              workload.name)


@dataclass(frozen=True)
class GenerationWork:
    """The description's work for batches of `batch` requests of these lengths."""

    prefill_flops: int  # one batch's prefill
    decode_flops_per_token: float  # averaged over the decode steps
    decode_bytes_per_token: float  # weights (shared by the batch) and KV cache read
    kv_cache_bytes: int  # K and V for batch x (prompt + output) positions

    def bound_tokens_per_s(self, peak_bw_gbs: Optional[float]) -> Optional[float]:
        if not peak_bw_gbs:
            return None
        return peak_bw_gbs * 1e9 / self.decode_bytes_per_token


def generation_work(workload: Workload, precision: str, batch: int, prompt_len: int,
                    output_len: int) -> GenerationWork:
    layers = workload.layers
    embedding, head = layers[0], layers[-1]
    d, vocab = embedding.d_model, head.vocab
    attentions = _attentions(layers)
    n_layers, heads = len(attentions), sum(a.heads for a in attentions) / max(1, len(attentions))
    body = analyze(layers[:-1], (prompt_len,))
    prefill = batch * (body.forward_flops_per_sample + 2 * d * vocab)
    one = analyze(layers, (1,))  # one position attending to itself
    steps = max(0, output_len - 1)
    mean_context = prompt_len + (steps + 1) / 2 if steps else prompt_len + 1
    per_position = 4 * d + SOFTMAX_FLOPS_PER_SCORE * heads
    decode_flops = one.forward_flops_per_sample + n_layers * per_position * (mean_context - 1)
    dtype_bytes = PRECISION_BYTES[precision]
    weights = (one.param_count - embedding.max_positions * d) * dtype_bytes
    kv_read = 2 * n_layers * d * mean_context * dtype_bytes  # K and V, every position seen
    kv_cache = 2 * n_layers * batch * (prompt_len + output_len) * d * dtype_bytes
    return GenerationWork(prefill, decode_flops, weights / batch + kv_read, kv_cache)
