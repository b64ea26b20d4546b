"""Collective workloads: no model, a float32 message the ranks of a run (`--nproc`)
exchange, swept over sizes in one run, measured as nccl-tests measures it:

    algbw = message bytes / time of one operation
    busbw = algbw x the bus factor: 2(n-1)/n for all-reduce, (n-1)/n for all-gather,

so that busbw is comparable with the links' peak whatever the number of ranks n. The
message of an all-gather is its output (each rank contributes 1/n of it). Sizes run
from `min_bytes` to `max_bytes` (default 8 B to 1 GiB, as nccl-tests' -b 8 -e 1G),
doubling, each rounded down to whole float32 elements (and, for an all-gather, to a
whole number of them per rank).

The other Workload fields (loss, optimizer, a one-element input) are placeholders the
model-free step ignores; the FLOPs and model bytes are 0."""

from __future__ import annotations

from typing import Tuple

from gpubench.workloads.base import ParamSpec, Workload, WorkloadSpec

OPS = ("allreduce", "allgather")
ELEMENT_BYTES = 4  # float32
GIB = 1 << 30


def bus_factor(op: str, world_size: int) -> float:
    """nccl-tests' factor from algorithm to bus bandwidth (its PERFORMANCE.md)."""
    n = world_size
    return 2 * (n - 1) / n if op == "allreduce" else (n - 1) / n


def sweep(min_bytes: int, max_bytes: int) -> Tuple[int, ...]:
    if max_bytes < min_bytes:
        raise ValueError(f"max_bytes {max_bytes} is below min_bytes {min_bytes}")
    sizes, size = [], min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= 2
    return tuple(sizes)


def message_elements(op: str, message_bytes: int, world_size: int) -> Tuple[int, int]:
    """(elements each rank sends, bytes of the whole message) for a size asked: at least
    one element per rank."""
    per_rank = message_bytes // ELEMENT_BYTES // (world_size if op == "allgather" else 1)
    per_rank = max(1, per_rank)
    total = per_rank * (world_size if op == "allgather" else 1)
    return per_rank, total * ELEMENT_BYTES


def _spec(op: str, what: str) -> WorkloadSpec:
    def build(min_bytes: int, max_bytes: int) -> Workload:
        return Workload(
            name=op, task="collective", input_shape=(1,), num_outputs=1, loss="mse",
            optimizer="sgd", optimizer_args=(), default_batch_size=1, layers=(),
            params=(("max_bytes", max_bytes), ("min_bytes", min_bytes)),
            collective=op, message_sizes=sweep(min_bytes, max_bytes))

    return WorkloadSpec(
        name=op, build=build,
        description=f"{what} of a float32 message between the ranks (--nproc), 8 B to "
                    "1 GiB: algbw and busbw as nccl-tests defines them",
        params={"min_bytes": ParamSpec(int, 8, "smallest message, bytes", minimum=4),
                "max_bytes": ParamSpec(int, GIB, "largest message, bytes", minimum=4)})


ALLREDUCE = _spec("allreduce", "all-reduce (sum)")
ALLGATHER = _spec("allgather", "all-gather")
