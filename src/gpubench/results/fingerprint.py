"""A run's fingerprint (run.json's `fingerprint`): what besides the code under test can
move its performance, in one flat record, so that compare can say what differs between
two sides (results/fingerprint_diff.py) and `gpubench env` can show the same record.

Derived, not collected again: the software part comes from the run's environment (the
backend's framework, its CUDA build and cuDNN; NVML's driver and CUDA driver versions),
the host part from machine.py's facts (kernel, CPU governor, CPU model), the GPU part
from telemetry/nvml_fingerprint.py (VBIOS, PCIe link, power limits, ECC, memory
repairs, MIG, persistence, clocks), read through the NVML session the run's sampler
already holds. Nothing here imports a framework: cuDNN and NCCL versions the backend
did not report are read from package metadata (the nvidia-cudnn-cu*/nvidia-nccl-cu*
wheels a pip-installed framework loads), labelled so under `sources`.

A value not known is None: with its reason under `unavailable` where a query failed. A
CPU run (no GPU watched through NVML) has the software and host keys only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Mapping, Optional, Tuple

FINGERPRINT_VERSION = 1

SOFTWARE_KEYS = ("driver_version", "cuda_driver_version", "cuda_runtime_version",
                 "cudnn_version", "nccl_version", "framework")
HOST_KEYS = ("cpu_governor", "kernel", "cpu_model")
# The GPU part's keys (telemetry/nvml_fingerprint.py GPU_KEYS; a test holds them equal).
GPU_KEYS = ("vbios_version", "pcie_gen", "pcie_gen_max", "pcie_width", "pcie_width_max",
            "power_limit_w", "default_power_limit_w", "ecc_mode", "ecc_mode_pending",
            "ecc_volatile_corrected", "ecc_volatile_uncorrected", "ecc_aggregate_corrected",
            "ecc_aggregate_uncorrected", "retired_pages_sbe", "retired_pages_dbe",
            "retired_pages_pending", "remapped_rows_corrected", "remapped_rows_uncorrected",
            "remapped_rows_pending", "remapped_rows_failure", "mig_mode", "mig_mode_pending",
            "persistence_mode", "max_sm_clock_mhz", "max_mem_clock_mhz", "app_sm_clock_mhz",
            "app_mem_clock_mhz")
KEYS = SOFTWARE_KEYS + GPU_KEYS + HOST_KEYS
NO_GPU = "no GPU watched through NVML (a CPU run, or --telemetry cpu/none)"
# pip wheels of the libraries a framework loads (newest CUDA first)
WHEELS = {"cudnn_version": ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11"),
          "nccl_version": ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11")}


def cudnn_text(version: Any) -> Optional[str]:
    """cuDNN's version as "9.1.0": torch reports an integer (90100 for 9.1.0, 8902 for
    8.9.2), a wheel "9.1.0.70"."""
    if version is None or str(version).strip() == "":
        return None
    text = str(version).strip()
    if text.isdigit():
        v = int(text)
        major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
        return f"{major}.{rest // 100}.{rest % 100}"
    return ".".join(text.split(".")[:3])


def _wheel_version(distributions: Tuple[str, ...]) -> Optional[str]:
    """The version of the first of `distributions` installed, from its .dist-info
    folder's name (one listing of each sys.path folder: importlib.metadata's lookup of a
    missing distribution scans them all, ~10 ms a name)."""
    installed = _dist_infos()
    for name in distributions:
        version = installed.get(name.replace("-", "_").lower())
        if version is not None:
            return version
    return None


@lru_cache(maxsize=1)
def _dist_infos() -> Dict[str, str]:
    """normalised distribution name -> version, of the nvidia-* wheels on sys.path."""
    import os
    import sys

    found: Dict[str, str] = {}
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in names:
            if entry.startswith("nvidia_") and entry.endswith(".dist-info") and "-" in entry:
                name, version = entry[:-len(".dist-info")].rsplit("-", 1)
                found.setdefault(name.lower(), version)
    return found


def software_part(env: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The software keys from a run's environment, and where each version not reported
    by the backend or NVML came from."""
    framework = env.get("framework")
    version = env.get("framework_version")
    found: Dict[str, Any] = {
        "driver_version": env.get("driver_version"),
        "cuda_driver_version": env.get("cuda_driver_version"),
        "cuda_runtime_version": env.get("cuda_version"),
        "cudnn_version": cudnn_text(env.get("cudnn_version")),
        "nccl_version": env.get("nccl_version"),
        "framework": " ".join(str(p) for p in (framework, version) if p) or None,
    }
    sources: Dict[str, str] = {}
    for key, wheels in WHEELS.items():
        if found[key] is None:
            wheel = _wheel_version(wheels)
            if wheel is not None:
                found[key] = cudnn_text(wheel) if key == "cudnn_version" else wheel
                sources[key] = "package metadata (the framework did not report it)"
    return found, sources


def assemble(env: Mapping[str, Any], gpu: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The fingerprint of a run (or of this machine, for `gpubench env`) from its
    environment (machine.machine_environment() and the backend's and NVML's facts) and
    its GPU part (nvml_fingerprint.gpu_fingerprint; None: no GPU watched)."""
    software, sources = software_part(env)
    unavailable: Dict[str, str] = dict(env.get("fingerprint_unavailable") or {})
    record: Dict[str, Any] = {"fingerprint_version": FINGERPRINT_VERSION, **software}
    if gpu is None:
        unavailable["gpu"] = NO_GPU
    else:
        record.update({key: gpu.get(key) for key in GPU_KEYS})
        unavailable.update(gpu.get("unavailable") or {})
    record.update({key: env.get(key) for key in HOST_KEYS})
    if record["cpu_governor"] is None and "cpu_governor" not in unavailable:
        unavailable["cpu_governor"] = "no cpufreq scaling governor exposed (a VM or container)"
    for key, wheels in WHEELS.items():
        if record[key] is None and key not in unavailable:
            unavailable[key] = (f"not reported by the framework, and no {wheels[1].rsplit('-', 1)[0]}"
                                f"-cu* wheel installed")
    record["unavailable"] = unavailable
    if sources:
        record["sources"] = sources
    return record


def values(fingerprint: Mapping[str, Any]) -> Dict[str, Any]:
    """The fingerprint's facts alone (KEYS present in it), without its bookkeeping."""
    return {key: fingerprint[key] for key in KEYS if key in fingerprint}
