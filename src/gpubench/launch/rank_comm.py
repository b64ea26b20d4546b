"""A rank's side of torch.distributed, in one place: the process group torchrun's
environment describes (gloo on the CPU, NCCL on GPUs), and the rank context
(gpubench/ranks.py) whose collectives the harness uses. Those go over a gloo group of
their own: rows and timings are Python objects, which NCCL would first copy to a GPU,
and the step's gradient traffic stays apart from the harness's."""

from __future__ import annotations

import os
from typing import Any, List, Optional

from gpubench.ranks import Communicator, RankContext


class TorchCommunicator(Communicator):
    def __init__(self, group: Any, rank: int, world_size: int) -> None:
        self.group, self.rank, self.world_size = group, rank, world_size

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier(group=self.group)

    def broadcast(self, value: Any) -> Any:
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, value: Any) -> Optional[List[Any]]:
        import torch.distributed as dist
        out: Optional[List[Any]] = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(value, out, dst=0, group=self.group)
        return out


def rank_env() -> tuple:
    """(rank, world size, local rank) as torchrun set them."""
    return (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
            int(os.environ["LOCAL_RANK"]))


def open_ranks(strategy: str, device_kind: str, cuda_index: int) -> RankContext:
    """Joins the process group (torchrun's MASTER_ADDR/MASTER_PORT rendezvous) and returns
    this rank's context. On GPUs the rank's device is made current first: NCCL binds a
    communicator to it."""
    import torch
    import torch.distributed as dist

    rank, world_size, local_rank = rank_env()
    group_backend = "nccl" if device_kind == "cuda" else "gloo"
    if group_backend == "nccl":
        torch.cuda.set_device(cuda_index)
    dist.init_process_group(group_backend, rank=rank, world_size=world_size)
    control = dist.new_group(backend="gloo") if group_backend != "gloo" else None
    return RankContext(rank, world_size, local_rank, strategy, group_backend,
                       TorchCommunicator(control, rank, world_size))


def close_ranks() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
