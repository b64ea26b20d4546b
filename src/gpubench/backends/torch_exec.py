"""Execution modes of the torch backends (`--exec`, the identity column `exec`), as
TorchBench measures them side by side:
- `eager`: PyTorch's ordinary execution.
- `compile[:MODE]`: the model under torch.compile (inductor; MODE = default,
  reduce-overhead or max-autotune); the optimizer stays eager, as most training does.
- `cuda-graphs` (CUDA only): the whole step (forward, backward and optimizer update; or
  the forward in inference) captured once into a CUDA graph with static inputs and
  replayed; each step first copies its batch into the static inputs, as a real loop must.

Compiling and capturing happen while the step is built and are timed apart
(`compile_s`); the mode's results on the first batch are set beside eager's on the same
weights (`exec_check`, judged by measure/accuracy_gate.py): in inference the outputs; in
training under compile, the graph the trials run (forward and backward in grad mode,
compiled once and counted alone) gives the loss and every parameter's gradient (the loss
divided by eager's, the gradients by eager's largest: `relative_pairs`), with no optimizer
update, so the weights and the optimizer's state stay where training starts. A recompilation
during the trials is counted from dynamo's own counters and reported.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from gpubench.backends.exec_modes import compile_mode

CAPTURE_WARMUP_STEPS = 3  # on a side stream before capture, as torch's CUDA-graph docs ask
# what a training exec_check holds (run.json's environment says it beside the check)
TRAIN_CHECK_VALUES = ("the loss and every parameter's gradient after one forward and backward "
                      "on the first batch (no optimizer update); the loss divided by eager's "
                      "loss, the gradients by eager's largest gradient magnitude")


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


def loss_and_grads(module: Callable, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
                   params: Sequence[torch.nn.Parameter],
                   autocast: Callable[[], Any]) -> List[List[torch.Tensor]]:
    """One forward and backward of a training step without its optimizer update:
    [[the loss], [each parameter's gradient]] (this rank's shard of a sharded one),
    detached; the gradients are cleared again, as the step's zero_grad(set_to_none)
    leaves them."""
    for p in params:
        p.grad = None
    with autocast():
        loss = loss_fn(module(x), y)
    loss.backward()
    grads = []
    for p in params:
        if p.grad is not None:
            grad = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
            grads.append(grad.detach().float().reshape(-1).clone())
        p.grad = None
    return [[loss.detach().float().reshape(1)], grads]


def relative_pairs(eager: Sequence[Sequence[torch.Tensor]],
                   other: Sequence[Sequence[torch.Tensor]],
                   keep_elems: int) -> Tuple[np.ndarray, np.ndarray]:
    """Two columns, [n, 1], of the groups' values (at most keep_elems in all), each group
    divided by the largest magnitude in its eager version: the loss is checked relative
    to itself, the gradients relative to the largest one (a gradient that is zero but
    for rounding, a bias before a BatchNorm's, is then held to rounding of that scale,
    as the accuracy gate holds outputs to the largest output)."""
    flat = [[t.reshape(-1) for t in group] for group in eager]
    flat_other = [[t.reshape(-1) for t in group] for group in other]
    if [len(g) for g in flat] != [len(g) for g in flat_other]:
        raise RuntimeError("the exec mode's loss and gradients do not pair with eager's")
    per = max(1, keep_elems // max(1, sum(len(g) for g in flat)))
    refs, outs = [], []
    for group, group_other in zip(flat, flat_other):
        scale = max((float(t.abs().max()) for t in group if t.numel()), default=0.0) or 1.0
        for e, o in zip(group, group_other):
            refs.append(e[:per].double() / scale)
            outs.append(o[:per].double() / scale)
    return (torch.cat(refs).reshape(-1, 1).cpu().numpy(),
            torch.cat(outs).reshape(-1, 1).cpu().numpy())


@contextlib.contextmanager
def buffers_kept(module: torch.nn.Module) -> Iterator[None]:
    """Restores the module's buffers (BatchNorm's running statistics and batch count)
    in place afterwards: a check's forward passes in training mode move them."""
    kept = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in kept:
                b.copy_(saved)


def timed(fn: Callable[[], Any], synchronize: Callable[[], None]) -> Tuple[Any, float]:
    """Runs fn once, the device synchronised before and after: (its result, seconds)."""
    synchronize()
    t0 = time.perf_counter()
    out = fn()
    synchronize()
    return out, time.perf_counter() - t0
