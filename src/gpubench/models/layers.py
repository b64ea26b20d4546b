"""Layer records. Immutable, hashable and framework-free: a model is a tuple of these.

Input sizes are not stored: they follow from the workload's input shape, so one record
(`Linear(128)`) means the same thing whatever feeds it. Image tensors are logically
(C, H, W); a backend may lay them out channels-last, but the description does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union


@dataclass(frozen=True)
class Linear:
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


Layer = Union[Linear, Conv2d, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten, Residual]
