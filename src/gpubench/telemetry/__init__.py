"""Telemetry samplers: nvml (NVIDIA GPUs), cpu (psutil/RAPL), none.

pynvml and psutil are imported only when a sampler that needs them is made, so
`import gpubench` and `gpubench list` stay cheap."""

from __future__ import annotations

import os
from typing import Mapping, Optional

from gpubench.errors import UserError
from gpubench.telemetry.base import (
    TRIAL_TELEMETRY_COLUMNS, NullSampler, Sampler, UnavailableSampler,
)

__all__ = ["MAX_SAMPLE_HZ", "TELEMETRY_KINDS", "TRIAL_TELEMETRY_COLUMNS", "NullSampler", "Sampler",
           "UnavailableSampler", "check_request", "make_sampler"]

TELEMETRY_KINDS = ("auto", "nvml", "cpu", "none")
# NVML calls are serialising and most values refresh every 10-100 ms or slower; a rate
# above this is a typo, refused rather than silently clamped.
MAX_SAMPLE_HZ = 1000.0


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
