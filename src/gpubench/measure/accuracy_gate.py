"""The accuracy gate (`--check-accuracy`): before an inference run is timed, the
backend's model and fp32 PyTorch on the CPU, both holding the same starting weights
(models/init_weights.py), run the same inputs; their outputs must agree within the
precision's tolerance, or every row of the run says accuracy_ok=false. A fast engine
or a low precision that computes something else is then visible beside its speed.

Inputs: the first GATE_SAMPLES real test images with `--data mnist`, else synthetic
inputs of the workload drawn with the run's seed. The comparison itself
(`compare_outputs`) is a pure function of two output arrays.

Tolerances (TOLERANCES): top-1 agreement at least `min_top1`, and the largest absolute
difference of any output at most `rel_max_abs` x the largest absolute reference output.
fp32 must match to rounding; tf32 and fp16 keep ~10 mantissa bits (~1e-3 relative a
product, more after sums); bf16 keeps 7 (~8e-3), so its bound is the loosest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import numpy as np

from gpubench.backends import Step, StepConfig, get_backend
from gpubench.errors import Unsupported
from gpubench.workloads import Workload

GATE_SAMPLES = 1000  # test images (or synthetic samples) both models run
# Outputs kept a side, at most: a language model's sample is seq x vocab outputs (GPT-2
# small: 51M), so it gets fewer samples (at least one).
GATE_OUTPUT_ELEMS = 1 << 24
REFERENCE_BACKEND = "torch-cpu"


@dataclass(frozen=True)
class Tolerance:
    min_top1: float  # the fraction of samples whose top-1 class must agree
    rel_max_abs: float  # max |out - ref| over max |ref|


TOLERANCES = {
    "fp32": Tolerance(0.999, 1e-4),
    "tf32": Tolerance(0.99, 1e-2),
    "fp16": Tolerance(0.99, 1e-2),
    "bf16": Tolerance(0.98, 5e-2),
}


def compare_outputs(reference: np.ndarray, outputs: np.ndarray, precision: str) -> Dict[str, Any]:
    """Top-1 agreement and the largest absolute difference of two [N, classes] output
    arrays (or [N, ..., classes]: top-1 per position, a language model's per token), and
    whether they are within the precision's tolerance."""
    reference = np.asarray(reference, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    if reference.shape != outputs.shape:
        raise ValueError(f"outputs of shape {outputs.shape} against reference {reference.shape}")
    if reference.ndim > 2:
        reference = reference.reshape(-1, reference.shape[-1])
        outputs = outputs.reshape(-1, outputs.shape[-1])
    tolerance = TOLERANCES[precision]
    top1 = float(np.mean(reference.argmax(axis=1) == outputs.argmax(axis=1)))
    diff = np.abs(outputs - reference)
    max_abs = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    scale = float(np.abs(reference).max()) or 1.0
    ok = top1 >= tolerance.min_top1 and max_abs <= tolerance.rel_max_abs * scale
    return {"top1_agreement": top1, "max_abs_diff": max_abs, "accuracy_ok": bool(ok),
            "reference_max_abs": scale, "tolerance": asdict(tolerance),
            "samples": int(reference.shape[0])}


def gate_samples(workload: Workload) -> int:
    """How many samples the gate runs: GATE_SAMPLES, fewer for large outputs."""
    per_sample = int(np.prod(workload.stats.output_shape))
    return max(1, min(GATE_SAMPLES, GATE_OUTPUT_ELEMS // per_sample))


def gate_inputs(workload: Workload, data: str, data_dir: Any, seed: int) -> Tuple[np.ndarray, str]:
    """The inputs both models run, in the description's layout, and what they are."""
    if data != "synthetic":
        from gpubench.data.sources import labelled_data
        test_x = labelled_data(data, data_dir).test_x
        return np.ascontiguousarray(test_x[:GATE_SAMPLES]), f"the first {min(len(test_x), GATE_SAMPLES)} {data} test images"
    from gpubench.data.synthetic import make_batches
    n = gate_samples(workload)
    x, _ = make_batches(workload, n, 1, seed + 1)[0]
    return x, f"{n} synthetic samples (seed {seed + 1})"


def reference_outputs(workload: Workload, x: np.ndarray, seed: int) -> np.ndarray:
    """fp32 PyTorch on the CPU, from the same starting weights."""
    backend = get_backend(REFERENCE_BACKEND)
    available, why = backend.is_available()
    if not available:
        raise Unsupported(f"--check-accuracy compares with fp32 {REFERENCE_BACKEND}, which is "
                          f"not available in this environment: {why}")
    step = backend.prepare(workload, StepConfig("infer", "fp32", min(len(x), 256), seed=seed,
                                                data_batches=1, reference_init=True))
    try:
        return step.predict(x)
    finally:
        step.close()


def check_accuracy(step: Step, workload: Workload, precision: str, data: str, data_dir: Any,
                   seed: int) -> Dict[str, Any]:
    """Runs the gate on a prepared step: run.json's record of it (the row columns
    top1_agreement, max_abs_diff and accuracy_ok among them)."""
    x, described = gate_inputs(workload, data, data_dir, seed)
    result = compare_outputs(reference_outputs(workload, x, seed), step.predict(x), precision)
    return {**result, "inputs": described, "reference": f"{REFERENCE_BACKEND} fp32",
            "precision": precision}


def check_exec(eager: np.ndarray, outputs: np.ndarray, precision: str,
               exec_mode: str) -> Dict[str, Any]:
    """A non-eager exec mode's outputs (or, training under CUDA graphs, its first
    replayed loss) on the step's first batch against eager PyTorch's on the same
    weights (TorchBench's --accuracy), judged by the precision's tolerance."""
    result = compare_outputs(eager, outputs, precision)
    return {**result, "inputs": "the step's first batch", "reference": "eager",
            "exec": exec_mode, "precision": precision}
