"""Framework-free model descriptions: a short list of layer records that every backend
translates into its own framework, plus the analysis (shapes, parameters, FLOPs, bytes)
derived from them so every backend reports the same numbers for the same workload."""

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
from gpubench.models.analysis import ModelStats, analyze

__all__ = [
    "BatchNorm2d", "Conv2d", "Flatten", "GlobalAvgPool", "Layer", "Linear", "MaxPool2d",
    "ReLU", "Residual", "Embedding", "LayerNorm", "GELU", "SelfAttention", "LMHead", "TakeFirst",
    "ModelStats", "analyze",
]
