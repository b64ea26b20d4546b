"""The timed step of a collective workload (workloads/collectives.py) in torch: one
all-reduce (sum) or all-gather of a float32 message per iteration, over the process
group the rank launcher opened (gloo on the CPU, NCCL on GPUs). The message size is
set between measurements (`set_message_bytes`); the buffers are allocated once, at the
largest size, so that no size is timed with an allocation."""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

from gpubench.backends.base import DeviceInfo, HostTimer, Step, StepConfig, StepTimer
from gpubench.errors import UserError
from gpubench.workloads import Workload
from gpubench.workloads.collectives import message_elements

# torch 2.13 renamed all_gather_into_tensor (which it still has, deprecated)
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class TorchCollectiveStep(Step):
    def __init__(self, workload: Workload, config: StepConfig, device: torch.device,
                 device_info: DeviceInfo) -> None:
        if not config.ranks.ranked:
            raise UserError(f"workload {workload.name} runs between ranks: give --nproc N")
        self.op, self.world_size = workload.collective, config.ranks.world_size
        self.device, self.torch_device = device_info, device
        self.is_cuda = device.type == "cuda"
        largest, _ = message_elements(self.op, max(workload.message_sizes), self.world_size)
        # each rank's part; an all-gather's output holds every rank's
        self.send = torch.full((largest,), float(config.ranks.rank + 1), device=device)
        self.recv = (torch.empty(largest * self.world_size, device=device)
                     if self.op == "allgather" else None)
        self.set_message_bytes(min(workload.message_sizes))

    def set_message_bytes(self, message_bytes: int) -> int:
        """Sets the message size; returns the bytes it holds (whole elements)."""
        self.elements, self.message_bytes = message_elements(self.op, message_bytes,
                                                             self.world_size)
        return self.message_bytes

    def make_timer(self, iterations: int) -> StepTimer:
        return HostTimer(iterations)

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        send = self.send[:self.elements]
        if self.op == "allreduce":
            for _ in range(iterations):
                dist.all_reduce(send)
        else:
            recv = self.recv[:self.elements * self.world_size]
            for _ in range(iterations):
                _ALL_GATHER(recv, send)

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def peak_mem_bytes(self) -> Optional[int]:
        return int(torch.cuda.max_memory_allocated(self.torch_device)) if self.is_cuda else None

    def close(self) -> None:
        self.send = self.recv = None
        if self.is_cuda:
            torch.cuda.empty_cache()


def collective_step(workload: Workload, config: StepConfig, device: torch.device) -> Step:
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
        props = torch.cuda.get_device_properties(device)
        uuid = getattr(props, "uuid", None)
        info = DeviceInfo("cuda", device.index, props.name,
                          f"GPU-{uuid}" if uuid is not None else None)
    else:
        from gpubench.machine import cpu_model
        info = DeviceInfo("cpu", None, cpu_model())
    return TorchCollectiveStep(workload, config, device, info)
