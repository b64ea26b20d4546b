"""Data parallelism for torch steps, as the rank context asks (StepConfig.ranks), over
the process group the rank launcher opened (the step never opens, queries or closes it):

- ddp: the model wrapped in DistributedDataParallel (rank 0's weights broadcast at the
  start, gradients all-reduced in the backward pass);
- fsdp: the model sharded with FSDP2 (`fully_shard`, each layer that holds parameters,
  then the whole) where the torch version has it, else wrapped in FSDP1
  (FullyShardedDataParallel); run.json says which (`distributed.applied`). Every rank
  starts from the same weights (the same seed), since neither FSDP broadcasts them."""

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
    if ranks.strategy == "fsdp":
        fully_shard = _fully_shard()
        if fully_shard is not None:
            for module in model.modules():  # each layer's parameters gathered just in time
                if module is not model and any(True for _ in module.parameters(recurse=False)):
                    fully_shard(module)
            fully_shard(model)
            return model, "fsdp2"
        from torch.distributed.fsdp import FullyShardedDataParallel
        # use_orig_params: the optimizer and the digest see the layers' own parameters
        return FullyShardedDataParallel(model, use_orig_params=True, device_id=(
            device if device.type == "cuda" else None)), "fsdp1"
    raise Unsupported(f"data-parallel strategy {ranks.strategy!r} is not supported by torch "
                      "steps (they run: ddp, fsdp)")


def _fully_shard():
    """FSDP2's fully_shard: public from torch 2.6, under _composable from 2.4; None
    before (FSDP1 then)."""
    try:
        from torch.distributed.fsdp import fully_shard
        return fully_shard
    except ImportError:
        pass
    try:
        from torch.distributed._composable.fsdp import fully_shard
        return fully_shard
    except ImportError:
        return None


def param_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the parameters' bytes, in order: equal on two ranks only when their
    weights are bit for bit the same. Sharded parameters (FSDP2's DTensors) are gathered
    whole first: a collective, so every rank calls this at the same point."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for p in model.parameters():
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            digest.update(full.detach().cpu().contiguous().view(-1).view(torch.uint8)
                          .numpy().tobytes())
    return digest.hexdigest()
