"""One run end to end: preflight -> prepare -> scenario -> finish. A failure after the
run folder exists becomes a row with status=failed (the run is data, not a crash); a
refusal before it (bad input, an unavailable backend) is a UserError for the CLI.

A rank of a data-parallel run (`ranks`, made by the rank launcher) runs the same path.
A failure there is raised instead: the other ranks wait in a collective for this one,
so a row written here would hang them; the rank launcher kills them all and writes the
run's failed row from the failing rank's error file."""

from __future__ import annotations

import os
import traceback
from typing import Any, Dict, List, Optional, Tuple

from gpubench.backends import Step, StepConfig
from gpubench.errors import UserError
from gpubench.measure import interrupt
from gpubench.measure.accuracy_gate import check_accuracy, check_exec
from gpubench.measure.phases import PhaseClock, enter
from gpubench.measure.protocol import STOP_FAILED, STOP_INTERRUPTED, no_progress
from gpubench.measure.preflight import Preflight, preflight
from gpubench.measure.request import RunRequest  # noqa: F401 (callers import it from here)
from gpubench.measure.run_record import RunOutcome, RunRecord
from gpubench.measure.scenarios.base import ScenarioContext
from gpubench.measure.thermal import check_thermal_request
from gpubench.ranks import SINGLE_RANK, RankContext
from gpubench.telemetry import Sampler, make_sampler, pin_cuda_device_order, pre_run_gpu_state
from gpubench.telemetry.clock_policy import row_columns
from gpubench.telemetry.gpu_state import with_gpu_state


def step_config(req: RunRequest, plan: Preflight, ranks: RankContext) -> StepConfig:
    return StepConfig(req.mode, req.precision, plan.batch_size, req.device_index,
                      req.threads, req.seed, onnx_path=req.onnx_path,
                      exec_mode=plan.exec_mode, data=req.data, data_dir=req.data_dir,
                      reference_init=plan.scenario.same_start_weights or req.check_accuracy,
                      ranks=ranks, variable_batch=plan.scenario.variable_batches)


def output_checks(req: RunRequest, plan: Preflight, step: Step, record: RunRecord) -> Dict[str, Any]:
    """The checks of a step's outputs before it is timed: a non-eager exec mode against
    eager on the same weights, and --check-accuracy against fp32 torch; their columns go
    on every row. Returns run.json's records of them, their warnings, and compile_s."""
    found: Dict[str, Any] = {"warnings": []}
    exec_check = getattr(step, "exec_check", None)
    if exec_check is not None:
        found.update(exec=plan.exec_mode, compile_s=step.compile_s)
        record.base_row["compile_s"] = step.compile_s
        result = record.output_checked("exec_check", check_exec(*exec_check, req.precision,
                                                                 plan.exec_mode))
        found["warnings"] += result.pop("warnings")
        found.update(result)
    if req.check_accuracy:
        result = record.output_checked("accuracy_check", check_accuracy(
            step, plan.workload, req.precision, req.data, req.data_dir, req.seed))
        found["warnings"] += result.pop("warnings")
        found.update(result)
    return found


def open_telemetry(req: RunRequest, step: Step, record: RunRecord) -> Tuple[Sampler, Dict[str, Any]]:
    """The sampler for the step's GPU (else --device: a CPU step watched with
    --telemetry nvml) and the GPU's state before measuring (other processes,
    persistence, clocks). A refusal leaves nothing behind."""
    sampler = None
    try:
        index = req.device_index if step.device.index is None else step.device.index
        sampler = make_sampler(req.telemetry, step.device.kind, index, req.sample_hz,
                               step.device.uuid)
        check_thermal_request(req.protocol, sampler)  # --start-below-c needs NVML's temperature
        gpu_state = pre_run_gpu_state(sampler, req.require_idle_gpu)
    except BaseException:
        if sampler is not None:
            sampler.stop()  # never started: this closes its NVML session
        step.close()
        record.writer.remove_if_empty()
        raise
    record.learned_environment(sampler.environment())  # NVML knows the driver
    # the clock policy in force: the enforced power limit, the SM clock the parent locked
    record.base_row.update(row_columns(sampler.environment().get("gpu") or {}))
    return sampler, gpu_state


def execute_run(req: RunRequest, progress=no_progress, ranks: RankContext = SINGLE_RANK,
                started: Optional[List[Tuple[str, float]]] = None) -> RunOutcome:
    """Runs one configuration and writes its folder. Raises UserError (bad input,
    unavailable backend, unsupported configuration) before anything is written;
    KeyboardInterrupt after writing what finished, also for an interrupt that a
    finalizer swallowed (measure/interrupt.py: checked at each phase and trial).
    `started`: a worker's phases before this call (launch, imports: phases.py)."""
    report = timing = PhaseClock(progress, started)
    progress = interrupt.interruptible(timing)
    cuda_device_order = pin_cuda_device_order(os.environ)  # before any framework starts CUDA
    enter(progress, "preflight")
    plan = preflight(req)
    record = RunRecord(req, plan, ranks)
    record.timed = lambda: timing.record(plan.scenario.requested_s(req))
    record.env["cuda_device_order"] = cuda_device_order
    try:
        enter(progress, "prepare")
        progress("prepare", workload=plan.workload.name, backend=plan.backend.name)
        step = plan.backend.prepare(plan.workload, step_config(req, plan, ranks))
    except (UserError, KeyboardInterrupt):
        record.writer.remove_if_empty()
        raise
    except Exception:  # a build that crashed (OOM, a framework bug) is a failed row
        if ranks.world_size > 1:
            raise
        record.failed(traceback.format_exc())
        return record.finish(STOP_FAILED, {})
    record.prepared(step)
    start_digest = step.param_digest() if ranks.ranked else None
    try:  # before timing: a check that crashes is the run's failed row
        enter(progress, "checks")
        checks = output_checks(req, plan, step, record)
        enter(progress, "telemetry")
    except (UserError, KeyboardInterrupt):
        step.close()
        record.writer.remove_if_empty()
        raise
    except Exception:
        step.close()
        if ranks.world_size > 1:
            raise
        record.failed(traceback.format_exc())
        return record.finish(STOP_FAILED, {})
    sampler, gpu_state = open_telemetry(req, step, record)
    context = ScenarioContext(step, req, plan.workload, plan.batch_size, record.peak_tflops,
                              sampler, progress, record.emit, ranks)
    stop, extra = STOP_FAILED, {"warnings": list(step.warnings) + checks.pop("warnings"),
                                "data": plan.data, **checks}

    if ranks.ranked:  # each rank's device and weights, for run.json's `ranks`
        extra.update(data_parallel=getattr(step, "parallel", None), device={
            "kind": step.device.kind, "index": step.device.index, "name": step.device.name,
            "uuid": step.device.uuid})

    def finish(stop_reason: str) -> RunOutcome:
        enter(report, "finish")
        record.write_samples(sampler.samples())
        return record.finish(stop_reason,
                             {**extra, "telemetry": with_gpu_state(sampler.notes(), gpu_state)})

    try:
        enter(progress, "scenario")
        with sampler:
            stop, found = plan.scenario.run(context)
        extra["warnings"] += found.pop("warnings", [])
        extra.update(found)
        if ranks.ranked:  # equal on every rank at the end: the gradients were reduced
            extra["params_sha256"] = {"start": start_digest, "end": step.param_digest()}
    except KeyboardInterrupt:
        if ranks.world_size > 1:  # the other ranks are stopped too; finish would wait for them
            raise
        finish(STOP_INTERRUPTED)
        raise
    except Exception:
        if ranks.world_size > 1:
            raise
        record.failed(traceback.format_exc())
    finally:
        step.close()
    if interrupt.requested():  # swallowed after the last trial's check: still an interrupt
        finish(STOP_INTERRUPTED)
        raise KeyboardInterrupt
    return finish(stop)
