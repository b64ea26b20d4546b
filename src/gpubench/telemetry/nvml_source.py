"""The NVML source for PollingSampler: one GPU's power, utilisation, memory, clocks,
temperature and clock-event reasons per poll; its energy counter at trial edges; GPM
DRAM bandwidth per trial where the GPU has GPM (Hopper and newer).

Memory bandwidth per trial, with its source (`mem_bw_source`):
- `gpm`: GPM's DRAM bandwidth utilisation over the trial x the theoretical peak;
- `util_estimate`: NVML memory utilisation (the fraction of time memory was busy, not
  of its bandwidth: an estimate, labelled so) x the theoretical peak.
(The runner fills `analytic`, the workload's bytes / time, when neither is there.)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from gpubench.telemetry.aggregate import throttle_names, throttled
from gpubench.telemetry.errors import NotAvailable, TelemetryError
from gpubench.telemetry.gpu_state import GpuState, read_gpu_state
from gpubench.telemetry.nvml import GpmWindow, Nvml, NvmlDevice, driver_facts, static_facts
from gpubench.telemetry.nvml_fingerprint import gpu_fingerprint
from gpubench.telemetry.nvml_select import select_device
from gpubench.telemetry.sampler import Source

Reader = Callable[[], Dict[str, Any]]


class NvmlSource(Source):
    name = "nvml"
    power_key = "power_w"
    gauges = {"gpu_util_pct": "gpu_util_pct", "mem_util_pct": "mem_util_pct",
              "sm_clock_mhz": "sm_clock_mhz", "temp_c": "temp_c"}

    def __init__(self, nvml: Nvml, device: NvmlDevice, device_index: Optional[int]) -> None:
        self.nvml, self.device, self.device_index = nvml, device, device_index
        self._unavailable: Dict[str, str] = {}
        self._read_errors = 0
        self._facts = static_facts(device)
        self._driver = driver_facts(nvml)
        self._fingerprint: Optional[Dict[str, Any]] = None  # environment()'s, read on its first call
        self._peak_bw_gbs: Optional[float] = self._facts.get("peak_mem_bw_gbs")
        d = device
        readers: Dict[str, Reader] = {
            "power": lambda: {"power_w": d.power_w()},
            "utilization": lambda: dict(zip(("gpu_util_pct", "mem_util_pct"), d.utilization_pct())),
            "memory used": lambda: {"mem_used_bytes": d.memory_used_bytes()},
            "SM clock": lambda: {"sm_clock_mhz": d.sm_clock_mhz()},
            "memory clock": lambda: {"mem_clock_mhz": d.mem_clock_mhz()},
            "temperature": lambda: {"temp_c": d.temp_c()},
            "clock event reasons": lambda: {"clock_event_reasons": d.clock_event_reasons()},
        }
        self._readers = {k: r for k, r in readers.items() if self._supported(k, r)}
        self._has_counter = self._supported("energy counter", d.energy_mj)
        self._gpm: Optional[GpmWindow] = self._open_gpm()

    def _supported(self, quantity: str, probe: Callable[[], Any]) -> bool:
        """Asks once; only "not supported" rules a quantity out (a transient error at
        this point is retried by later reads)."""
        try:
            probe()
        except NotAvailable as exc:
            self._unavailable[quantity] = str(exc)
            return False
        except TelemetryError:
            pass
        return True

    def _open_gpm(self) -> Optional[GpmWindow]:
        try:
            if not self.device.gpm_supported():
                self._unavailable["GPM"] = "this GPU has no GPM (Hopper and newer have it)"
                return None
            if self._peak_bw_gbs is None:
                self._unavailable["GPM"] = "the GPU's peak memory bandwidth is unknown"
                return None
            return self.device.gpm_window()
        except TelemetryError as exc:
            self._unavailable["GPM"] = str(exc)
            return None

    def read(self) -> Dict[str, Any]:
        values: Dict[str, Any] = {}
        failure: Optional[TelemetryError] = None
        for quantity, reader in list(self._readers.items()):
            try:
                values.update(reader())
            except NotAvailable as exc:  # stopped being supported: say so, stop asking
                self._unavailable[quantity] = str(exc)
                del self._readers[quantity]
            except TelemetryError as exc:
                failure = failure or exc
                self._read_errors += 1
        if failure is not None and not values:
            raise failure
        return values

    def energy_mj(self) -> Optional[float]:
        if not self._has_counter:
            return None
        try:
            return float(self.device.energy_mj())
        except NotAvailable as exc:
            self._unavailable["energy counter"] = str(exc)
            self._has_counter = False
            return None

    def begin_window(self) -> None:
        if self._gpm is not None:
            self._gpm.begin()

    def end_window(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        columns: Dict[str, Any] = {}
        reasons = [s["clock_event_reasons"] for s in samples
                   if s.get("clock_event_reasons") is not None]
        flag = throttled(reasons)
        if flag is not None:
            columns["throttled"] = flag
        names = throttle_names(reasons)
        if names is not None:  # what --on-throttle acts on (measure/thermal.py)
            columns["throttle_reasons"] = names
        bw = self._gpm_bw_gbs() if self._gpm is not None else None
        if bw is not None:
            columns.update(mem_bw_gbs=bw, mem_bw_source="gpm")
        elif self._peak_bw_gbs is not None:
            utils = [s["mem_util_pct"] for s in samples if s.get("mem_util_pct") is not None
                     and s.get("sample_kind") != "trial_begin"]
            if utils:
                columns.update(mem_bw_gbs=sum(utils) / len(utils) / 100.0 * self._peak_bw_gbs,
                               mem_bw_source="util_estimate")
        return columns

    def _gpm_bw_gbs(self) -> Optional[float]:
        try:
            return self._gpm.end_dram_bw_pct() / 100.0 * self._peak_bw_gbs
        except NotAvailable as exc:
            self._unavailable["GPM"] = str(exc)
            self._gpm.close()
            self._gpm = None
        except TelemetryError:
            self._read_errors += 1
        return None

    def unavailable(self) -> Dict[str, str]:
        return dict(self._unavailable)

    def temperature_c(self) -> Optional[float]:
        if "temperature" not in self._readers:
            return None
        return float(self.device.temp_c())

    def gpu_state(self, own_pid: Optional[int] = None) -> GpuState:
        """The watched GPU's state now (call it before measuring): other processes,
        persistence mode, application clocks; see gpu_state.py."""
        name = f"GPU {self.device_index}"
        if self.device_index != self.device.index:
            name += f" (NVML index {self.device.index})"
        return read_gpu_state(self.device, name, own_pid)

    def notes(self) -> Dict[str, Any]:
        return {
            "device": {"index": self.device_index, "nvml_index": self.device.index,
                       "name": self._facts.get("name"), "uuid": self._facts.get("uuid")},
            "power_source": self.device.power_source,
            "peak_mem_bw_gbs": self._peak_bw_gbs,
            "mem_bw_source": "gpm" if self._gpm is not None else (
                "util_estimate" if self._peak_bw_gbs is not None else None),
            "partial_read_errors": self._read_errors,
        }

    def environment(self) -> Dict[str, Any]:
        env = {k: v for k, v in self._driver.items() if k != "unavailable"}
        if self._fingerprint is None:  # the GPU's part of the run's fingerprint, read once
            self._fingerprint = gpu_fingerprint(self.device)  # (before measuring)
        return {**env, "gpu": self._facts, "gpu_fingerprint": self._fingerprint}

    def close(self) -> None:
        if self._gpm is not None:
            self._gpm.close()
            self._gpm = None
        self.nvml.close()


def open_nvml_source(device_index: int, uuid: Optional[str] = None,
                     env: Mapping[str, str] = os.environ) -> NvmlSource:
    """NVML opened and the run's GPU found. Raises TelemetryUnavailable (no driver,
    init failed, no such GPU: the message lists the GPUs there are)."""
    nvml = Nvml()
    try:
        device = select_device(nvml, device_index, uuid, env)
        return NvmlSource(nvml, device, device_index)
    except BaseException:
        nvml.close()
        raise
