"""The `throughput` scenario: warm up, calibrate, and time back-to-back steps in
trials (the protocol of measure/protocol.py); one row per kept trial with samples/s,
TFLOP/s and MFU, per-step latency percentiles in infer mode, the trial's telemetry,
and whether it ran under contention (telemetry/contention.py)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from gpubench.measure.protocol import TrialResult, measure
from gpubench.measure.thermal import throttle_warnings
from gpubench.measure.scenarios.base import RecompileWatch, Scenario, ScenarioContext
from gpubench.results.schema import MEASURED_COLUMNS
from gpubench.telemetry.contention import ContentionWatch


def loss_check(first: Optional[float], last: Optional[float]) -> Dict[str, Any]:
    """Whether training ran the right way. On resident synthetic batches the loss
    soon reaches ~0 (the model memorises them, whatever the labels), so its value says
    nothing about accuracy; that it fell from the first step says the step trains."""
    known = first is not None and last is not None and np.isfinite([first, last]).all()
    return {"first_step": first, "last_trial": last,
            "fell": bool(last < first) if known else None}


def percentiles_ms(latencies_s: Optional[np.ndarray]) -> Dict[str, float]:
    if latencies_s is None or len(latencies_s) == 0:
        return {}
    p50, p90, p99 = np.percentile(latencies_s, [50, 90, 99]) * 1e3
    return {"latency_p50_ms": p50, "latency_p90_ms": p90, "latency_p99_ms": p99}


class ThroughputScenario(Scenario):
    name = "throughput"
    # the global_* columns are the run record's (it adds up the ranks' rows)
    columns = tuple(c for c in MEASURED_COLUMNS if c not in ("status", "error"))
    ranked = True

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        req = ctx.request
        protocol = replace(req.protocol, record_latency=req.mode == "infer")
        last_loss: List[Optional[float]] = [None]
        # Contention readings around each trial, whatever the telemetry (contention.py).
        watch = ContentionWatch(ctx.sampler, on_gpu=ctx.step.device.kind == "cuda")

        graphs = RecompileWatch(ctx.step)

        def progress(event: str, **fields: Any) -> None:
            if event == "trial":  # the estimate the coming trial is sized by
                watch.expect(fields.get("seconds_per_iteration"))
                graphs.before_trial()
            ctx.progress(event, **fields)

        def on_trial(result: TrialResult) -> None:
            graphs.after_trial(result.trial)
            last_loss[0] = result.loss
            row = self.trial_row(ctx, result)
            row["contended"] = watch.trial_verdict(result.trial, result.iterations,
                                                   result.duration_s)
            ctx.emit(row)

        calibration, stop = measure(ctx.step, protocol, on_trial, watch, progress, ctx.ranks)
        extra: Dict[str, Any] = {"calibration": asdict(calibration),
                                 "contention": watch.record(),
                                 "warnings": watch.warnings()
                                 + throttle_warnings(calibration.throttle)}
        compiled = graphs.record()  # a compiled step: whether any trial recompiled
        if compiled:
            extra["recompiled_trials"] = compiled["recompiled_trials"]
            extra["warnings"] += compiled["warnings"]
        if protocol.record_latency:
            extra["latency_timing"] = ("separate_pass" if ctx.step.latency_timing_syncs
                                       else "in_trial")
        if req.mode == "train":
            extra["loss"] = loss_check(calibration.first_loss, last_loss[0])
            if extra["loss"]["fell"] is False:
                extra["warnings"] += [
                    f"the training loss did not fall ({extra['loss']['first_step']:.4g} at the "
                    f"first step, {extra['loss']['last_trial']:.4g} after the last trial): "
                    "the step may not be training"]
        return stop, extra

    @staticmethod
    def trial_row(ctx: ScenarioContext, result: TrialResult) -> Dict[str, Any]:
        mode, precision = ctx.request.mode, ctx.request.precision
        stats = ctx.workload.stats
        tokens = ctx.workload.tokens_per_sample  # token models: the sequence
        samples = result.iterations * ctx.batch_size
        tflops = stats.flops_per_sample(mode) * samples / result.duration_s / 1e12
        row = {"trial": result.trial, "iterations": result.iterations, "samples": samples,
               "duration_s": result.duration_s,
               "throughput_samples_per_s": samples / result.duration_s, "tflops": tflops,
               "tokens_per_s": (samples * tokens / result.duration_s) if tokens else None,
               "mfu": tflops / ctx.peak_tflops if ctx.peak_tflops else None,
               "peak_mem_bytes": ctx.step.peak_mem_bytes(), "loss": result.loss}
        row.update(percentiles_ms(result.latencies_s))
        row.update(result.telemetry)
        row.update(result.thermal)  # excluded, start_temp_c, cooldown_s (measure/thermal.py)
        if row.get("mem_bw_gbs") is None:  # no measured bandwidth: the workload's own bytes
            dtype_bytes = 2 if precision in ("fp16", "bf16") else 4
            moved = stats.bytes_per_step(ctx.batch_size, mode, dtype_bytes)
            row.update(mem_bw_gbs=moved * result.iterations / result.duration_s / 1e9,
                       mem_bw_source="analytic")
        energy = row.get("energy_j")
        if energy:
            row["samples_per_joule"] = samples / energy
        return row
