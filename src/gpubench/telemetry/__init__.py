"""Telemetry samplers: nvml (NVIDIA GPUs), cpu (psutil/RAPL), none."""

from __future__ import annotations

from typing import Optional

from gpubench.errors import UserError
from gpubench.telemetry.base import TRIAL_TELEMETRY_COLUMNS, NullSampler, Sampler

__all__ = ["TELEMETRY_KINDS", "TRIAL_TELEMETRY_COLUMNS", "NullSampler", "Sampler", "make_sampler"]

TELEMETRY_KINDS = ("auto", "nvml", "cpu", "none")


def make_sampler(kind: str, device_kind: str, device_index: Optional[int], sample_hz: float) -> Sampler:
    """The sampler for `--telemetry kind` when the backend runs on `device_kind`.
    `auto` means NVML on an NVIDIA GPU, CPU sampling otherwise."""
    if kind not in TELEMETRY_KINDS:
        raise UserError(f"unknown telemetry {kind!r} (valid: {', '.join(TELEMETRY_KINDS)})")
    # The NVML and CPU samplers arrive with the telemetry issue; until then every
    # kind records nothing rather than pretend.
    return NullSampler()
