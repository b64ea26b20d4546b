"""The `time-to-accuracy` scenario (MLPerf Training's headline metric): train on the real
training set epoch by epoch, evaluate on the test set after each epoch, and stop at the
target test accuracy or after `max_epochs`.

Timing: an epoch's clock runs from its first step to the device synchronised after its
last, batches shuffled on the host and moved to the device inside it, as a training
loop does; there is no warm-up, so the first epoch carries start-up costs (a real
training run pays them too). Evaluation is timed apart (`eval_s`) and not counted in
`time_to_accuracy_s`; MLPerf's rules count it, and `elapsed_s` (training and
evaluation since the start) gives that figure. Energy is the telemetry's over the
training epochs (the NVML counter; RAPL or nothing on a CPU).

One row per epoch; the run's last row carries the result (`time_to_accuracy_s`,
`energy_to_accuracy_j`, `epochs_to_accuracy`, `reached`).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

from gpubench.measure.scenarios.base import Scenario, ScenarioContext
from gpubench.measure.scenarios.time_to_accuracy_options import DEFAULT_MAX_EPOCHS

STOP_TARGET_REACHED = "target_reached"
STOP_MAX_EPOCHS = "max_epochs"

clock = time.perf_counter


class TimeToAccuracyScenario(Scenario):
    name = "time-to-accuracy"
    needs = frozenset({"train_epoch", "evaluate"})
    same_start_weights = True  # every backend starts from models/init_weights.py's weights
    data_pipeline = "epochs"
    columns = (
        "trial", "iterations", "samples", "duration_s", "throughput_samples_per_s",
        "power_avg_w", "energy_j", "energy_source", "samples_per_joule", "gpu_util_pct",
        "mem_util_pct", "sm_clock_mhz", "mem_bw_gbs", "mem_bw_source", "temp_c", "throttled",
        "peak_mem_bytes", "loss",
        "epoch", "train_loss", "test_accuracy", "epoch_s", "eval_s", "elapsed_s",
        "time_to_accuracy_s", "energy_to_accuracy_j", "epochs_to_accuracy", "reached",
    )

    def requested_s(self, req: Any) -> Optional[float]:
        return None  # it runs epochs until the target accuracy (or the cap)

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        req, step = ctx.request, ctx.step
        target = float(req.target_accuracy)
        max_epochs = int(req.max_epochs or DEFAULT_MAX_EPOCHS)
        started = clock()
        train_s, energy_j = 0.0, 0.0  # summed over the epochs so far
        energy_known = True
        for epoch in range(1, max_epochs + 1):
            ctx.progress("epoch", epoch=epoch, epochs=max_epochs, target=target,
                         seconds_per_epoch=train_s / (epoch - 1) if epoch > 1 else None)
            step.synchronize()
            ctx.sampler.begin_trial(epoch - 1)
            t0 = clock()
            train_loss, samples = step.train_epoch(epoch)  # synchronised
            epoch_s = clock() - t0
            telemetry = ctx.sampler.end_trial()
            t1 = clock()
            accuracy = step.evaluate()
            eval_s = clock() - t1
            train_s += epoch_s
            steps = -(-samples // ctx.batch_size)  # the last batch may be short
            if telemetry.get("energy_j") is None:
                energy_known = False
            else:
                energy_j += float(telemetry["energy_j"])
            row: Dict[str, Any] = {
                "trial": epoch - 1, "epoch": epoch, "iterations": steps, "samples": samples,
                "duration_s": epoch_s, "epoch_s": epoch_s, "eval_s": eval_s,
                "elapsed_s": clock() - started,
                "throughput_samples_per_s": samples / epoch_s, "train_loss": train_loss,
                "loss": train_loss, "test_accuracy": accuracy,
                "peak_mem_bytes": step.peak_mem_bytes(),
                **{k: v for k, v in telemetry.items() if k in self.columns}}
            if row.get("energy_j"):
                row["samples_per_joule"] = samples / row["energy_j"]
            reached = accuracy >= target
            if reached or epoch == max_epochs:
                row.update(reached=reached,
                           time_to_accuracy_s=train_s if reached else None,
                           energy_to_accuracy_j=energy_j if reached and energy_known else None,
                           epochs_to_accuracy=epoch if reached else None)
            ctx.emit(row)
            if reached:
                return STOP_TARGET_REACHED, self._extra(target, max_epochs, epoch, accuracy)
        return STOP_MAX_EPOCHS, self._extra(target, max_epochs, None, accuracy)

    @staticmethod
    def _extra(target: float, max_epochs: int, reached_at: Optional[int],
               final_accuracy: float) -> Dict[str, Any]:
        warnings = [] if reached_at else [
            f"the target test accuracy {target:g} was not reached in {max_epochs} epochs "
            f"(last: {final_accuracy:.4f}); the run's time_to_accuracy_s is empty"]
        return {"time_to_accuracy": {
            "target_accuracy": target, "max_epochs": max_epochs, "reached_at_epoch": reached_at,
            "final_test_accuracy": final_accuracy,
            "timing": "training epochs from the first step (no warm-up), the device "
                      "synchronised after each; evaluation timed apart (eval_s) and not "
                      "counted in time_to_accuracy_s (elapsed_s counts both)"},
            "warnings": warnings}
