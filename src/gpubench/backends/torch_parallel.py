"""Data parallelism for torch steps, as the rank context asks (StepConfig.ranks): the
model wrapped in DistributedDataParallel, whose backward pass all-reduces the
gradients over the process group the rank launcher opened. The step never opens,
queries or closes that group itself."""

from __future__ import annotations

import hashlib
from typing import Tuple

import torch

from gpubench.errors import Unsupported
from gpubench.ranks import RankContext


def wrap_data_parallel(model: torch.nn.Module, ranks: RankContext,
                       device: torch.device) -> Tuple[torch.nn.Module, str]:
    """The module the training step calls, and the strategy's name for run.json."""
    if ranks.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        # device_ids: the replica's one GPU; None on the CPU (gloo)
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), "ddp"
    raise Unsupported(f"data-parallel strategy {ranks.strategy!r} is not supported by torch "
                      "steps yet (they run: ddp)")


def param_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the parameters' bytes, in order: equal on two ranks only when their
    weights are bit for bit the same."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for p in model.parameters():
            digest.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
