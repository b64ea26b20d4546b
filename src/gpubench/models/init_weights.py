"""Starting weights made from the description alone, with numpy: every backend loads
the same arrays, so a time-to-accuracy run on torch and on TensorFlow starts from the
same weights and the accuracy gate compares an engine with fp32 torch on one model.

The distributions are PyTorch's defaults (the reference trains with them): a Linear or
Conv2d weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5));
BatchNorm weight 1, bias 0, running mean 0, running variance 1. Token models: an
Embedding's token [vocab, d] and position [max_positions, d] matrices N(0, 0.02)
(EMBEDDING_STD: GPT-2's and BERT's initializer range, which the torch and Keras
translations use too; nn.Embedding's own N(0, 1) under a tied head starts a
language model at a loss far above ln(vocab)), LayerNorm weight 1 and bias 0, a SelfAttention's QKV and output
projections as Linears, an untied LMHead as a Linear without bias; a tied LMHead has
no weights of its own. Arrays come in the reference layout that
backends/keras_model.load_reference_weights and a torch state_dict share: record order
(residual body before shortcut), Linear weight [out, in] (+ bias), Conv2d weight
[O, I, kH, kW] (+ bias), BatchNorm's four arrays, Embedding token then position,
LayerNorm weight then bias, SelfAttention QKV weight [3d, d], its bias, output
weight [d, d], its bias, untied LMHead weight [vocab, d].
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from gpubench.models.analysis import analyze
from gpubench.models.layers import (
    BatchNorm2d, Conv2d, Embedding, Layer, LayerNorm, Linear, LMHead, Residual, SelfAttention,
)


EMBEDDING_STD = 0.02


def initial_weights(layers: Sequence[Layer], input_shape: Sequence[int],
                    seed: int) -> List[np.ndarray]:
    """The float32 starting weights of the described model under `seed`."""
    rng = np.random.default_rng(seed)
    out: List[np.ndarray] = []
    _walk(layers, tuple(input_shape), rng, out)
    return out


def _uniform(rng: np.random.Generator, fan_in: int, shape: Tuple[int, ...]) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _linear(rng: np.random.Generator, fan_in: int, out_features: int, bias: bool,
            out: List[np.ndarray]) -> None:
    out.append(_uniform(rng, fan_in, (out_features, fan_in)))
    if bias:
        out.append(_uniform(rng, fan_in, (out_features,)))


def _walk(layers: Sequence[Layer], shape: Tuple[int, ...], rng: np.random.Generator,
          out: List[np.ndarray]) -> None:
    for layer in layers:
        if isinstance(layer, Linear):
            _linear(rng, shape[-1], layer.out_features, layer.bias, out)
        elif isinstance(layer, Embedding):
            for rows in (layer.vocab, layer.max_positions):
                out.append(EMBEDDING_STD * rng.standard_normal((rows, layer.d_model),
                                                               dtype=np.float32))
        elif isinstance(layer, LayerNorm):
            out += [np.ones(shape[-1], np.float32), np.zeros(shape[-1], np.float32)]
        elif isinstance(layer, SelfAttention):
            d = shape[-1]
            _linear(rng, d, 3 * d, True, out)
            _linear(rng, d, d, True, out)
        elif isinstance(layer, LMHead) and not layer.tied:
            _linear(rng, shape[-1], layer.vocab, False, out)
        elif isinstance(layer, Conv2d):
            k, channels = layer.kernel_size, shape[0]
            fan_in = channels * k * k
            out.append(_uniform(rng, fan_in, (layer.out_channels, channels, k, k)))
            if layer.bias:
                out.append(_uniform(rng, fan_in, (layer.out_channels,)))
        elif isinstance(layer, BatchNorm2d):
            n = shape[0]
            out += [np.ones(n, np.float32), np.zeros(n, np.float32),
                    np.zeros(n, np.float32), np.ones(n, np.float32)]
        elif isinstance(layer, Residual):
            _walk(layer.body, shape, rng, out)
            _walk(layer.shortcut, shape, rng, out)
        shape = analyze([layer], shape).output_shape
