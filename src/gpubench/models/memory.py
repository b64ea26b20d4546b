"""A lower bound of the memory one step needs, from the model description alone.

It exists to refuse, before anything is allocated, a configuration that cannot fit (a
batch size that asks for hundreds of GiB), not to predict a step's peak: every term
below is something the step certainly holds at once, and everything a framework adds
(workspaces, allocator caching and fragmentation, autocast copies, max-pool indices,
the transient copies made while generating data, the CUDA context) is left out. So the
real peak is higher, never lower, than `MemoryEstimate.total_bytes`.

- parameters: every parameter once. Training keeps fp32 master weights (torch autocast
  and Keras mixed-precision policies both do), so 4 bytes; inference at the precision's
  size (ONNX Runtime and TensorRT may convert the weights).
- gradients (training): one per parameter, fp32.
- optimizer state (training): Adam keeps two moments per parameter, SGD with momentum
  one buffer, plain SGD none.
- activations: in training, the tensors the backward pass needs, saved by the forward
  pass (`saved_elems_per_sample`): the input of every Linear, Conv2d, BatchNorm2d and
  MaxPool2d, the output of every ReLU, the loss's input-sized tensor; a tensor shared by
  two layers (a ReLU's output that the next Linear needs) counts once, a reshape
  (Flatten) is a view, and the model's input is data, not an activation. Eager PyTorch
  saves exactly these for the MNIST MLP (tests/test_planning.py checks it). Token
  models: a LayerNorm saves its input and two statistics per position, a GELU its input,
  an LMHead its input, a SelfAttention its input, the fused Q/K/V (3 x seq x d) and the
  heads' merged output (the output projection's input); the attention probabilities
  are not counted (fused kernels keep only a per-row statistic), the Embedding saves
  only the token ids (data) and TakeFirst is a view. In inference, the largest single
  layer output (for SelfAttention its fused Q/K/V), which must exist at some moment.
- data: the distinct batches kept resident (`data_batches`), inputs and (training)
  targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence, Tuple

from gpubench.models.analysis import analyze
from gpubench.models.layers import (
    GELU, BatchNorm2d, Conv2d, Flatten, Layer, LayerNorm, Linear, LMHead, MaxPool2d, ReLU,
    Residual, SelfAttention, TakeFirst,
)

Shape = Tuple[int, ...]
PRECISION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}
MASTER_WEIGHT_BYTES = 4  # fp32 parameters, gradients and optimizer state in training
GiB = 2 ** 30


@dataclass(frozen=True)
class Footprint:
    """Per-sample activation elements: what training saves for the backward pass, and
    the largest single layer output (what inference must hold at least)."""

    saved_elems_per_sample: int
    largest_output_elems_per_sample: int


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _walk(layers: Sequence[Layer], shape: Shape, input_saved: bool) -> Tuple[Shape, int, int, bool]:
    """(output shape, saved elements, largest output, whether the output is saved)
    per sample; `input_saved`: the incoming tensor is already counted (or is data)."""
    saved, largest, current_saved = 0, 0, input_saved
    for layer in layers:
        if isinstance(layer, Residual):
            # Both branches read the block's input: counted as saved already, which can
            # only undercount (a lower bound stays one).
            body_shape, body_saved, body_largest, _ = _walk(layer.body, shape, True)
            short_saved = short_largest = 0
            if layer.shortcut:
                _, short_saved, short_largest, _ = _walk(layer.shortcut, shape, True)
            saved += body_saved + short_saved
            shape = body_shape  # the sum: a new tensor, which the addition does not save
            largest = max(largest, body_largest, short_largest, _numel(shape))
            current_saved = False
            continue
        out = analyze([layer], shape).output_shape
        if isinstance(layer, (Flatten, TakeFirst)):
            shape = out  # a view of its input: nothing new, saved as much as its input
            continue
        needs_input = (Linear, Conv2d, BatchNorm2d, MaxPool2d, LayerNorm, GELU, LMHead, SelfAttention)
        if isinstance(layer, needs_input) and not current_saved:
            saved += _numel(shape)  # the backward pass needs this layer's input
        if isinstance(layer, LayerNorm):
            saved += 2 * _numel(shape[:-1])  # mean and inverse deviation per position
        if isinstance(layer, SelfAttention):
            seq, d = shape
            saved += 3 * seq * d + seq * d  # Q/K/V, and the heads' output the projection reads
            largest = max(largest, 3 * seq * d)
        shape, current_saved = out, False
        if isinstance(layer, ReLU):
            saved += _numel(shape)  # ReLU's gradient is masked by its output
            current_saved = True
        largest = max(largest, _numel(shape))
    return shape, saved, largest, current_saved


def activation_footprint(layers: Sequence[Layer], input_shape: Shape) -> Footprint:
    """Walks the description from `input_shape` (per sample). The loss is counted too:
    cross-entropy saves its log-softmax, MSE its prediction: one output-sized tensor."""
    return _footprint(tuple(layers), tuple(input_shape))


@lru_cache(maxsize=256)  # a pure function of immutable records: a suite asks it thousands of times
def _footprint(layers: Tuple[Layer, ...], input_shape: Shape) -> Footprint:
    out, saved, largest, _ = _walk(layers, input_shape, input_saved=True)
    return Footprint(saved + _numel(out), largest)


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound of the bytes one step holds at once (see the module's docstring)."""

    params_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    data_bytes: int

    @property
    def total_bytes(self) -> int:
        return (self.params_bytes + self.gradients_bytes + self.optimizer_bytes
                + self.activations_bytes + self.data_bytes)

    def parts(self) -> str:
        """"params 397.2 KiB, gradients ..., activations 5.1 GiB, data 116.8 GiB"."""
        named = (("params", self.params_bytes), ("gradients", self.gradients_bytes),
                 ("optimizer state", self.optimizer_bytes),
                 ("activations", self.activations_bytes), ("data", self.data_bytes))
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in named
                         if n or name in ("params", "activations", "data"))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def optimizer_slots(optimizer: str, optimizer_args: Sequence[Tuple[str, float]]) -> int:
    """Buffers per parameter the optimizer keeps: Adam and AdamW two, SGD one with momentum."""
    if optimizer in ("adam", "adamw"):
        return 2
    return 1 if dict(optimizer_args).get("momentum") else 0


def estimate_step_memory(param_count: int, footprint: Footprint, batch_size: int, mode: str,
                         precision: str, optimizer_state_slots: int,
                         input_elems_per_sample: int, target_bytes_per_sample: int,
                         data_batches: int, input_dtype_bytes: int) -> MemoryEstimate:
    """The lower bound for one step of `batch_size` samples (see the module docstring).
    `input_dtype_bytes`: the size the resident inputs have on the step's device."""
    act = PRECISION_BYTES[precision]
    train = mode == "train"
    params = param_count * (MASTER_WEIGHT_BYTES if train else act)
    grads = param_count * MASTER_WEIGHT_BYTES if train else 0
    opt = param_count * MASTER_WEIGHT_BYTES * optimizer_state_slots if train else 0
    per_sample = footprint.saved_elems_per_sample if train else footprint.largest_output_elems_per_sample
    data_per_sample = input_elems_per_sample * input_dtype_bytes + (target_bytes_per_sample if train else 0)
    return MemoryEstimate(params, grads, opt, per_sample * batch_size * act,
                          data_batches * batch_size * data_per_sample)
