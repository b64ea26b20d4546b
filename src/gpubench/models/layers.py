"""Layer records. Immutable, hashable and framework-free: a model is a tuple of these.

Input sizes are not stored: they follow from the workload's input shape, so one record
(`Linear(128)`) means the same thing whatever feeds it. Image tensors are logically
(C, H, W); a backend may lay them out channels-last, but the description does not.
Token models take (seq,) int token ids; after their Embedding a sample is (seq, d_model).
Linear, LayerNorm and LMHead act on the last dimension of any shape.

A transformer's pre-norm block is two residuals,
`Residual((LayerNorm(), SelfAttention(h, causal)))` and
`Residual((LayerNorm(), Linear(4 * d), GELU(), Linear(d)))`, and a final LayerNorm comes
before the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union


@dataclass(frozen=True)
class Linear:
    """A dense layer over the last dimension: (..., in) -> (..., out_features)."""

    out_features: int
    bias: bool = True


@dataclass(frozen=True)
class Conv2d:
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    bias: bool = True


@dataclass(frozen=True)
class BatchNorm2d:
    eps: float = 1e-5
    momentum: float = 0.1  # PyTorch's convention: weight of the new batch statistic


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class MaxPool2d:
    kernel_size: int
    stride: int
    padding: int = 0


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over H and W: (C, H, W) -> (C,)."""


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C*H*W,), in C, H, W order."""


@dataclass(frozen=True)
class Residual:
    """out = body(x) + shortcut(x); an empty shortcut is the identity.
    The activation after the addition is a separate ReLU record that follows."""

    body: Tuple["Layer", ...]
    shortcut: Tuple["Layer", ...] = ()


@dataclass(frozen=True)
class Embedding:
    """Token embedding plus a learned position embedding: (seq,) int token ids ->
    (seq, d_model), row t = token[ids[t]] + position[t]; seq <= max_positions."""

    vocab: int
    d_model: int
    max_positions: int


@dataclass(frozen=True)
class LayerNorm:
    """Normalisation over the last dimension, with a weight (1) and a bias (0)."""

    eps: float = 1e-5


@dataclass(frozen=True)
class GELU:
    """The exact (erf) GELU: torch's default, Keras' gelu(approximate=False)."""


@dataclass(frozen=True)
class SelfAttention:
    """Multi-head self-attention on (seq, d): one fused QKV Linear d -> 3d (with bias),
    scaled dot-product attention per head (causal: a position sees itself and earlier
    ones only), and an output Linear d -> d (with bias). d must divide by heads."""

    heads: int
    causal: bool


@dataclass(frozen=True)
class LMHead:
    """Logits over the vocabulary at every position: (..., d) -> (..., vocab), no bias.
    Tied: multiplies by the (last preceding) Embedding's token matrix and has no
    parameters of its own; untied: its own d x vocab matrix."""

    vocab: int
    tied: bool = True


@dataclass(frozen=True)
class TakeFirst:
    """(seq, d) -> (d,): the first position's vector (BERT's [CLS] pooling)."""


Layer = Union[Linear, Conv2d, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten, Residual,
              Embedding, LayerNorm, GELU, SelfAttention, LMHead, TakeFirst]
