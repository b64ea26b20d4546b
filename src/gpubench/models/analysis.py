"""Shapes, parameter counts, FLOPs and bytes derived from a model description.

Counting conventions (one multiply-add = 2 FLOPs):
- Linear:  2*in*out (+ out for the bias)
- Conv2d:  2*C_in*k*k*C_out*H_out*W_out (+ C_out*H_out*W_out for the bias)
- BatchNorm2d (inference form, scale and shift): 2*C*H*W
- ReLU: one per element; MaxPool2d: k*k per output element; GlobalAvgPool: one per
  input element; residual addition: one per output element.
Training is counted as 3x the forward pass (forward + two backward matmuls), the usual
convention for MFU.

Bytes are an analytic lower bound of DRAM traffic per sample: every layer reads its
input and writes its output once (activations), plus the parameters once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

from gpubench.models.layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
)

Shape = Tuple[int, ...]
TRAIN_FLOPS_FACTOR = 3


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
        if len(shape) != 1:
            raise ValueError(f"Linear needs a flat input, got shape {shape}")
        (n_in,) = shape
        params = n_in * layer.out_features + (layer.out_features if layer.bias else 0)
        flops = 2 * n_in * layer.out_features + (layer.out_features if layer.bias else 0)
        out = (layer.out_features,)
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


def analyze(layers: Sequence[Layer], input_shape: Shape) -> ModelStats:
    """Walks the description from `input_shape` (per sample, no batch dimension)."""
    shape: Shape = tuple(input_shape)
    params = flops = act = 0
    for layer in layers:
        shape, p, f, a = _layer(layer, shape)
        params += p
        flops += f
        act += a
    return ModelStats(shape, params, flops, act)
