"""Execution modes of the torch backends (`--exec`, the identity column `exec`), as
TorchBench measures them side by side:
- `eager`: PyTorch's ordinary execution.
- `compile[:MODE]`: the model under torch.compile (inductor; MODE = default,
  reduce-overhead or max-autotune); the optimizer stays eager, as most training does.
- `cuda-graphs` (CUDA only): the whole step (forward, backward and optimizer update; or
  the forward in inference) captured once into a CUDA graph with static inputs and
  replayed; each step first copies its batch into the static inputs, as a real loop must.

Compiling and capturing happen while the step is built and are timed apart
(`compile_s`); before that, the mode's outputs on the first batch are set beside
eager's on the same weights (`exec_check`, judged by measure/accuracy_gate.py). A
recompilation during the trials is counted from dynamo's own counters and reported.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Tuple

import torch

from gpubench.backends.exec_modes import compile_mode

CAPTURE_WARMUP_STEPS = 3  # on a side stream before capture, as torch's CUDA-graph docs ask


def compile_module(model: torch.nn.Module, exec_mode: str) -> torch.nn.Module:
    return torch.compile(model, mode=compile_mode(exec_mode))


def dynamo_graphs() -> int:
    """Graphs dynamo has compiled in this process so far: a rise during the trials is
    a recompilation inside the timed region."""
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


class GraphedStep:
    """One step captured into a CUDA graph and replayed. `step(x, y)` (training) or
    `step(x)` (inference) runs on static tensors; `__call__` copies a batch in and
    replays. Optimizers must be built with capturable=True (Adam, AdamW)."""

    def __init__(self, step: Callable, example: Tuple[torch.Tensor, ...],
                 device: torch.device) -> None:
        self.static_in = [t.clone() for t in example]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up away from the capture: lazy init, autotuning
            for _ in range(CAPTURE_WARMUP_STEPS):
                step(*self.static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = step(*self.static_in)

    def __call__(self, *batch: torch.Tensor) -> Any:
        for static, value in zip(self.static_in, batch):
            if static.data_ptr() != value.data_ptr():
                static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.static_out


def timed(fn: Callable[[], Any], synchronize: Callable[[], None]) -> Tuple[Any, float]:
    """Runs fn once, the device synchronised before and after: (its result, seconds)."""
    synchronize()
    t0 = time.perf_counter()
    out = fn()
    synchronize()
    return out, time.perf_counter() - t0
