"""The sampler interface. A sampler watches devices (never a framework) beside the
measurement, in its own thread, and is bracketed exactly to each trial by the protocol:

    with sampler:                    # start() ... stop()
        for trial in ...:
            sampler.begin_trial(trial)
            ... timed work ...
            columns = sampler.end_trial()   # this trial's telemetry columns

A quantity the device cannot report is left out of the dict (an empty cell in the
result), never 0, and never an exception in the middle of a measurement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional

# trials.csv columns a sampler may fill (schema v1); see results/schema.py.
TRIAL_TELEMETRY_COLUMNS = (
    "power_avg_w", "energy_j", "energy_source", "gpu_util_pct", "mem_util_pct",
    "sm_clock_mhz", "mem_bw_gbs", "mem_bw_source", "temp_c", "throttled",
    "throttle_reasons",  # schema 7: the throttling reasons named (telemetry/aggregate.py)
)


class Sampler(ABC):
    name: str = "abstract"

    def __enter__(self) -> "Sampler":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abstractmethod
    def start(self) -> None:
        """Starts background sampling."""

    @abstractmethod
    def stop(self) -> None:
        """Stops background sampling; safe to call twice."""

    @abstractmethod
    def begin_trial(self, trial: int) -> None: ...

    @abstractmethod
    def end_trial(self) -> Dict[str, Any]:
        """Telemetry columns of the trial just ended (keys from TRIAL_TELEMETRY_COLUMNS)."""

    def discard_trial(self, trial: int) -> None:
        """The trial just ended is not kept (the protocol runs it again under the same
        number): its samples no longer belong to it."""

    def temperature_c(self) -> Optional[float]:
        """The watched GPU's temperature now (C), read between trials; None where this
        sampler watches none (a wait for a cool start needs NVML)."""
        return None

    def samples(self) -> List[Dict[str, Any]]:
        """The time series for samples.csv: dicts with `t_s`, `device_index`, `trial`
        and one key per quantity."""
        return []

    def notes(self) -> Dict[str, Any]:
        """What run.json should say about telemetry: the sampler, its rate, and which
        quantities were not available and why. `warnings` (a list of one-line messages)
        is what the CLI repeats on stderr."""
        return {"sampler": self.name}

    def environment(self) -> Dict[str, Any]:
        """Facts about the watched device for run.json's environment (NVML: driver and
        CUDA driver versions, the GPU's name, UUID, limits)."""
        return {}


class NullSampler(Sampler):
    """`--telemetry none`: records nothing."""

    name = "none"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def begin_trial(self, trial: int) -> None:
        pass

    def end_trial(self) -> Dict[str, Any]:
        return {}


class UnavailableSampler(NullSampler):
    """Records nothing because the requested telemetry cannot run here (`--telemetry
    auto` on a GPU without a usable NVML); says why, once, in notes()."""

    def __init__(self, wanted: str, reason: str) -> None:
        self.wanted, self.reason = wanted, reason

    def notes(self) -> Dict[str, Any]:
        return {"sampler": self.name, "wanted": self.wanted,
                "unavailable": {self.wanted: self.reason},
                "warnings": [f"no {self.wanted} telemetry: {self.reason}"]}
