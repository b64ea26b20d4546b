"""Translation of a model description (gpubench.models) into a torch.nn.Module."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from gpubench.models import (
    BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d, ReLU, Residual,
)


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _translate(layers: Sequence[Layer], shape: Tuple[int, ...]) -> Tuple[nn.Sequential, Tuple[int, ...]]:
    from gpubench.models.analysis import analyze

    modules = []
    for layer in layers:
        if isinstance(layer, Linear):
            modules.append(nn.Linear(shape[0], layer.out_features, bias=layer.bias))
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
        elif isinstance(layer, Residual):
            body, _ = _translate(layer.body, shape)
            shortcut = _translate(layer.shortcut, shape)[0] if layer.shortcut else nn.Identity()
            modules.append(ResidualBlock(body, shortcut))
        else:
            raise TypeError(f"no torch translation for {layer!r}")
        shape = analyze([layer], shape).output_shape
    return nn.Sequential(*modules), shape


def build_module(layers: Sequence[Layer], input_shape: Tuple[int, ...]) -> nn.Module:
    """An nn.Module with exactly the description's architecture (weights from torch's
    default initialisation under the current seed)."""
    module, _ = _translate(layers, tuple(input_shape))
    return module
