"""Data parallelism for torch steps, as the rank context asks (StepConfig.ranks), over
the process group the rank launcher opened (the step never opens, queries or closes it):

- ddp: the model wrapped in DistributedDataParallel (rank 0's weights broadcast at the
  start, gradients all-reduced in the backward pass);
- fsdp: the model sharded with FSDP2 (`fully_shard` on each of the model's layers that
  holds parameters of its own, then on the whole: a layer's parameters are gathered
  when its forward starts; parameters two layers share, as a tied LM head and its
  token embedding do, stay with the whole) where the torch version has it, else FSDP1
  (FullyShardedDataParallel); run.json says which (`distributed.applied`). Every rank
  starts from the same weights (the same seed), since neither FSDP broadcasts them."""

from __future__ import annotations

import hashlib
from typing import Dict, List, Tuple

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
            for layer in shardable_layers(model):
                fully_shard(layer)
            fully_shard(model)
            return model, "fsdp2"
        from torch.distributed.fsdp import FullyShardedDataParallel
        # use_orig_params: the optimizer and the digest see the layers' own parameters
        return FullyShardedDataParallel(model, use_orig_params=True, device_id=(
            device if device.type == "cuda" else None)), "fsdp1"
    raise Unsupported(f"data-parallel strategy {ranks.strategy!r} is not supported by torch "
                      "steps (they run: ddp, fsdp)")


def shardable_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    """The model's layers (its children) that FSDP2 may shard apart: those holding
    parameters, none of which another layer also holds. Whole layers, not their inner
    modules: a layer may use an inner module's weight without calling it (the position
    table of TokenEmbedding), which only the layer's own forward hook would gather."""
    layers = list(model.children())
    owners: Dict[int, int] = {}
    for layer in layers:  # a tied head uses the embedding's matrix without holding it
        used = list(layer.parameters()) + list(getattr(layer, "borrowed_parameters", list)())
        for p in {id(p) for p in used}:
            owners[p] = owners.get(p, 0) + 1
    return [layer for layer in layers
            if any(True for _ in layer.parameters())
            and all(owners[id(p)] == 1 for p in layer.parameters())]


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
