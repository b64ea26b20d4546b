"""The state of a run's GPU before measuring, and the warnings it calls for:

- other processes using the GPU (NVML's compute and graphics process lists, less this
  process): their work shares the GPU with the run and skews it;
- persistence mode: off, the driver deinitialises an unused GPU, so each run's first
  CUDA call pays for setting it up again;
- application clocks (`nvidia-smi -ac`) away from their defaults: results then hold
  for those clocks only.

What NVML cannot tell: clocks locked with `nvidia-smi -lgc` / `-lmc`
(nvmlDeviceSetGpuLockedClocks / nvmlDeviceSetMemoryLockedClocks) have setters and
resetters in NVML but no getter (nvidia-ml-py 13.615 binds none), so a locked clock is
not detected here. The samples' clock-event reasons show its effect during the run at
best: bit 0x2 (nvmlClocksEventReasonApplicationsClocksSetting, "clocks are set to
application-specific values") is documented for application clocks only.

A query the GPU does not support is None here, with the reason under `unavailable`.
Process names come from psutil where this process may read them.

PIDs are those NVML reports. Inside a container with its own PID namespace, drivers that
report host PIDs make this run's own process look like another one (run the container
with --pid=host there).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from gpubench.errors import UserError
from gpubench.telemetry.errors import TelemetryError
from gpubench.telemetry.nvml import CLOCK_GRAPHICS, CLOCK_MEM, NvmlDevice

T = TypeVar("T")

LOCKED_CLOCKS_UNKNOWN = ("NVML has no query for clocks locked with nvidia-smi -lgc/-lmc "
                         "(nvmlDeviceSetGpuLockedClocks has no getter)")
CLOCK_DOMAINS = (("graphics", CLOCK_GRAPHICS), ("mem", CLOCK_MEM))


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: Optional[str]  # None where psutil cannot read it (another user's, another container's)
    used_memory_bytes: Optional[int]  # None where the driver does not say (Windows WDDM)
    kinds: Tuple[str, ...]  # "compute", "graphics" or both

    def describe(self) -> str:
        text = f"pid {self.pid}" + (f" {self.name}" if self.name else "")
        if self.used_memory_bytes is not None:
            text += f" using {self.used_memory_bytes / 2**20:.0f} MiB"
        return text


@dataclass
class GpuState:
    gpu: str  # how messages name the GPU: "GPU 0"
    other_processes: Optional[List[GpuProcess]]  # None: NVML could not list them
    persistence_mode: Optional[bool]
    clocks: Dict[str, Any]  # application clocks (MHz) and their defaults per domain
    unavailable: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        """run.json's `telemetry.gpu_state`."""
        return asdict(self)


def _ask(unavailable: Dict[str, str], key: str, query: Callable[[], T]) -> Optional[T]:
    try:
        return query()
    except TelemetryError as exc:
        unavailable[key] = str(exc)
        return None


def process_name(pid: int) -> Optional[str]:
    import psutil

    try:
        return psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, another user's or namespace's
        return None


def _other_processes(device: NvmlDevice, own_pid: int,
                     unavailable: Dict[str, str]) -> Optional[List[GpuProcess]]:
    """Compute and graphics processes merged by pid, without `own_pid`; None when the
    compute list (the one a CUDA run shares the GPU with) is not available."""
    compute = _ask(unavailable, "compute processes", device.compute_processes)
    graphics = _ask(unavailable, "graphics processes", device.graphics_processes)
    if compute is None:
        return None
    used: Dict[int, Optional[int]] = {}
    kinds: Dict[int, List[str]] = {}
    for kind, listed in (("compute", compute), ("graphics", graphics or [])):
        for pid, used_bytes in listed:
            if pid != own_pid:
                kinds.setdefault(pid, []).append(kind)
                if used.get(pid) is None:
                    used[pid] = used_bytes
    return [GpuProcess(pid, process_name(pid), used[pid], tuple(kinds[pid]))
            for pid in sorted(kinds)]


def _clocks(device: NvmlDevice, unavailable: Dict[str, str]) -> Dict[str, Any]:
    clocks: Dict[str, Any] = {}
    for domain, clock in CLOCK_DOMAINS:
        clocks[f"{domain}_app_clock_mhz"] = _ask(
            unavailable, f"{domain} application clock",
            lambda: device.applications_clock_mhz(clock))
        clocks[f"{domain}_default_app_clock_mhz"] = _ask(
            unavailable, f"{domain} default application clock",
            lambda: device.default_applications_clock_mhz(clock))
    pairs = [(clocks[f"{d}_app_clock_mhz"], clocks[f"{d}_default_app_clock_mhz"])
             for d, _ in CLOCK_DOMAINS]
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    clocks["app_clocks_at_default"] = all(a == b for a, b in known) if known else None
    clocks["locked_clocks"] = None
    unavailable["locked clocks"] = LOCKED_CLOCKS_UNKNOWN
    return clocks


def _warnings(state: GpuState) -> List[str]:
    warnings = []
    others = state.other_processes
    if others:
        warnings.append(f"{state.gpu} is busy: {_count(others)} "
                        f"({', '.join(p.describe() for p in others)}); they share it with "
                        f"the run and skew its results")
    if state.persistence_mode is False:
        warnings.append(f"persistence mode is off on {state.gpu}: the driver deinitialises "
                        f"it whenever no process uses it, so the first CUDA call of each run "
                        f"pays for setting it up again (nvidia-smi -pm 1, as root, keeps it)")
    if state.clocks.get("app_clocks_at_default") is False:
        moved = [f"{domain} {state.clocks[f'{domain}_app_clock_mhz']} MHz, default "
                 f"{state.clocks[f'{domain}_default_app_clock_mhz']}"
                 for domain, _ in CLOCK_DOMAINS
                 if state.clocks[f"{domain}_app_clock_mhz"]
                 != state.clocks[f"{domain}_default_app_clock_mhz"]]
        warnings.append(f"application clocks of {state.gpu} are not at their defaults "
                        f"({'; '.join(moved)}): results hold for these clocks only "
                        f"(nvidia-smi -rac restores the defaults)")
    return warnings


def _count(processes: List[GpuProcess]) -> str:
    return f"{len(processes)} other process{'es' if len(processes) != 1 else ''}"


def read_gpu_state(device: NvmlDevice, gpu: Optional[str] = None,
                   own_pid: Optional[int] = None) -> GpuState:
    """`device`'s state now; `gpu` names it in warnings (default "GPU <NVML index>"),
    `own_pid` (default: this process) is left out of the other processes."""
    unavailable: Dict[str, str] = {}
    state = GpuState(
        gpu=gpu or f"GPU {device.index}",
        other_processes=_other_processes(device, os.getpid() if own_pid is None else own_pid,
                                         unavailable),
        persistence_mode=_ask(unavailable, "persistence mode", device.persistence_mode),
        clocks=_clocks(device, unavailable),
        unavailable=unavailable)
    state.warnings = _warnings(state)
    return state


def require_idle(state: Optional[GpuState], why_unknown: str) -> None:
    """Raises UserError (--require-idle-gpu) when other processes use the GPU, or when
    that cannot be told: no state (`why_unknown` says why) or no process list."""
    if state is None:
        raise UserError(f"--require-idle-gpu: cannot tell whether the GPU is idle: {why_unknown}")
    if state.other_processes is None:
        raise UserError(f"--require-idle-gpu: cannot tell whether {state.gpu} is idle: "
                        f"{state.unavailable.get('compute processes', 'no process list')}")
    if state.other_processes:
        raise UserError(f"--require-idle-gpu: {state.gpu} is in use by "
                        f"{_count(state.other_processes)}: "
                        f"{', '.join(p.describe() for p in state.other_processes)}")


def with_gpu_state(notes: Dict[str, Any], state: Optional[GpuState]) -> Dict[str, Any]:
    """The sampler's notes with the state under `gpu_state` and its warnings first."""
    if state is None:
        return notes
    return {**notes, "gpu_state": state.to_json(),
            "warnings": [*state.warnings, *notes.get("warnings", [])]}
