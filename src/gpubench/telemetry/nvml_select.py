"""Which NVML device a run's GPU is.

`--device N` is a CUDA ordinal: the N-th GPU that CUDA shows this process, after
CUDA_VISIBLE_DEVICES. NVML numbers every GPU in PCI bus order and ignores
CUDA_VISIBLE_DEVICES. So: match the UUID the backend reports when it has one; else map
the ordinal through CUDA_VISIBLE_DEVICES (indices or GPU-UUID prefixes, read the way
CUDA reads them: up to the first invalid entry). Without CUDA_VISIBLE_DEVICES the
ordinal is taken as the NVML index.

Both mappings assume CUDA enumerates in PCI bus order, NVML's order. CUDA's default
order puts the fastest GPU first, so gpubench sets CUDA_DEVICE_ORDER=PCI_BUS_ID before
CUDA is initialised: in the run worker's environment (launch/process.py) and at the
start of an in-process run (measure/runner.py). A user's own CUDA_DEVICE_ORDER stands and
is recorded in run.json (`environment.cuda_device_order`); with FASTEST_FIRST on a box
of unlike GPUs only the UUID match is certain.
"""

from __future__ import annotations

import os
from typing import List, Mapping, Optional

from gpubench.telemetry.errors import TelemetryError, TelemetryUnavailable
from gpubench.telemetry.nvml import Nvml, NvmlDevice


def _uuid(device: NvmlDevice) -> Optional[str]:
    try:
        return device.uuid()
    except TelemetryError:
        return None


def visible_devices(devices: List[NvmlDevice], spec: Optional[str]) -> List[NvmlDevice]:
    """The devices CUDA enumerates, in CUDA order, for CUDA_VISIBLE_DEVICES=`spec`."""
    if spec is None:
        return list(devices)
    visible: List[NvmlDevice] = []
    for entry in (e.strip() for e in spec.split(",")):
        if entry.startswith("MIG-"):
            raise TelemetryUnavailable(
                f"CUDA_VISIBLE_DEVICES names a MIG instance ({entry}); NVML telemetry "
                "samples whole GPUs, not MIG instances")
        if entry.isdigit() and int(entry) < len(devices):
            match: Optional[NvmlDevice] = devices[int(entry)]
        elif entry.startswith("GPU-"):
            hits = [d for d in devices if (_uuid(d) or "").startswith(entry)]
            match = hits[0] if len(hits) == 1 else None
        else:
            match = None
        if match is None or match in visible:
            break  # CUDA stops at the first invalid entry
        visible.append(match)
    return visible


def _listing(devices: List[NvmlDevice]) -> str:
    def describe(d: NvmlDevice) -> str:
        try:
            return d.name()
        except TelemetryError:
            return "unknown"
    return ", ".join(f"{i}: {describe(d)}" for i, d in enumerate(devices)) or "none"


def select_device(nvml: Nvml, cuda_index: int, uuid: Optional[str] = None,
                  env: Mapping[str, str] = os.environ) -> NvmlDevice:
    """The NVML device for CUDA ordinal `cuda_index` (or the GPU with `uuid`). Raises
    TelemetryUnavailable naming the GPUs there are when there is no such GPU."""
    devices = nvml.devices()
    if not devices:
        raise TelemetryUnavailable("NVML reports no GPU")
    if uuid:
        for device in devices:
            if _uuid(device) == uuid:
                return device
    spec = env.get("CUDA_VISIBLE_DEVICES")
    visible = visible_devices(devices, spec)
    if not 0 <= cuda_index < len(visible):
        where = f" with CUDA_VISIBLE_DEVICES={spec!r}" if spec is not None else ""
        raise TelemetryUnavailable(
            f"no GPU with index {cuda_index}{where} (GPUs: {_listing(visible)})")
    return visible[cuda_index]
