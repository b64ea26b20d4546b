"""Translation of a model description (gpubench.models) into a torch.nn.Module."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gpubench.models import (
    GELU, BatchNorm2d, Conv2d, Embedding, Flatten, GlobalAvgPool, Layer, LayerNorm, Linear,
    LMHead, MaxPool2d, ReLU, Residual, SelfAttention, TakeFirst,
)
from gpubench.models.init_weights import EMBEDDING_STD


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class TokenEmbedding(nn.Module):
    """Token ids [..., seq] -> token vectors plus learned position vectors [..., seq, d]."""

    def __init__(self, vocab: int, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(max_positions, d_model)
        for table in (self.token, self.position):  # GPT-2's and BERT's initializer range
            nn.init.normal_(table.weight, std=EMBEDDING_STD)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token(ids) + self.position.weight[:int(ids.shape[-1])]


class MultiHeadSelfAttention(nn.Module):
    """Fused QKV projection, heads split, torch's scaled_dot_product_attention (flash or
    memory-efficient kernels on a GPU where they apply), heads merged, output projection."""

    def __init__(self, d_model: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.causal = heads, d_model // heads, causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, S, 3d] -> [B, S, 3, H, dh] -> [3, B, H, S, dh]. Sizes are Python ints but
        # the batch (-1): the traced ONNX graph has a dynamic batch and static other dims,
        # with no shape arithmetic left to run (ORT's CUDA provider would put it on the CPU).
        seq = int(x.shape[-2])
        qkv = self.qkv(x).reshape(-1, seq, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if torch.onnx.is_in_onnx_export():
            y = _explicit_attention(q, k, v, self.causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # [B, H, S, dh]
        return self.proj(y.transpose(1, 2).reshape(-1, seq, self.heads * self.head_dim))


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) v, for the ONNX export only. The exporter's own
    translation of scaled_dot_product_attention (opset 17) is right in float32, but in an
    fp16 graph it returns float32 (its scale is a float32 constant), and ONNX Runtime
    refuses the mixed types that follow; this one keeps the graph's type throughout
    (MatMul, Mul, Where with a constant causal mask, Softmax, MatMul)."""
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
    if causal:
        n = int(scores.shape[-1])
        keep = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.matmul(scores.softmax(-1), v)


class TiedLMHead(nn.Module):
    """Logits through the token embedding's own matrix: one Parameter, shared. The
    embedding is held outside the module tree (a list), so parameters() and state_dict()
    hold the matrix once, under the embedding."""

    def __init__(self, embedding: TokenEmbedding) -> None:
        super().__init__()
        self._embedding: List[TokenEmbedding] = [embedding]

    def borrowed_parameters(self) -> List[nn.Parameter]:
        """Parameters this layer uses but another holds (FSDP2 must not shard them
        with the other layer alone: backends/torch_parallel.py)."""
        return [self._embedding[0].token.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._embedding[0].token.weight
        if not torch.onnx.is_in_onnx_export():
            return F.linear(x, weight)
        # The ONNX exporter writes a bias-free F.linear as MatMul on the transposed
        # matrix, which constant folding stores as a second copy of the weights beside the
        # embedding's. A 2-D one with a (zero) bias becomes Gemm(x, W, 0, transB=1) on the
        # embedding's own matrix. The positions are a static size (the workload fixes
        # seq), so the graph's output keeps static dims but for the batch.
        flat = F.linear(x.reshape(-1, int(x.shape[-1])), weight, weight.new_zeros(weight.shape[0]))
        return flat.reshape((-1,) + tuple(int(n) for n in x.shape[1:-1]) + (weight.shape[0],))


class TakeFirstPosition(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(-2, 0)


def _translate(layers: Sequence[Layer], shape: Tuple[int, ...],
               tie: List[Optional[TokenEmbedding]]) -> Tuple[nn.Sequential, Tuple[int, ...]]:
    """`tie` holds the last Embedding built, for a tied LMHead after it."""
    from gpubench.models.analysis import analyze

    modules = []
    for layer in layers:
        if isinstance(layer, Linear):
            modules.append(nn.Linear(shape[-1], layer.out_features, bias=layer.bias))
        elif isinstance(layer, Conv2d):
            modules.append(nn.Conv2d(shape[0], layer.out_channels, layer.kernel_size,
                                     stride=layer.stride, padding=layer.padding, bias=layer.bias))
        elif isinstance(layer, BatchNorm2d):
            modules.append(nn.BatchNorm2d(shape[0], eps=layer.eps, momentum=layer.momentum))
        elif isinstance(layer, ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, MaxPool2d):
            modules.append(nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, GlobalAvgPool):
            modules.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        elif isinstance(layer, Embedding):
            tie[0] = TokenEmbedding(layer.vocab, layer.d_model, layer.max_positions)
            modules.append(tie[0])
        elif isinstance(layer, LayerNorm):
            modules.append(nn.LayerNorm(shape[-1], eps=layer.eps))
        elif isinstance(layer, GELU):
            modules.append(nn.GELU())
        elif isinstance(layer, SelfAttention):
            analyze([layer], shape)  # d divisible by heads, a (seq, d) input
            modules.append(MultiHeadSelfAttention(shape[-1], layer.heads, layer.causal))
        elif isinstance(layer, LMHead):
            if not layer.tied:
                modules.append(nn.Linear(shape[-1], layer.vocab, bias=False))
            elif tie[0] is None:
                raise ValueError("a tied LMHead needs an Embedding before it")
            else:
                modules.append(TiedLMHead(tie[0]))
        elif isinstance(layer, TakeFirst):
            modules.append(TakeFirstPosition())
        elif isinstance(layer, Residual):
            body, _ = _translate(layer.body, shape, tie)
            shortcut = _translate(layer.shortcut, shape, tie)[0] if layer.shortcut else nn.Identity()
            modules.append(ResidualBlock(body, shortcut))
        else:
            raise TypeError(f"no torch translation for {layer!r}")
        shape = analyze([layer], shape).output_shape
    return nn.Sequential(*modules), shape


def build_module(layers: Sequence[Layer], input_shape: Tuple[int, ...]) -> nn.Module:
    """An nn.Module with exactly the description's architecture (weights from torch's
    default initialisation under the current seed)."""
    module, _ = _translate(layers, tuple(input_shape), [None])
    return module


def load_weights(module: torch.nn.Module, arrays) -> None:
    """Copies weights in the reference layout (models/init_weights.py) into the module:
    its state_dict holds them in the same order (BatchNorm's batch counter aside)."""
    names = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    if len(names) != len(arrays):
        raise ValueError(f"expected {len(names)} weight arrays, got {len(arrays)}")
    state = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in zip(names, arrays)}
    module.load_state_dict(state, strict=False)
