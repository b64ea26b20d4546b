"""A causal decoder's forward pass over a static KV cache, on exactly the modules (and
weights) that backends/torch_model.py built from the description: the token embedding,
pre-norm residual blocks whose attention reads and writes the cache, and position-wise
modules (LayerNorm, the MLP residuals, the LM head) applied as they are.

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

from typing import Any, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from gpubench.backends.torch_model import MultiHeadSelfAttention, ResidualBlock, TokenEmbedding


class CachedDecoder:
    """The decoder's modules split into the embedding, then a list of stages: an
    attention residual (the layer index of its cache) or a position-wise module."""

    def __init__(self, model: nn.Module) -> None:
        children = list(model.children())
        if not children or not isinstance(children[0], TokenEmbedding):
            raise ValueError("a cached decoder starts with a token embedding")
        self.embedding: TokenEmbedding = children[0]
        self.stages: List[Tuple[Optional[int], nn.Module, Any]] = []
        layers = 0
        for module in children[1:]:
            attention = _attention_of(module)
            if attention is None:
                self.stages.append((None, module, None))
                continue
            if not attention.causal:
                raise ValueError("a KV cache decodes causal attention only")
            pre = list(module.body.children())[:-1]  # the LayerNorm before the attention
            self.stages.append((layers, nn.Sequential(*pre), attention))
            layers += 1
        self.layers = layers
        # the first stage after the last attention: from there on, one position suffices
        self.tail_start = 1 + max(i for i, (layer, _, _) in enumerate(self.stages)
                                  if layer is not None)
        first = next(a for _, _, a in self.stages if a is not None)
        self.heads, self.head_dim = first.heads, first.head_dim
        self.max_positions = int(self.embedding.position.weight.shape[0])


def _attention_of(module: nn.Module) -> Optional[MultiHeadSelfAttention]:
    """The attention of a residual block `x + attention(pre(x))`, None for other modules."""
    if not isinstance(module, ResidualBlock) or not isinstance(module.shortcut, nn.Identity):
        return None
    body = list(module.body.children())
    return body[-1] if body and isinstance(body[-1], MultiHeadSelfAttention) else None


def _qkv(attention: MultiHeadSelfAttention, h: torch.Tensor):
    n, length = h.shape[0], h.shape[1]
    qkv = attention.qkv(h).reshape(n, length, 3, attention.heads, attention.head_dim)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [n, H, L, dh]


def _merge(attention: MultiHeadSelfAttention, y: torch.Tensor) -> torch.Tensor:
    n, length = y.shape[0], y.shape[2]
    return attention.proj(y.transpose(1, 2).reshape(n, length, attention.heads * attention.head_dim))


def prefill(decoder: CachedDecoder, k_cache: torch.Tensor, v_cache: torch.Tensor,
            ids: torch.Tensor, rows: Any) -> torch.Tensor:
    """Prompts ids [n, L] into the cache rows `rows` at positions 0..L-1; returns the
    logits of each prompt's last position [n, vocab]."""
    length = int(ids.shape[1])

    def attend(layer: int, attention: MultiHeadSelfAttention, h: torch.Tensor) -> torch.Tensor:
        q, k, v = _qkv(attention, h)
        k_cache[layer, rows, :, :length] = k
        v_cache[layer, rows, :, :length] = v
        return _merge(attention, F.scaled_dot_product_attention(q, k, v, is_causal=True))

    return _through(decoder, decoder.embedding(ids), attend)


def decode(decoder: CachedDecoder, k_cache: torch.Tensor, v_cache: torch.Tensor,
           ids: torch.Tensor, pos: Any, slot_index: Any, rows: Any, span: int,
           mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One token a slot: ids [n] at positions `pos` of the slots `slot_index`, attending
    to the first `span` positions of each slot (`mask` [n, 1, 1, span] hides some; None:
    every slot sees all `span`). Returns logits [n, vocab].

    Either `pos` is one int shared by the slots and `rows` a slice of them (a static
    batch: the cache written and read through views), or `pos` [n] and `slot_index` [n]
    are index tensors and `rows` the slots to read (a slice or slot_index)."""
    emb = decoder.embedding
    shared = isinstance(pos, int)
    where = (rows, slice(None), pos) if shared else (slot_index, slice(None), pos)
    position = emb.position.weight[pos] if shared else emb.position(pos)
    x = (emb.token(ids) + position).unsqueeze(1)  # [n, 1, d]

    def attend(layer: int, attention: MultiHeadSelfAttention, h: torch.Tensor) -> torch.Tensor:
        q, k, v = _qkv(attention, h)
        k_layer, v_layer = k_cache[layer], v_cache[layer]
        k_layer[where] = k[:, :, 0]
        v_layer[where] = v[:, :, 0]
        keys, values = k_layer[rows, :, :span], v_layer[rows, :, :span]
        return _merge(attention, F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))

    return _through(decoder, x, attend)


def _through(decoder: CachedDecoder, x: torch.Tensor, attend) -> torch.Tensor:
    """The stages on x [n, L, d]; after the last attention only the last position goes
    on (the position-wise rest of it needs no other): logits [n, vocab]."""
    for i, (layer, module, attention) in enumerate(decoder.stages):
        if i == decoder.tail_start:
            x = x[:, -1:]
        x = module(x) if attention is None else x + attend(layer, attention, module(x))
    return x[:, -1]


def visible_mask(pos: torch.Tensor, span: int) -> torch.Tensor:
    """[n, 1, 1, span]: position j of slot i is visible when j <= pos[i]."""
    return (torch.arange(span, device=pos.device).unsqueeze(0) <= pos.unsqueeze(1))[:, None, None]
