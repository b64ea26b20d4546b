"""A causal decoder's forward pass over a static KV cache, on exactly the modules (and
weights) that backends/torch_model.py built from the description: the token embedding,
pre-norm residual blocks whose attention reads and writes the cache, and position-wise
modules (LayerNorm, the MLP residuals, the LM head), each run as functional calls on the
module's own parameter tensors.

The cache is one tensor per K and V, [layers, max_batch, heads, max_len, head_dim]: a
layer's slice is [slots, heads, positions, head_dim], the layout scaled_dot_product_
attention reads, so a decode step attends to a view of it without a copy.

Three passes:
- prefill(ids [n, L], slots): positions 0..L-1 of each slot, causal attention over the
  prompt itself, K and V written into the cache;
- decode(ids [n], pos [n], rows, span): one token a slot at its own position `pos`
  (written there), attending to positions 0..pos of its slot; `rows` selects the slots
  (a slice for a contiguous run, else indices) and `span` the positions read (the longest
  slot's, so a short batch reads no more of the cache than it holds);
- the same with every slot and the whole cache (static shapes: a compiled or captured
  decode step), a mask hiding each slot's positions past its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from gpubench.backends.torch_model import (
    MultiHeadSelfAttention, ResidualBlock, TiedLMHead, TokenEmbedding,
)


@dataclass(frozen=True)
class AttentionWeights:
    """One attention's parameters (the module's own tensors) and its heads."""
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    heads: int
    head_dim: int


class CachedDecoder:
    """The decoder's modules split into the embedding, then a list of stages: an
    attention residual (the layer index of its cache) or a position-wise module. Each
    stage runs as torch.nn.functional calls on the modules' own parameters (functional()),
    not through nn.Module.__call__: a decode step of a small model is mostly per-call
    overhead, and the hooks machinery of a module call is most of that."""

    def __init__(self, model: nn.Module) -> None:
        children = list(model.children())
        if not children or not isinstance(children[0], TokenEmbedding):
            raise ValueError("a cached decoder starts with a token embedding")
        self.embedding: TokenEmbedding = children[0]
        self.token_w = self.embedding.token.weight
        self.position_w = self.embedding.position.weight
        self.stages: List[Tuple[Optional[int], Callable, Optional[AttentionWeights]]] = []
        layers = 0
        for module in children[1:]:
            attention = _attention_of(module)
            if attention is None:
                self.stages.append((None, functional(module), None))
                continue
            if not attention.causal:
                raise ValueError("a KV cache decodes causal attention only")
            pre = functional(nn.Sequential(*list(module.body.children())[:-1]))  # its LayerNorm
            self.stages.append((layers, pre, AttentionWeights(
                attention.qkv.weight, attention.qkv.bias, attention.proj.weight,
                attention.proj.bias, attention.heads, attention.head_dim)))
            layers += 1
        self.layers = layers
        # the first stage after the last attention: from there on, one position suffices
        self.tail_start = 1 + max(i for i, (layer, _, _) in enumerate(self.stages)
                                  if layer is not None)
        first = next(a for _, _, a in self.stages if a is not None)
        self.heads, self.head_dim = first.heads, first.head_dim
        self.max_positions = int(self.position_w.shape[0])


def functional(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module as functional calls on its own parameters, where it is one of the
    description's position-wise layers (LayerNorm, Linear, exact GELU, a tied head, a
    sequence of them, a residual around them); the module itself otherwise."""
    if isinstance(module, nn.LayerNorm):
        shape, w, b, eps = module.normalized_shape, module.weight, module.bias, module.eps
        return lambda x: F.layer_norm(x, shape, w, b, eps)
    if isinstance(module, nn.Linear):
        w, b = module.weight, module.bias
        return lambda x: F.linear(x, w, b)
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return F.gelu
    if isinstance(module, TiedLMHead):
        w = module.borrowed_parameters()[0]
        return lambda x: F.linear(x, w)
    if isinstance(module, nn.Sequential):
        parts = [functional(m) for m in module]
        if len(parts) == 1:
            return parts[0]

        def chain(x: torch.Tensor) -> torch.Tensor:
            for part in parts:
                x = part(x)
            return x
        return chain
    if isinstance(module, ResidualBlock) and isinstance(module.shortcut, nn.Identity):
        body = functional(module.body)
        return lambda x: x + body(x)
    return module


def _attention_of(module: nn.Module) -> Optional[MultiHeadSelfAttention]:
    """The attention of a residual block `x + attention(pre(x))`, None for other modules."""
    if not isinstance(module, ResidualBlock) or not isinstance(module.shortcut, nn.Identity):
        return None
    body = list(module.body.children())
    return body[-1] if body and isinstance(body[-1], MultiHeadSelfAttention) else None


def _qkv(attention: AttentionWeights, h: torch.Tensor):
    n, length = h.shape[0], h.shape[1]
    qkv = F.linear(h, attention.qkv_w, attention.qkv_b)
    qkv = qkv.reshape(n, length, 3, attention.heads, attention.head_dim)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [n, H, L, dh]


def _merge(attention: AttentionWeights, y: torch.Tensor) -> torch.Tensor:
    n, length = y.shape[0], y.shape[2]
    y = y.transpose(1, 2).reshape(n, length, attention.heads * attention.head_dim)
    return F.linear(y, attention.proj_w, attention.proj_b)


def prefill(decoder: CachedDecoder, k_cache: torch.Tensor, v_cache: torch.Tensor,
            ids: torch.Tensor, rows: Any) -> torch.Tensor:
    """Prompts ids [n, L] into the cache rows `rows` at positions 0..L-1; returns the
    logits of each prompt's last position [n, vocab]."""
    length = int(ids.shape[1])

    def attend(layer: int, attention: AttentionWeights, h: torch.Tensor) -> torch.Tensor:
        q, k, v = _qkv(attention, h)
        k_cache[layer, rows, :, :length] = k
        v_cache[layer, rows, :, :length] = v
        return _merge(attention, F.scaled_dot_product_attention(q, k, v, is_causal=True))

    x = F.embedding(ids, decoder.token_w) + decoder.position_w[:length]
    return _through(decoder, x, attend, trim=True)


def decode(decoder: CachedDecoder, k_cache: torch.Tensor, v_cache: torch.Tensor,
           ids: torch.Tensor, pos: Any, slot_index: Any, rows: Any, span: int,
           mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One token a slot: ids [n] at positions `pos` of the slots `slot_index`, attending
    to the first `span` positions of each slot (`mask` [n, 1, 1, span] hides some; None:
    every slot sees all `span`). Returns logits [n, vocab].

    Either `pos` is one int shared by the slots and `rows` a slice of them (a static
    batch: the cache written and read through views), or `pos` [n] and `slot_index` [n]
    are index tensors and `rows` the slots to read (a slice or slot_index)."""
    shared = isinstance(pos, int)
    if shared:  # the new K and V written through a view: a slice of one position
        where = (rows, slice(None), slice(pos, pos + 1))
        position = decoder.position_w[pos]
    else:
        where = (slot_index, slice(None), pos)
        position = F.embedding(pos, decoder.position_w)
    x = (F.embedding(ids, decoder.token_w) + position).unsqueeze(1)  # [n, 1, d]
    k_layers, v_layers = k_cache.unbind(0), v_cache.unbind(0)

    def attend(layer: int, attention: AttentionWeights, h: torch.Tensor) -> torch.Tensor:
        q, k, v = _qkv(attention, h)
        k_layer, v_layer = k_layers[layer], v_layers[layer]
        k_layer[where] = k if shared else k[:, :, 0]
        v_layer[where] = v if shared else v[:, :, 0]
        keys, values = k_layer[rows, :, :span], v_layer[rows, :, :span]
        return _merge(attention, F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))

    return _through(decoder, x, attend, trim=False)


def _through(decoder: CachedDecoder, x: torch.Tensor, attend, trim: bool) -> torch.Tensor:
    """The stages on x [n, L, d] (`trim`: after the last attention only the last
    position goes on; the position-wise rest of it needs no other): logits [n, vocab]."""
    tail = decoder.tail_start if trim else -1
    for i, (layer, run, attention) in enumerate(decoder.stages):
        if i == tail:
            x = x[:, -1:]
        x = run(x) if attention is None else x + attend(layer, attention, run(x))
    return x[:, -1]


def visible_mask(pos: torch.Tensor, span: int) -> torch.Tensor:
    """[n, 1, 1, span]: position j of slot i is visible when j <= pos[i]."""
    return (torch.arange(span, device=pos.device).unsqueeze(0) <= pos.unsqueeze(1))[:, None, None]
