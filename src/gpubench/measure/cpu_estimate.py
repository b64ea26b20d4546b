"""Before a run on a CPU: roughly how long one step takes, from the workload's FLOPs
(workloads describe them) and this CPU's measured matrix-multiply rate, so that a
default-size transformer (gpt: about 7 TFLOP a training step) is not started without
a word; a run that then times out said nothing but "last output:". A warning, never a
refusal: the estimate is a floor (attention, normalisation and the optimizer run below
the matmul rate)."""

from __future__ import annotations

import time
from typing import Any, Optional

from gpubench.errors import UserError
from gpubench.measure.protocol import MIN_WARMUP_STEPS

SLOW_STEP_S = 1.0  # a step estimated longer than this is said before the run starts
# Below this many FLOPs a step is not slow on any CPU (1 GFLOP/s would be ~1 s): the
# rate is then not even measured.
MIN_FLOPS_PER_STEP = 1e9
MATMUL_N = 256  # the measured product: float32 n x n by n x n, 2 n^3 FLOPs
MEASURE_S = 0.05


def cpu_gflops() -> float:
    """This CPU's float32 matmul rate, GFLOP/s (numpy's BLAS, the fastest of a few
    repetitions over about MEASURE_S)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    a @ a  # the first call loads and sizes the BLAS threads
    best = float("inf")
    until = time.perf_counter() + MEASURE_S
    while time.perf_counter() < until or best == float("inf"):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return 2 * MATMUL_N ** 3 / max(best, 1e-9) / 1e9


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def step_flops(req: Any, plan: Any) -> float:
    """FLOPs of one protocol step: a batch's, or in --mode generate one batch generated
    (its prefill and every decode step)."""
    if req.mode != "generate":
        return plan.workload.stats.flops_per_sample(req.mode) * plan.batch_size
    from gpubench.measure.generation.plan import generation_work, resolved_lengths
    prompt_len, output_len = resolved_lengths(req, plan.workload)
    work = generation_work(plan.workload, req.precision, plan.batch_size, prompt_len, output_len)
    return work.prefill_flops + work.decode_flops_per_token * plan.batch_size * (output_len - 1)


def slow_step_warning(req: Any, plan: Any, timeout_s: Optional[float] = None,
                      rate_gflops: Optional[float] = None) -> Optional[str]:
    """The warning for a run (its request and preflight; --timeout) whose step on a CPU
    backend is estimated to take SLOW_STEP_S or more here; None otherwise.
    `rate_gflops`: the CPU's rate (default: measured now)."""
    if plan.backend.device_kind != "cpu":
        return None
    per_step = step_flops(req, plan)
    if per_step < MIN_FLOPS_PER_STEP:
        return None
    rate = cpu_gflops() if rate_gflops is None else rate_gflops
    step_s = per_step / (rate * 1e9)
    if step_s < SLOW_STEP_S:
        return None
    trials = req.protocol.trials * req.processes
    steps = 1 + MIN_WARMUP_STEPS + trials  # a trial is a step at least
    least_s = step_s * steps
    over = (f", past --timeout {timeout_s:g} s" if timeout_s is not None and least_s > timeout_s
            else "")
    return (f"{plan.workload.name} (batch {plan.batch_size}, {req.mode}) on {plan.backend.name}: "
            f"a step takes {_duration(step_s)} or more here ({per_step / 1e9:,.0f} GFLOP a "
            f"step, this CPU multiplies matrices at {rate:,.0f} GFLOP/s); warm-up and "
            f"{trials} trials take at least {steps} steps, "
            f"{_duration(least_s)}{over}. A smaller model or batch runs faster: --batch-size, "
            "-p (gpubench list shows each workload's parameters)")


def cpu_step_warning(req: Any, timeout_s: Optional[float] = None) -> Optional[str]:
    """slow_step_warning for a request, after this interpreter's preflight; None when
    preflight refuses it here (the launcher's preflight says why)."""
    from gpubench.measure.preflight import preflight

    try:
        plan = preflight(req)
    except UserError:
        return None
    return slow_step_warning(req, plan, timeout_s)
