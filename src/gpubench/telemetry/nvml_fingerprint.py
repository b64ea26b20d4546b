"""The GPU's part of a run's fingerprint (results/fingerprint.py): what NVML says about a
board that can move its performance without any code changing.

- VBIOS version;
- PCIe link: current and maximum generation and width (nvmlDeviceGetCurrPcieLink* and
  nvmlDeviceGetMaxPcieLink*, the maximum "possible with this device and system"). An
  idle GPU lowers its link generation to save power, so the generation read before a
  run may be below the maximum on a healthy board; the width does not drop that way;
- power limit: enforced and default (nvmlDeviceGetEnforcedPowerLimit,
  nvmlDeviceGetPowerManagementDefaultLimit), watts;
- ECC mode, current and pending (nvmlDeviceGetEccMode), and the total error counts,
  volatile (since the driver loaded) and aggregate (the board's life), corrected and
  uncorrected (nvmlDeviceGetTotalEccErrors);
- memory repairs: retired pages (V100 and older: nvmlDeviceGetRetiredPages per cause,
  nvmlDeviceGetRetiredPagesPendingStatus) or remapped rows (A100 and newer:
  nvmlDeviceGetRemappedRows: corrected, uncorrected, pending, failed);
- MIG mode, current and pending (nvmlDeviceGetMigMode);
- persistence mode; maximum SM and memory clocks; application clocks.

A query the GPU does not answer is None, with the reason under `unavailable` (as in
gpu_state.py), never an error.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from gpubench.telemetry.errors import TelemetryError
from gpubench.telemetry.nvml import CLOCK_GRAPHICS, CLOCK_MEM, NvmlDevice, _text

# nvml.h: nvmlMemoryErrorType_t, nvmlEccCounterType_t, nvmlPageRetirementCause_t
ERROR_TYPES = (("corrected", 0), ("uncorrected", 1))
COUNTER_TYPES = (("volatile", 0), ("aggregate", 1))
RETIREMENT_CAUSES = (("sbe", 0), ("dbe", 1))  # multiple single-bit errors, a double-bit one


def _call(device: NvmlDevice, what: str, function: str, *args: Any) -> Any:
    nv = device.nvml.pynvml
    return device.nvml.call(what, getattr(nv, function), device.handle, *args)


def vbios_version(device: NvmlDevice) -> str:
    return _text(_call(device, "VBIOS version", "nvmlDeviceGetVbiosVersion"))


def pcie_link(device: NvmlDevice) -> Dict[str, int]:
    return {"pcie_gen": int(_call(device, "PCIe generation", "nvmlDeviceGetCurrPcieLinkGeneration")),
            "pcie_gen_max": int(_call(device, "PCIe max generation",
                                      "nvmlDeviceGetMaxPcieLinkGeneration")),
            "pcie_width": int(_call(device, "PCIe width", "nvmlDeviceGetCurrPcieLinkWidth")),
            "pcie_width_max": int(_call(device, "PCIe max width", "nvmlDeviceGetMaxPcieLinkWidth"))}


def default_power_limit_w(device: NvmlDevice) -> float:
    return _call(device, "default power limit", "nvmlDeviceGetPowerManagementDefaultLimit") / 1000.0


def ecc_mode(device: NvmlDevice) -> Dict[str, bool]:
    current, pending = _call(device, "ECC mode", "nvmlDeviceGetEccMode")
    return {"ecc_mode": bool(current), "ecc_mode_pending": bool(pending)}


def ecc_errors(device: NvmlDevice) -> Dict[str, int]:
    return {f"ecc_{counter}_{error}": int(_call(device, "ECC errors", "nvmlDeviceGetTotalEccErrors",
                                                error_code, counter_code))
            for counter, counter_code in COUNTER_TYPES for error, error_code in ERROR_TYPES}


def retired_pages(device: NvmlDevice) -> Dict[str, Any]:
    pages: Dict[str, Any] = {f"retired_pages_{cause}": len(_call(
        device, "retired pages", "nvmlDeviceGetRetiredPages", code))
        for cause, code in RETIREMENT_CAUSES}
    pages["retired_pages_pending"] = bool(_call(device, "retired pages pending",
                                                "nvmlDeviceGetRetiredPagesPendingStatus"))
    return pages


def remapped_rows(device: NvmlDevice) -> Dict[str, Any]:
    corrected, uncorrected, pending, failure = _call(device, "remapped rows",
                                                     "nvmlDeviceGetRemappedRows")
    return {"remapped_rows_corrected": int(corrected),
            "remapped_rows_uncorrected": int(uncorrected),
            "remapped_rows_pending": bool(pending), "remapped_rows_failure": bool(failure)}


def mig_mode(device: NvmlDevice) -> Dict[str, bool]:
    current, pending = _call(device, "MIG mode", "nvmlDeviceGetMigMode")
    return {"mig_mode": bool(current), "mig_mode_pending": bool(pending)}


def app_clocks(device: NvmlDevice) -> Dict[str, int]:
    return {"app_sm_clock_mhz": device.applications_clock_mhz(CLOCK_GRAPHICS),
            "app_mem_clock_mhz": device.applications_clock_mhz(CLOCK_MEM)}


# (the keys a query fills, the query): each key None with the reason when it fails
QUERIES: Tuple[Tuple[Tuple[str, ...], Callable[[NvmlDevice], Any]], ...] = (
    (("vbios_version",), vbios_version),
    (("pcie_gen", "pcie_gen_max", "pcie_width", "pcie_width_max"), pcie_link),
    (("power_limit_w",), NvmlDevice.power_limit_w),
    (("default_power_limit_w",), default_power_limit_w),
    (("ecc_mode", "ecc_mode_pending"), ecc_mode),
    (tuple(f"ecc_{c}_{e}" for c, _ in COUNTER_TYPES for e, _ in ERROR_TYPES), ecc_errors),
    (("retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"), retired_pages),
    (("remapped_rows_corrected", "remapped_rows_uncorrected", "remapped_rows_pending",
      "remapped_rows_failure"), remapped_rows),
    (("mig_mode", "mig_mode_pending"), mig_mode),
    (("persistence_mode",), NvmlDevice.persistence_mode),
    (("max_sm_clock_mhz",), NvmlDevice.max_sm_clock_mhz),
    (("max_mem_clock_mhz",), NvmlDevice.max_mem_clock_mhz),
    (("app_sm_clock_mhz", "app_mem_clock_mhz"), app_clocks),
)
GPU_KEYS = tuple(key for keys, _ in QUERIES for key in keys)


def gpu_fingerprint(device: NvmlDevice) -> Dict[str, Any]:
    """`device`'s part of the fingerprint: GPU_KEYS, each None with the reason under
    `unavailable` where NVML does not answer (a board without ECC, retired pages on an
    A100, an old driver)."""
    found: Dict[str, Any] = {}
    unavailable: Dict[str, str] = {}
    for keys, query in QUERIES:
        try:
            value: Optional[Any] = query(device)
        except TelemetryError as exc:
            for key in keys:
                found[key] = None
                unavailable[key] = str(exc)
            continue
        if len(keys) == 1:
            found[keys[0]] = value
        else:
            found.update({key: value[key] for key in keys})
    found["unavailable"] = unavailable
    return found
