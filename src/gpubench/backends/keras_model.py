"""Translation of a model description (gpubench.models) into a Keras model on the
TensorFlow backend, with the same function as the PyTorch translation.

Layout: Keras runs channels-last (N, H, W, C) on every device. TensorFlow's CPU
convolutions need it, and on GPUs TensorFlow's layout optimizer picks the layout per
op. The description is logically (C, H, W), so three things are made to match
PyTorch exactly:
- padding is explicit: TF's 'same' pads a strided conv unevenly (more at the end),
  PyTorch pads `padding` on both sides; 'same' is used only where the two agree
  (stride 1, odd kernel, padding (k-1)/2);
- MaxPool padding is -inf, as PyTorch's (zero padding would change the max);
- Flatten of a (H, W, C) tensor gives H, W, C order, not the description's C, H, W:
  the function is the same up to a fixed permutation of the next Linear's input rows,
  which `load_reference_weights` applies, so no transpose runs in the timed step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import keras  # the backend imports TensorFlow quietly before this module
import numpy as np
from keras import ops

from gpubench.models import (
    GELU, BatchNorm2d, Conv2d, Embedding, Flatten, GlobalAvgPool, Layer, LayerNorm, Linear,
    LMHead, MaxPool2d, ReLU, Residual, SelfAttention, TakeFirst,
)
from gpubench.models.analysis import analyze
from gpubench.models.init_weights import EMBEDDING_STD

Shape = Tuple[int, ...]


def keras_input_shape(shape: Sequence[int]) -> Shape:
    """Logical (C, H, W) -> channels-last (H, W, C); feature vectors unchanged."""
    shape = tuple(shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """A batch in the description's layout (N, C, H, W) -> (N, H, W, C)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


class PaddedMaxPool2D(keras.layers.Layer):
    """Max pooling with PyTorch's symmetric -inf padding."""

    def __init__(self, pool_size: int, strides: int, pad: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.pad = pool_size, strides, pad

    def call(self, x):
        p = self.pad
        x = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=float("-inf"))
        return ops.max_pool(x, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        out = [None if s is None else (s + 2 * self.pad - self.pool_size) // self.strides + 1
               for s in (h, w)]
        return (n, out[0], out[1], c)


class TokenAndPosition(keras.layers.Layer):
    """Token ids [B, seq] -> token vectors plus learned position vectors [B, seq, d]
    (torch's two nn.Embedding: the token matrix, then the position one)."""

    def __init__(self, vocab: int, d_model: int, max_positions: int, **kwargs) -> None:
        super().__init__(**kwargs)
        init = keras.initializers.RandomNormal(stddev=EMBEDDING_STD)  # as torch's translation
        self.token = self.add_weight(shape=(vocab, d_model), name="token", initializer=init)
        self.position = self.add_weight(shape=(max_positions, d_model), name="position",
                                        initializer=init)

    def call(self, ids):
        seq = ops.shape(ids)[-1]
        return ops.take(self.token, ids, axis=0) + self.position[:seq]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.token.shape[1],)


class MultiHeadSelfAttention(keras.layers.Layer):
    """The torch translation's attention, op for op: a fused QKV Dense whose 3d outputs
    are q, k, v in that order, each `heads` contiguous chunks; softmax(q k^T / sqrt(dh))
    (causal: future positions masked) times v; heads merged; an output Dense."""

    def __init__(self, d_model: int, heads: int, causal: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heads, self.head_dim, self.causal = heads, d_model // heads, causal
        self.qkv = keras.layers.Dense(3 * d_model, dtype=self.dtype_policy)
        self.proj = keras.layers.Dense(d_model, dtype=self.dtype_policy)

    def call(self, x):
        seq = ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (-1, seq, 3, self.heads, self.head_dim))
        q, k, v = (ops.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))  # [B, H, S, dh]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / (self.head_dim ** 0.5)
        if self.causal:
            keep = ops.tril(ops.ones((seq, seq), dtype="bool"))
            scores = ops.where(keep, scores, ops.cast(-1e9 if scores.dtype == "float32"
                                                      else -3e4, scores.dtype))
        y = ops.matmul(ops.softmax(scores, axis=-1), v)  # [B, H, S, dh]
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, seq, self.heads * self.head_dim))
        return self.proj(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class TiedLMHead(keras.layers.Layer):
    """Logits through the embedding's own token matrix (one variable, shared)."""

    def __init__(self, embedding: TokenAndPosition, **kwargs) -> None:
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        return ops.matmul(x, ops.transpose(ops.cast(self.embedding.token, x.dtype)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.embedding.token.shape[0],)


@dataclass
class WeightedLayer:
    """A description record that holds weights, its Keras layer, and for a Linear fed
    by a Flatten, the logical (C, H, W) shape that was flattened."""

    record: Layer
    layer: keras.layers.Layer
    flattened_chw: Optional[Shape] = None


@dataclass
class KerasModel:
    model: keras.Model
    weighted: List[WeightedLayer] = field(default_factory=list)


class _Builder:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype  # a Keras dtype policy name: float32, mixed_float16, ...
        self.weighted: List[WeightedLayer] = []
        self.embedding: Optional[TokenAndPosition] = None  # for a tied LMHead after it

    def translate(self, records: Sequence[Layer], x, shape: Shape,
                  flat_from: Optional[Shape] = None):
        """Applies `records` to the Keras tensor `x` (logical shape `shape`)."""
        d = self.dtype
        for rec in records:
            if isinstance(rec, Linear):
                layer = keras.layers.Dense(rec.out_features, use_bias=rec.bias, dtype=d)
                self.weighted.append(WeightedLayer(rec, layer, flat_from))
                x, flat_from = layer(x), None
            elif isinstance(rec, Conv2d):
                x = self._conv(rec, x)
            elif isinstance(rec, BatchNorm2d):
                # Keras' momentum weighs the old statistic, PyTorch's the new one.
                layer = keras.layers.BatchNormalization(
                    axis=-1, momentum=1.0 - rec.momentum, epsilon=rec.eps, dtype=d)
                self.weighted.append(WeightedLayer(rec, layer))
                x = layer(x)
            elif isinstance(rec, ReLU):
                x = keras.layers.ReLU(dtype=d)(x)
            elif isinstance(rec, MaxPool2d):
                if rec.padding:
                    x = PaddedMaxPool2D(rec.kernel_size, rec.stride, rec.padding, dtype=d)(x)
                else:
                    x = keras.layers.MaxPooling2D(rec.kernel_size, rec.stride, dtype=d)(x)
            elif isinstance(rec, GlobalAvgPool):
                x = keras.layers.GlobalAveragePooling2D(dtype=d)(x)
            elif isinstance(rec, Flatten):
                flat_from = shape if len(shape) == 3 else flat_from
                x = keras.layers.Flatten(dtype=d)(x)
            elif isinstance(rec, Embedding):
                layer = TokenAndPosition(rec.vocab, rec.d_model, rec.max_positions, dtype=d)
                self.weighted.append(WeightedLayer(rec, layer))
                self.embedding = layer
                x = layer(x)
            elif isinstance(rec, LayerNorm):
                layer = keras.layers.LayerNormalization(axis=-1, epsilon=rec.eps, dtype=d)
                self.weighted.append(WeightedLayer(rec, layer))
                x = layer(x)
            elif isinstance(rec, GELU):
                x = keras.layers.Activation(_exact_gelu, dtype=d)(x)
            elif isinstance(rec, SelfAttention):
                layer = MultiHeadSelfAttention(shape[-1], rec.heads, rec.causal, dtype=d)
                self.weighted.append(WeightedLayer(rec, layer))
                x = layer(x)
            elif isinstance(rec, LMHead):
                if rec.tied:
                    x = TiedLMHead(self.embedding, dtype=d)(x)
                else:
                    layer = keras.layers.Dense(rec.vocab, use_bias=False, dtype=d)
                    self.weighted.append(WeightedLayer(rec, layer))
                    x = layer(x)
            elif isinstance(rec, TakeFirst):
                x = keras.layers.Lambda(lambda t: t[:, 0], dtype=d)(x)
            elif isinstance(rec, Residual):
                body = self.translate(rec.body, x, shape, flat_from)
                short = self.translate(rec.shortcut, x, shape, flat_from) if rec.shortcut else x
                x = keras.layers.Add(dtype=d)([body, short])
            else:
                raise TypeError(f"no Keras translation for {rec!r}")
            shape = analyze([rec], shape).output_shape
        return x

    def _conv(self, rec: Conv2d, x):
        k, p = rec.kernel_size, rec.padding
        if p and rec.stride == 1 and 2 * p == k - 1:
            padding = "same"  # identical to PyTorch's symmetric padding here
        else:
            padding = "valid"
            if p:
                x = keras.layers.ZeroPadding2D(p, dtype=self.dtype)(x)
        layer = keras.layers.Conv2D(rec.out_channels, k, strides=rec.stride, padding=padding,
                                    use_bias=rec.bias, dtype=self.dtype)
        self.weighted.append(WeightedLayer(rec, layer))
        return layer(x)


def build_keras_model(layers: Sequence[Layer], input_shape: Sequence[int],
                      dtype: str = "float32") -> KerasModel:
    """A functional Keras model with exactly the description's architecture, taking
    channels-last float32 input. `dtype` is a Keras dtype policy (`mixed_float16`,
    `mixed_bfloat16`): per layer, so no process-wide policy is changed."""
    builder = _Builder(dtype)
    tokens = bool(layers) and isinstance(layers[0], Embedding)  # token ids, not pixels
    inputs = keras.Input(keras_input_shape(input_shape), dtype="int32" if tokens else "float32")
    outputs = builder.translate(layers, inputs, tuple(input_shape))
    return KerasModel(keras.Model(inputs, outputs), builder.weighted)


def trainable_param_count(km: KerasModel) -> int:
    """Parameters as the description counts them (BatchNorm statistics excluded)."""
    return int(sum(np.prod(v.shape) for v in km.model.trainable_weights))


def _exact_gelu(x):
    return keras.activations.gelu(x, approximate=False)


def _to_keras(w: WeightedLayer, arrays: List[np.ndarray]) -> List[np.ndarray]:
    rec = w.record
    if isinstance(rec, Linear):
        kernel = arrays[0]  # [out, in]
        if w.flattened_chw is not None:  # rows C,H,W -> H,W,C (Keras' flatten order)
            c, h, wd = w.flattened_chw
            kernel = kernel.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(kernel.shape[0], -1)
        return [kernel.T] + arrays[1:]
    if isinstance(rec, Conv2d):
        return [arrays[0].transpose(2, 3, 1, 0)] + arrays[1:]  # OIHW -> HWIO
    if isinstance(rec, SelfAttention):  # qkv weight, bias; proj weight, bias: Dense kernels
        return [arrays[0].T, arrays[1], arrays[2].T, arrays[3]]
    if isinstance(rec, LMHead):  # untied: [vocab, d] -> kernel [d, vocab]
        return [arrays[0].T]
    return arrays  # BatchNorm: gamma, beta, mean, variance; LayerNorm; Embedding: as is


def _n_arrays(rec: Layer) -> int:
    if isinstance(rec, (BatchNorm2d, SelfAttention)):
        return 4
    if isinstance(rec, (Embedding, LayerNorm)):
        return 2
    if isinstance(rec, LMHead):
        return 1  # untied (a tied head holds none, and is not a weighted layer)
    return 2 if rec.bias else 1  # Linear, Conv2d


def load_reference_weights(km: KerasModel, arrays: Sequence[np.ndarray]) -> None:
    """Sets the weights from arrays in the description's reference layout, PyTorch's:
    in record order (residual body before shortcut), Linear weight [out, in] (+ bias),
    Conv2d weight [O, I, kH, kW] (+ bias), BatchNorm weight, bias, running mean,
    running variance; a Linear after Flatten sees inputs in C, H, W order."""
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    need = sum(_n_arrays(w.record) for w in km.weighted)
    if len(arrays) != need:
        raise ValueError(f"expected {need} weight arrays, got {len(arrays)}")
    i = 0
    for w in km.weighted:
        n = _n_arrays(w.record)
        w.layer.set_weights(_to_keras(w, arrays[i:i + n]))
        i += n
