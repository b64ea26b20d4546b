"""The rank context: which rank of a multi-process run this process is, and the few
collective operations the harness itself needs (a barrier, rank 0's value, rows to
rank 0). A launcher that starts ranks (launch/torchrun.py) makes it; the runner,
the protocol and the steps receive it, so that backends never query
torch.distributed themselves and measure/ never imports it. A run of one process
gets SINGLE_RANK, whose operations do nothing.

It lives at the bottom of the package (like errors.py) because backends (StepConfig),
measure and launch all pass it on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

# Data-parallel strategies a rank's step applies to its model (--strategy).
STRATEGIES = ("ddp", "fsdp")


class Communicator:
    """The harness's own collectives, over a control group apart from the step's
    gradients (gloo, even when the gradients go over NCCL). This one is for a single
    process: every operation is the identity."""

    def barrier(self) -> None:
        """Returns when every rank has called it."""

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank (picklable values)."""
        return value

    def gather(self, value: Any) -> Optional[List[Any]]:
        """Every rank's `value` in rank order on rank 0; None on the other ranks."""
        return [value]


@dataclass(frozen=True)
class RankContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # ddp | fsdp: how the step spreads training over the ranks; None for a run that was
    # not started by a rank launcher (no process group: the step stays as it is)
    strategy: Optional[str] = None
    group_backend: Optional[str] = None  # the process group's: gloo (CPU) or nccl (GPUs)
    comm: Communicator = field(default_factory=Communicator, compare=False)

    @property
    def ranked(self) -> bool:
        """Started by a rank launcher (a process group exists), whatever its size."""
        return self.strategy is not None

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run folder; the other ranks send it their rows."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            self.comm.barrier()

    def agree(self, value: Any) -> Any:
        """Rank 0's `value`: what every rank decides by (iterations per trial, a trial's
        duration on rank 0's clock, whether to stop) must be the same everywhere, or
        the ranks' collectives would no longer pair up."""
        return self.comm.broadcast(value) if self.world_size > 1 else value

    def gather(self, value: Any) -> Optional[List[Any]]:
        return self.comm.gather(value) if self.world_size > 1 else [value]


SINGLE_RANK = RankContext()
