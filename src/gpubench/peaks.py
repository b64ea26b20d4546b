"""Dense peak TFLOP/s of common NVIDIA GPUs, from NVIDIA's datasheets, for MFU
(model FLOPs utilisation = achieved TFLOP/s of the workload's analytic FLOPs / this
peak). Dense figures: the datasheets' "with sparsity" numbers are twice these.

These are vendor specifications, not measurements. A GPU missing from the table
gets an empty `mfu`, never a guess. Precision mapping: fp32 runs with TF32 off (the
CUDA-core FP32 peak); tf32, fp16 and bf16 run on the tensor cores.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

# (model name, {precision: dense peak TFLOP/s}), matched as whole words of the CUDA
# device name, first match wins: a variant comes before its family ("H200 NVL" before
# "H200", "H100 PCIe" before "H100"). An empty dict marks a variant whose figures differ
# from its family's and are not in the table (so: no MFU, not a wrong one): the NVL
# boards (PCIe, 350-600 W) have lower peaks than the SXM parts, and the V100 SXM3 and
# FHHL boards run other clocks than the SXM2 and PCIe ones.
PEAK_TFLOPS: Tuple[Tuple[str, Dict[str, float]], ...] = (
    ("H200 NVL", {}),
    ("H200", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),  # SXM
    ("H100 NVL", {}),
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),  # SXM5
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05}),
    ("L40", {"fp32": 90.5, "tf32": 90.5, "fp16": 181.05, "bf16": 181.05}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0}),
    ("V100-SXM3", {}),
    ("V100-FHHL", {}),
    ("V100S", {"fp32": 16.4, "fp16": 130.0}),
    ("V100-PCIE", {"fp32": 14.0, "fp16": 112.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),  # SXM2
)


def peak_tflops(device_name: Optional[str], precision: str) -> Optional[float]:
    """The dense peak for `precision` on the GPU called `device_name` (as CUDA names
    it, e.g. "NVIDIA A100-SXM4-80GB"), or None when the table does not know it."""
    if not device_name:
        return None
    for model, peaks in PEAK_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(model)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return peaks.get(precision)
    return None


# (model name, peak DRAM bandwidth GB/s) from NVIDIA's datasheets, matched as the TFLOP/s
# table is (first match wins; memory variants before their family). The bound of a
# memory-bound phase (decode: measure/generation/plan.py) is bytes / this. None: not known.
PEAK_MEM_BW_GBS: Tuple[Tuple[str, Optional[float]], ...] = (
    ("H200 NVL", 4800.0), ("H200", 4800.0),
    ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),  # SXM5
    ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100-PCIE-80GB", 1935.0),
    ("A100", 1555.0),  # the 40 GB boards
    ("L40S", 864.0), ("L40", 864.0), ("A10", 600.0), ("L4", 300.0),
    ("V100S", 1134.0), ("V100-SXM3", None), ("V100", 900.0),
)


def _match(device_name: Optional[str], table: Tuple[Tuple[str, Any], ...]) -> Any:
    if not device_name:
        return None
    for model, value in table:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(model)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return value
    return None


def peak_mem_bw_gbs(device_name: Optional[str]) -> Optional[float]:
    """The datasheet DRAM bandwidth of the GPU called `device_name`, None when unknown."""
    return _match(device_name, PEAK_MEM_BW_GBS)
