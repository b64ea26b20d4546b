"""Shapes, parameter counts, FLOPs and bytes derived from a model description.

Counting conventions (one multiply-add = 2 FLOPs):
- Linear:  2*in*out (+ out for the bias), applied to the last dimension: times the
  product of the other dimensions (the positions of a token model)
- Conv2d:  2*C_in*k*k*C_out*H_out*W_out (+ C_out*H_out*W_out for the bias)
- BatchNorm2d (inference form, scale and shift): 2*C*H*W
- ReLU: one per element; MaxPool2d: k*k per output element; GlobalAvgPool: one per
  input element; residual addition: one per output element.
- Embedding: the lookup is no arithmetic; adding the position embedding is one per output
  element. LayerNorm: 7 per element (mean 1, subtract 1, square and sum 2, scale by the
  inverse deviation 1, weight and bias 2). GELU (erf form, x/2 * (1 + erf(x/sqrt 2))):
  5 per element, erf counted as one.
- SelfAttention on (seq, d) with h heads: the QKV (d -> 3d) and output (d -> d)
  projections as Linears at every position, the scores Q K^T 2*seq*seq*d and the
  weighted sum of V 2*seq*seq*d (summed over the heads), and 5 per score (h*seq*seq of
  them: scale, subtract the max, exp, sum, divide) for the softmax. Causal attention is
  counted in full, as PaLM's MFU appendix does (a kernel that skips the masked half does
  less work than counted: its MFU reads higher).
- LMHead: 2*d*vocab per position (no bias), tied or not: a tied head has no parameters
  of its own but its matmul is real work. TakeFirst: none.

So a transformer's forward pass per token is ~ 2N + 4*n_layer*seq*d_model (training
6N + 12*n_layer*seq*d_model, Kaplan et al. 2020, PaLM appendix B), N = every matrix
a token is multiplied by: the non-embedding parameters plus, for a tied head, the
d x vocab token matrix it reuses; FLOPs per sample = per token x seq. The counts here
differ from that only by the biases, the element-wise terms above, and a head applied
to one position (bert's classifier after TakeFirst) counted once per sample rather than
per token: under 1% at GPT-2 and BERT shapes (tests/test_transformers.py).
Training is counted as 3x the forward pass (forward + two backward matmuls), the usual
convention for MFU.

Bytes are an analytic lower bound of DRAM traffic per sample: every layer reads its
input and writes its output once (activations), plus the parameters once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

from gpubench.models.layers import (
    GELU,
    BatchNorm2d,
    Conv2d,
    Embedding,
    Flatten,
    GlobalAvgPool,
    Layer,
    LayerNorm,
    Linear,
    LMHead,
    MaxPool2d,
    ReLU,
    Residual,
    SelfAttention,
    TakeFirst,
)

Shape = Tuple[int, ...]
TRAIN_FLOPS_FACTOR = 3
LAYERNORM_FLOPS_PER_ELEM = 7
GELU_FLOPS_PER_ELEM = 5
SOFTMAX_FLOPS_PER_SCORE = 5


@dataclass(frozen=True)
class ModelStats:
    output_shape: Shape
    param_count: int
    forward_flops_per_sample: int
    activation_elems_per_sample: int  # elements read + written by all layers, per sample

    def flops_per_sample(self, mode: str) -> int:
        return self.forward_flops_per_sample * (TRAIN_FLOPS_FACTOR if mode == "train" else 1)

    def bytes_per_step(self, batch_size: int, mode: str, dtype_bytes: int = 4) -> int:
        """Analytic lower bound of memory traffic for one step of `batch_size` samples.
        Training reads activations again in the backward pass and reads/writes the
        parameters, their gradients and optimizer state: counted as 3x activations and
        4x parameters, a coarse but stated model."""
        act = self.activation_elems_per_sample * batch_size
        if mode == "train":
            return dtype_bytes * (3 * act + 4 * self.param_count)
        return dtype_bytes * (act + self.param_count)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"input of size {size} is too small for kernel {kernel}, stride {stride}")
    return out


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _layer(layer: Layer, shape: Shape) -> Tuple[Shape, int, int, int]:
    """Returns (output shape, params, forward FLOPs, activation elements) per sample."""
    if isinstance(layer, Linear):
        if len(shape) < 1:
            raise ValueError(f"Linear needs an input with a last dimension, got shape {shape}")
        n_in, rows = shape[-1], _numel(shape[:-1])
        params = n_in * layer.out_features + (layer.out_features if layer.bias else 0)
        flops = rows * (2 * n_in * layer.out_features + (layer.out_features if layer.bias else 0))
        out = shape[:-1] + (layer.out_features,)
    elif isinstance(layer, Conv2d):
        if len(shape) != 3:
            raise ValueError(f"Conv2d needs a (C, H, W) input, got shape {shape}")
        c, h, w = shape
        k = layer.kernel_size
        ho = _conv_out(h, k, layer.stride, layer.padding)
        wo = _conv_out(w, k, layer.stride, layer.padding)
        out = (layer.out_channels, ho, wo)
        params = c * k * k * layer.out_channels + (layer.out_channels if layer.bias else 0)
        flops = 2 * c * k * k * _numel(out) + (_numel(out) if layer.bias else 0)
    elif isinstance(layer, BatchNorm2d):
        if len(shape) != 3:
            raise ValueError(f"BatchNorm2d needs a (C, H, W) input, got shape {shape}")
        out = shape
        params = 2 * shape[0]  # weight and bias; running statistics are buffers
        flops = 2 * _numel(shape)
    elif isinstance(layer, ReLU):
        out, params, flops = shape, 0, _numel(shape)
    elif isinstance(layer, MaxPool2d):
        if len(shape) != 3:
            raise ValueError(f"MaxPool2d needs a (C, H, W) input, got shape {shape}")
        c, h, w = shape
        out = (c, _conv_out(h, layer.kernel_size, layer.stride, layer.padding),
               _conv_out(w, layer.kernel_size, layer.stride, layer.padding))
        params = 0
        flops = layer.kernel_size * layer.kernel_size * _numel(out)
    elif isinstance(layer, GlobalAvgPool):
        if len(shape) != 3:
            raise ValueError(f"GlobalAvgPool needs a (C, H, W) input, got shape {shape}")
        out, params, flops = (shape[0],), 0, _numel(shape)
    elif isinstance(layer, Flatten):
        out, params, flops = (_numel(shape),), 0, 0
    elif isinstance(layer, Embedding):
        if len(shape) != 1:
            raise ValueError(f"Embedding needs a (seq,) input of token ids, got shape {shape}")
        if shape[0] > layer.max_positions:
            raise ValueError(f"a sequence of {shape[0]} tokens is longer than the Embedding's "
                             f"{layer.max_positions} positions")
        out = shape + (layer.d_model,)
        params = (layer.vocab + layer.max_positions) * layer.d_model
        flops = _numel(out)  # the position embedding's addition
    elif isinstance(layer, LayerNorm):
        _need_last_dim("LayerNorm", shape)
        out, params = shape, 2 * shape[-1]
        flops = LAYERNORM_FLOPS_PER_ELEM * _numel(shape)
    elif isinstance(layer, GELU):
        out, params, flops = shape, 0, GELU_FLOPS_PER_ELEM * _numel(shape)
    elif isinstance(layer, SelfAttention):
        return _attention(layer, shape)
    elif isinstance(layer, LMHead):
        _need_last_dim("LMHead", shape)
        d, rows = shape[-1], _numel(shape[:-1])
        out = shape[:-1] + (layer.vocab,)
        params = 0 if layer.tied else d * layer.vocab
        flops = rows * 2 * d * layer.vocab
    elif isinstance(layer, TakeFirst):
        if len(shape) < 2:
            raise ValueError(f"TakeFirst needs a (seq, d) input, got shape {shape}")
        out, params, flops = shape[1:], 0, 0
        return out, params, flops, 2 * _numel(out)  # reads the first row only
    elif isinstance(layer, Residual):
        body = analyze(layer.body, shape)
        short = analyze(layer.shortcut, shape) if layer.shortcut else None
        short_shape = short.output_shape if short else shape
        if body.output_shape != short_shape:
            raise ValueError(
                f"residual branches disagree: body gives {body.output_shape}, "
                f"shortcut gives {short_shape}")
        out = body.output_shape
        params = body.param_count + (short.param_count if short else 0)
        flops = body.forward_flops_per_sample + (short.forward_flops_per_sample if short else 0)
        flops += _numel(out)  # the addition
        act = body.activation_elems_per_sample + (short.activation_elems_per_sample if short else 0)
        return out, params, flops, act + 2 * _numel(out)
    else:
        raise TypeError(f"unknown layer record {layer!r}")
    return out, params, flops, _numel(shape) + _numel(out)


def _need_last_dim(what: str, shape: Shape) -> None:
    if len(shape) < 1:
        raise ValueError(f"{what} needs an input with a last dimension, got shape {shape}")


def _attention(layer: SelfAttention, shape: Shape) -> Tuple[Shape, int, int, int]:
    if len(shape) != 2:
        raise ValueError(f"SelfAttention needs a (seq, d) input, got shape {shape}")
    seq, d = shape
    if layer.heads < 1 or d % layer.heads:
        raise ValueError(f"SelfAttention: d_model {d} does not divide into {layer.heads} heads")
    params = (3 * d * d + 3 * d) + (d * d + d)
    projections = seq * ((2 * d * 3 * d + 3 * d) + (2 * d * d + d))
    scores_and_sum = 2 * seq * seq * d + 2 * seq * seq * d
    softmax = SOFTMAX_FLOPS_PER_SCORE * layer.heads * seq * seq
    # Read and written once each: the input, Q/K/V, the heads' output, the projection's
    # output. The scores are not counted: fused (flash) kernels never store them.
    act = seq * d + 2 * (3 * seq * d) + 2 * (seq * d) + seq * d
    return shape, params, projections + scores_and_sum + softmax, act


def analyze(layers: Sequence[Layer], input_shape: Shape) -> ModelStats:
    """Walks the description from `input_shape` (per sample, no batch dimension)."""
    shape: Shape = tuple(input_shape)
    params = flops = act = 0
    embedding = None
    for layer in layers:
        if isinstance(layer, Embedding):
            embedding = layer
        elif isinstance(layer, LMHead) and layer.tied and embedding is not None \
                and (embedding.vocab, embedding.d_model) != (layer.vocab, shape[-1]):
            raise ValueError(f"a tied LMHead over {layer.vocab} tokens from d={shape[-1]} cannot "
                             f"reuse the Embedding's {embedding.vocab} x {embedding.d_model} matrix")
        shape, p, f, a = _layer(layer, shape)
        params += p
        flops += f
        act += a
    return ModelStats(shape, params, flops, act)
