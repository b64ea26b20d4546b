"""Starting weights made from the description alone, with numpy: every backend loads
the same arrays, so a time-to-accuracy run on torch and on TensorFlow starts from the
same weights and the accuracy gate compares an engine with fp32 torch on one model.

The distributions are PyTorch's defaults (the reference trains with them): a Linear or
Conv2d weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5));
BatchNorm weight 1, bias 0, running mean 0, running variance 1. Arrays come in the
reference layout that backends/keras_model.load_reference_weights and a torch
state_dict share: record order (residual body before shortcut), Linear weight
[out, in] (+ bias), Conv2d weight [O, I, kH, kW] (+ bias), BatchNorm's four arrays.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from gpubench.models.analysis import analyze
from gpubench.models.layers import BatchNorm2d, Conv2d, Layer, Linear, Residual


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


def _walk(layers: Sequence[Layer], shape: Tuple[int, ...], rng: np.random.Generator,
          out: List[np.ndarray]) -> None:
    for layer in layers:
        if isinstance(layer, Linear):
            fan_in = int(np.prod(shape))
            out.append(_uniform(rng, fan_in, (layer.out_features, fan_in)))
            if layer.bias:
                out.append(_uniform(rng, fan_in, (layer.out_features,)))
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
