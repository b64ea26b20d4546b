"""The `collective` scenario: a collective workload (workloads/collectives.py) swept
over its message sizes in one run of ranks, each size measured by the ordinary
protocol (warm-up, calibration, trials; measure/protocol.py keeps the ranks in step and
times every trial on rank 0's clock). One row per size, trial and rank, with the size
(`message_bytes`, an identity column, so that summaries, compare and history take
each size apart) and nccl-tests' figures:

    algbw_gbs = message_bytes x operations / seconds / 1e9
    busbw_gbs = algbw_gbs x the bus factor (2(n-1)/n all-reduce, (n-1)/n all-gather)

`throughput_samples_per_s` counts operations (one operation is one sample here)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Dict, List, Tuple

from gpubench.measure.protocol import TrialResult, measure
from gpubench.measure.scenarios.base import Scenario, ScenarioContext
from gpubench.telemetry import TRIAL_TELEMETRY_COLUMNS
from gpubench.workloads.collectives import bus_factor


class CollectiveScenario(Scenario):
    name = "collective"
    needs = frozenset({"run", "collective"})
    columns = (("message_bytes", "trial", "iterations", "duration_s",
                "throughput_samples_per_s", "algbw_gbs", "busbw_gbs",
                "peak_mem_bytes", "excluded", "start_temp_c", "cooldown_s")
               + tuple(TRIAL_TELEMETRY_COLUMNS))
    ranked = True
    collective = True

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        step, workload = ctx.step, ctx.workload
        factor = bus_factor(workload.collective, ctx.ranks.world_size)
        protocol = replace(ctx.request.protocol, record_latency=False)
        sizes: List[Dict[str, Any]] = []
        stop = None
        for asked in workload.message_sizes:
            size = step.set_message_bytes(asked)
            ctx.progress("message", message_bytes=size)

            def on_trial(result: TrialResult, size: int = size) -> None:
                algbw = size * result.iterations / result.duration_s / 1e9
                ctx.emit({"message_bytes": size, "trial": result.trial,
                          "iterations": result.iterations, "duration_s": result.duration_s,
                          "throughput_samples_per_s": result.iterations / result.duration_s,
                          "algbw_gbs": algbw, "busbw_gbs": algbw * factor,
                          "peak_mem_bytes": step.peak_mem_bytes(), **result.telemetry,
                          **result.thermal})

            calibration, stop = measure(step, protocol, on_trial, ctx.sampler, ctx.progress,
                                        ctx.ranks)
            sizes.append({"message_bytes": size, "stop_reason": stop,
                          "calibration": asdict(calibration)})
        return stop, {"collective": {"op": workload.collective, "bus_factor": factor,
                                     "sizes": sizes}}
