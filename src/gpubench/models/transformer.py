"""The pre-norm transformer block as layer records (GPT-2's arrangement; gpt and bert
both use it): attention and MLP sublayers, each behind a LayerNorm inside a residual."""

from __future__ import annotations

from typing import Tuple

from gpubench.models.layers import GELU, Layer, LayerNorm, Linear, Residual, SelfAttention

MLP_RATIO = 4  # the MLP's hidden width over d_model, as GPT-2 and BERT


def pre_norm_block(d_model: int, heads: int, causal: bool) -> Tuple[Layer, ...]:
    """x + attn(LN(x)), then x + mlp(LN(x)) with mlp = Linear(4d), GELU, Linear(d)."""
    return (
        Residual((LayerNorm(), SelfAttention(heads, causal))),
        Residual((LayerNorm(), Linear(MLP_RATIO * d_model), GELU(), Linear(d_model))),
    )


def pre_norm_stack(n_layer: int, d_model: int, heads: int, causal: bool) -> Tuple[Layer, ...]:
    """`n_layer` blocks and the final LayerNorm that pre-norm models put before the head."""
    return pre_norm_block(d_model, heads, causal) * n_layer + (LayerNorm(),)
