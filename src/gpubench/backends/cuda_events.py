"""Per-step latency from CUDA events (through torch), shared by the backends that run
on torch's CUDA streams (torch-cuda, tensorrt)."""

from __future__ import annotations

import numpy as np
import torch

from gpubench.backends.base import StepTimer


class CudaEventTimer(StepTimer):
    """A start and an end event around every step, read after synchronising."""

    def __init__(self, iterations: int) -> None:
        self.starts = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
        self.ends = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]

    def latencies_s(self) -> np.ndarray:
        return np.array([s.elapsed_time(e) for s, e in zip(self.starts, self.ends)]) / 1e3
