"""The run-to-run noise compare assumes for two separately invoked runs when nothing
measured it: a stated default per device class, with where the figure came from.

Two runs of one process each hold nothing that measures how far a run's median moves
from one invocation to the next (clocks, memory placement, a neighbour, the machine's
state of that minute); their trials measure only the noise within a run. compare's floor
for such a pair is, in this order: the history's (`--noise-from`), the runs' own processes
(4 or more a side: unit process or run), else the prior below for the rows' device class
(results/compare.py). The figure is the robust CV of per-run medians
(compare_stats.noise_floor), as `benchmarks/run_to_run_noise.py` measures it.

Only the CPU figure can be measured on this project's machines; no GPU class has been
measured. A GPU row therefore uses the CPU figure as a stand-in, and its note says so:
a figure is never invented for a device nobody measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

import pandas as pd

# The run-to-run noise of separate default runs of the MNIST MLP on torch-cpu, measured
# by benchmarks/run_to_run_noise.py on this project's 2-core CPU machine, quiet, on
# 2026-12-07: 7 runs at 11:40 (robust CV 2.7%) and 20 runs at 12:10 (2.7%, 95% interval
# 1.2-4.5%); the two sessions' levels were 14% apart (about 101,000 against 87,600
# samples/s), and over all 27 runs the figure is 4.8%. Separate runs are rarely
# back-to-back (a nightly against last week's), so the prior is the figure across
# sessions.
CPU_RUN_TO_RUN_NOISE = 0.048
CPU_SOURCE = ("measured: benchmarks/run_to_run_noise.py, 27 separate default runs of mnist on "
              "torch-cpu in two sessions 30 min apart (2-core CPU machine, 2026-12-07)")

# Two separate runs each carry run-to-run noise sigma, so their ratio spreads by
# sqrt(2) sigma; a change is called between them only past 1.96 x sqrt(2) = 2.77 sigma,
# which keeps A/A false alarms at about 5% for one process a side (1.5 sigma, the
# multiple used where units measure the noise, would call about 29% of A/A pairs).
SEPARATE_RUNS_MULTIPLE = round(1.96 * math.sqrt(2), 1)  # 2.8

GPU_CLASSES = ("H200", "H100", "A100", "V100")  # matched in this order in device_name
GENERIC_GPU = "gpu"
CPU = "cpu"
READS = ("backend", "device_name")  # what prior_for reads of a side's rows


@dataclass(frozen=True)
class NoisePrior:
    device_class: str
    noise: float  # robust CV of per-run medians, as a fraction (0.03 = 3%)
    measured: bool  # False: the CPU figure stands in
    source: str


def priors() -> Dict[str, NoisePrior]:
    """Every device class's prior (read at call time: CPU_RUN_TO_RUN_NOISE is the one
    figure, and a test may set it)."""
    cpu = NoisePrior(CPU, CPU_RUN_TO_RUN_NOISE, True, CPU_SOURCE)
    stand_ins = {c: NoisePrior(c, CPU_RUN_TO_RUN_NOISE, False,
                               f"not measured for {c}: the cpu figure stands in")
                 for c in GPU_CLASSES + (GENERIC_GPU,)}
    return {CPU: cpu, **stand_ins}


def device_class(backend: object, device_name: object) -> str:
    """`cpu` for a CPU backend's rows (torch-cpu, tf-cpu, onnxruntime-cpu), a GPU class
    named in the device name (H100, A100, ...), else the generic `gpu`."""
    if "cpu" in str(backend).lower():
        return CPU
    name = str(device_name).upper()
    return next((c for c in GPU_CLASSES if c in name), GENERIC_GPU)


def prior_for(frames: Iterable[pd.DataFrame]) -> NoisePrior:
    """The prior of the rows' device classes (the largest noise, the measured one first,
    when the rows hold several)."""
    classes = set()
    for frame in frames:
        if len(frame):
            backends = frame["backend"] if "backend" in frame.columns else pd.Series([""] * len(frame))
            names = frame["device_name"] if "device_name" in frame.columns else pd.Series([""] * len(frame))
            classes.update(device_class(b, n) for b, n in zip(backends, names))
    table = priors()
    found = [table[c] for c in sorted(classes)] or [table[GENERIC_GPU]]
    return max(found, key=lambda p: (p.noise, p.measured))


def prior_table() -> Tuple[Tuple[str, float, str], ...]:
    """(device class, noise, source) for each prior: what docs/compare.md shows."""
    return tuple((p.device_class, p.noise, p.source) for p in priors().values())
