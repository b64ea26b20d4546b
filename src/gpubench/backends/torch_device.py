"""The device a torch step runs on, made ready the same way for every torch step."""

from __future__ import annotations

import torch

from gpubench.backends.base import DeviceInfo


def open_device(device: torch.device, precision: str) -> DeviceInfo:
    """On CUDA: the run's GPU made current (one run per process: it is where cuDNN
    handles, autocast and GradScaler look when not told), TF32 as the precision asks,
    peak memory counted from here; the device as rows name it."""
    if device.type != "cuda":
        from gpubench.machine import cpu_model
        return DeviceInfo("cpu", None, cpu_model())
    torch.cuda.set_device(device)
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    torch.cuda.reset_peak_memory_stats(device)
    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    return DeviceInfo("cuda", device.index, props.name,
                      f"GPU-{uuid}" if uuid is not None else None)
