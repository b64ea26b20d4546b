"""Telemetry samplers: nvml (NVIDIA GPUs), cpu (psutil/RAPL), none.

pynvml and psutil are imported only when a sampler that needs them is made, so
`import gpubench` and `gpubench list` stay cheap."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, MutableMapping, Optional

from gpubench.errors import UserError
from gpubench.telemetry.base import (
    TRIAL_TELEMETRY_COLUMNS, NullSampler, Sampler, UnavailableSampler,
)

if TYPE_CHECKING:
    from gpubench.telemetry.gpu_state import GpuState

__all__ = ["CUDA_DEVICE_ORDER", "MAX_SAMPLE_HZ", "TELEMETRY_KINDS", "TRIAL_TELEMETRY_COLUMNS",
           "NullSampler", "Sampler", "UnavailableSampler", "check_request", "make_sampler",
           "pin_cuda_device_order", "pre_run_gpu_state"]

TELEMETRY_KINDS = ("auto", "nvml", "cpu", "none")
# NVML calls are serialising and most values refresh every 10-100 ms or slower; a rate
# above this is a typo, refused rather than silently clamped.
MAX_SAMPLE_HZ = 1000.0
# CUDA's default order puts the fastest GPU first; PCI bus order is NVML's, so with it
# CUDA ordinals and NVML indices agree (see nvml_select.py).
CUDA_DEVICE_ORDER = "PCI_BUS_ID"


def pin_cuda_device_order(env: MutableMapping[str, str]) -> str:
    """Sets CUDA_DEVICE_ORDER=PCI_BUS_ID in `env` unless the user chose an order (which
    stands); returns the order in effect. Only works before CUDA is initialised."""
    return env.setdefault("CUDA_DEVICE_ORDER", CUDA_DEVICE_ORDER)


def check_request(kind: str, sample_hz: float) -> None:
    """Raises UserError for an unknown kind or a rate outside (0, MAX_SAMPLE_HZ]."""
    if kind not in TELEMETRY_KINDS:
        raise UserError(f"unknown telemetry {kind!r} (valid: {', '.join(TELEMETRY_KINDS)})")
    if not 0 < sample_hz <= MAX_SAMPLE_HZ:
        raise UserError(f"telemetry sample rate must be above 0 and at most {MAX_SAMPLE_HZ:g} Hz, "
                        f"got {sample_hz:g}")


def make_sampler(kind: str, device_kind: str, device_index: Optional[int], sample_hz: float,
                 device_uuid: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None) -> Sampler:
    """The sampler for `--telemetry kind` when the backend runs on `device_kind`
    ("cuda" or "cpu") with GPU `device_index` (a CUDA ordinal; `device_uuid` wins when
    given). `auto` means NVML on an NVIDIA GPU, CPU sampling otherwise; when NVML cannot
    be used, `auto` records nothing and says why in notes(), while `nvml` raises
    UserError. The sampler is made but not started."""
    check_request(kind, sample_hz)
    if kind == "none":
        return NullSampler()
    from gpubench.telemetry.sampler import PollingSampler

    if kind == "cpu" or (kind == "auto" and device_kind != "cuda"):
        from gpubench.telemetry.cpu import CpuSource
        return PollingSampler(CpuSource(), sample_hz)

    from gpubench.telemetry.errors import TelemetryError
    from gpubench.telemetry.nvml_source import open_nvml_source

    try:
        source = open_nvml_source(device_index or 0, device_uuid,
                                  os.environ if env is None else env)
    except TelemetryError as exc:
        if kind == "nvml":
            raise UserError(f"--telemetry nvml: {exc}") from None
        return UnavailableSampler("nvml", str(exc))
    return PollingSampler(source, sample_hz)


def pre_run_gpu_state(sampler: Sampler, require_idle: bool = False) -> Optional["GpuState"]:
    """The state of the GPU `sampler` watches through NVML, read now, before measuring
    (other processes, persistence mode, application clocks: telemetry/gpu_state.py);
    None when it watches no GPU. With `require_idle`, raises UserError when other
    processes use that GPU, or when that cannot be told (no NVML here)."""
    from gpubench.telemetry.gpu_state import require_idle as check_idle
    from gpubench.telemetry.nvml_source import NvmlSource

    source = getattr(sampler, "source", None)
    state = source.gpu_state() if isinstance(source, NvmlSource) else None
    if require_idle:
        check_idle(state, "" if state is not None else _why_no_gpu(sampler))
    return state


def _why_no_gpu(sampler: Sampler) -> str:
    if isinstance(sampler, UnavailableSampler):
        return f"no {sampler.wanted} telemetry: {sampler.reason}"
    return (f"this run's telemetry ({sampler.name}) does not watch a GPU through NVML "
            f"(--telemetry nvml, or auto with a GPU backend, does)")
