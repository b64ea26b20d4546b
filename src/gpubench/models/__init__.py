"""Framework-free model descriptions: a short list of layer records that every backend
translates into its own framework, plus the analysis (shapes, parameters, FLOPs, bytes)
derived from them so every backend reports the same numbers for the same workload."""

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
from gpubench.models.analysis import ModelStats, analyze

__all__ = [
    "BatchNorm2d", "Conv2d", "Flatten", "GlobalAvgPool", "Layer", "Linear", "MaxPool2d",
    "ReLU", "Residual", "ModelStats", "analyze",
]
