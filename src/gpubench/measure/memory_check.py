"""Preflight's memory check: refuse a configuration whose lower bound of memory
(models/memory.py) exceeds what the step's device has, before anything is allocated
(a batch that needs 392 GiB would otherwise spend half a minute in the kernel, paging,
before the OOM killer ends it). No framework is imported: the CPU's available RAM comes
from psutil, a GPU's total memory from NVML; when NVML cannot tell, the check is left to
prepare() (the framework's own out-of-memory error)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from gpubench.backends.base import Backend, StepConfig
from gpubench.errors import Unsupported
from gpubench.models.memory import (
    PRECISION_BYTES, MemoryEstimate, activation_footprint, estimate_step_memory,
    format_bytes, optimizer_slots,
)
from gpubench.workloads import Workload

# The distinct batches a step keeps resident (StepConfig's default, which runs use).
DATA_BATCHES = StepConfig("train", "fp32", 1).data_batches
INPUT_HOST_BYTES = 4  # float32 inputs on the host (token models: int64, Workload.input_itemsize)
INDEX_DEVICE_BYTES = 4  # token ids on a device: int64, or int32 where an engine takes those


class MemoryCapacity:
    """What memory there is: the host's available RAM and each GPU's total memory,
    asked once per object (a suite's dry run checks thousands of configurations)."""

    def __init__(self) -> None:
        self._host: Optional[int] = None
        self._gpus: Dict[int, Optional[Tuple[int, str]]] = {}

    def host_available_bytes(self) -> int:
        if self._host is None:
            import psutil
            self._host = int(psutil.virtual_memory().available)
        return self._host

    def gpu_total(self, device_index: int) -> Optional[Tuple[int, str]]:
        """(total bytes, "GPU 0 (name)") of CUDA device `device_index`, or None when
        NVML cannot tell (no driver, no such GPU, the query unsupported)."""
        if device_index not in self._gpus:
            self._gpus[device_index] = _nvml_total(device_index)
        return self._gpus[device_index]


def _nvml_total(device_index: int) -> Optional[Tuple[int, str]]:
    from gpubench.telemetry.errors import TelemetryError
    from gpubench.telemetry.nvml import Nvml
    from gpubench.telemetry.nvml_select import select_device

    try:
        with Nvml() as nvml:
            device = select_device(nvml, device_index)
            total = device.memory_total_bytes()
            try:
                name = f"GPU {device_index} ({device.name()})"
            except TelemetryError:
                name = f"GPU {device_index}"
    except TelemetryError:
        return None
    return (total, name) if total > 0 else None


def target_bytes_per_sample(workload: Workload) -> int:
    """int64 class indices, int64 next tokens at every position, or float32 regression
    targets (data/synthetic.py)."""
    if workload.task == "language_model":
        return 8 * _numel(workload.input_shape)
    return 8 if workload.task == "classification" else 4 * workload.num_outputs


def estimate_for(workload: Workload, mode: str, precision: str, batch_size: int,
                 device_kind: str, user_model: bool = False) -> MemoryEstimate:
    """The lower bound on the step's device. On a GPU, half-precision inputs may be cast
    (ONNX Runtime, TensorRT): counted at 2 bytes there. A user's ONNX file
    (`user_model`) is not described by the workload: only its data is counted."""
    input_bytes = workload.input_itemsize
    if device_kind != "cpu":
        input_bytes = (INDEX_DEVICE_BYTES if workload.input_dtype == "int64"
                       else min(INPUT_HOST_BYTES, PRECISION_BYTES[precision]))
    input_elems = _numel(workload.input_shape)
    if user_model:
        return estimate_step_memory(0, activation_footprint((), workload.input_shape),
                                    batch_size, "infer", precision, 0, input_elems,
                                    0, DATA_BATCHES, input_bytes)
    return estimate_step_memory(
        workload.stats.param_count, activation_footprint(workload.layers, workload.input_shape),
        batch_size, mode, precision, optimizer_slots(workload.optimizer, workload.optimizer_args),
        input_elems, target_bytes_per_sample(workload), DATA_BATCHES, input_bytes)


def host_data_bytes(workload: Workload, batch_size: int) -> int:
    """The data every backend first makes on the host (inputs and targets)."""
    per_sample = _numel(workload.input_shape) * workload.input_itemsize + target_bytes_per_sample(workload)
    return DATA_BATCHES * batch_size * per_sample


def _numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_memory(workload: Workload, backend: Backend, mode: str, precision: str,
                 batch_size: int, device_index: int = 0, user_model: bool = False,
                 capacity: Optional[MemoryCapacity] = None) -> None:
    """Raises Unsupported when the step's lower bound exceeds its device's memory (the
    host's available RAM for a CPU backend, the GPU's total memory for a CUDA one), or
    when the data made on the host for a GPU step exceeds the host's RAM."""
    capacity = capacity or MemoryCapacity()
    need = estimate_for(workload, mode, precision, batch_size, backend.device_kind, user_model)
    what = f"batch {batch_size} of {workload.name} ({mode} {precision})"
    if backend.device_kind == "cpu":
        have = capacity.host_available_bytes()
        if need.total_bytes > have:
            raise Unsupported(
                f"{what} needs at least {format_bytes(need.total_bytes)} ({need.parts()}) "
                f"but the CPU has {format_bytes(have)} of RAM available: lower the batch size")
        return
    gpu = capacity.gpu_total(device_index)
    if gpu is not None and need.total_bytes > gpu[0]:
        raise Unsupported(
            f"{what} needs at least {format_bytes(need.total_bytes)} ({need.parts()}) "
            f"but {gpu[1]} has {format_bytes(gpu[0])} in all: lower the batch size")
    host = host_data_bytes(workload, batch_size)
    have = capacity.host_available_bytes()
    if host > have:
        raise Unsupported(
            f"{what} makes {format_bytes(host)} of input data on the host first, but the "
            f"CPU has {format_bytes(have)} of RAM available: lower the batch size")
