"""One run end to end: resolve the workload and backend, prepare the step, measure,
and write the run folder. A failure after the folder exists becomes a row with
status=failed (the run is data, not a crash); a refusal before it (bad input, an
unavailable backend) is a UserError for the CLI."""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from gpubench.backends import MODES, PRECISIONS, Backend, Step, StepConfig, resolve_backend
from gpubench.environment import machine_environment
from gpubench.errors import UserError
from gpubench.measure.protocol import (
    STOP_FAILED, STOP_INTERRUPTED, ProtocolConfig, TrialResult, measure, no_progress,
)
from gpubench.peaks import peak_tflops
from gpubench.results.schema import SCHEMA_VERSION
from gpubench.results.summary import summarize
from gpubench.results.writer import RunWriter
from gpubench.telemetry import (
    check_request as check_telemetry_request, make_sampler, pin_cuda_device_order,
    pre_run_gpu_state,
)
from gpubench.telemetry.gpu_state import with_gpu_state
from gpubench.workloads import Workload, resolve_workload

ERROR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class RunRequest:
    workload: str
    backend: str
    mode: str = "train"
    precision: str = "fp32"
    batch_size: Optional[int] = None  # None = the workload's default
    params: Mapping[str, str] = field(default_factory=dict)
    device_index: int = 0
    threads: Optional[int] = None
    seed: int = 0
    protocol: ProtocolConfig = ProtocolConfig()  # record_latency follows from mode
    telemetry: str = "auto"
    sample_hz: float = 10.0
    out_dir: Path = Path("results")
    folder: Optional[Path] = None  # the run folder itself (suites name it); else made in out_dir
    onnx_path: Optional[str] = None  # a user's ONNX file for onnxruntime-*/tensorrt (--onnx)
    require_idle_gpu: bool = False  # refuse when other processes use the GPU (or NVML can't tell)


@dataclass
class RunOutcome:
    path: Path
    status: str  # ok | failed
    stop_reason: str
    trials: pd.DataFrame
    summary: pd.DataFrame
    error: Optional[str] = None
    telemetry: Dict[str, Any] = field(default_factory=dict)  # the sampler's notes()
    warnings: List[str] = field(default_factory=list)  # the step's and telemetry's, for the CLI


def _percentiles_ms(latencies_s: Optional[np.ndarray]) -> Dict[str, float]:
    if latencies_s is None or len(latencies_s) == 0:
        return {}
    p50, p90, p99 = np.percentile(latencies_s, [50, 90, 99]) * 1e3
    return {"latency_p50_ms": p50, "latency_p90_ms": p90, "latency_p99_ms": p99}


class _Run:
    """The state of one run while it executes (folder, identity, environment)."""

    def __init__(self, req: RunRequest, workload: Workload, backend: Backend) -> None:
        self.req, self.workload, self.backend = req, workload, backend
        self.batch_size = req.batch_size or workload.default_batch_size
        self.peak_tflops: Optional[float] = None  # known once the device is
        self.env = {**machine_environment(), **backend.environment()}
        self.writer = RunWriter(req.out_dir, self.env["host"], folder=req.folder)
        self.started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.base_row: Dict[str, Any] = {
            "run_id": self.writer.run_id, "workload": workload.name, "backend": backend.name,
            "mode": req.mode, "precision": req.precision, "batch_size": self.batch_size,
            "params": workload.params_str,
            "driver_version": self.env.get("driver_version"),
            "cuda_version": self.env.get("cuda_version"),
            "cudnn_version": self.env.get("cudnn_version"),
            "framework": self.env.get("framework"),
            "framework_version": self.env.get("framework_version"),
            "gpubench_version": self.env["gpubench_version"],
            "schema_version": SCHEMA_VERSION, "host": self.env["host"],
        }

    def prepared(self, step: Step) -> None:
        """Records what only a prepared step knows: the device, and framework settings
        that prepare() changed (threads, say)."""
        self.env.update(self.backend.environment())
        self.base_row.update(device_index=step.device.index, device_name=step.device.name,
                             device_uuid=step.device.uuid)
        self.peak_tflops = (peak_tflops(step.device.name, self.req.precision)
                            if step.device.kind == "cuda" else None)
        self.env["peak_tflops"] = self.peak_tflops  # datasheet, dense: the MFU denominator

    def trial_row(self, result: TrialResult, step: Step) -> Dict[str, Any]:
        samples = result.iterations * self.batch_size
        flops = self.workload.stats.flops_per_sample(self.req.mode) * samples
        row = {**self.base_row, "trial": result.trial, "iterations": result.iterations,
               "samples": samples, "duration_s": result.duration_s,
               "throughput_samples_per_s": samples / result.duration_s,
               "tflops": flops / result.duration_s / 1e12,
               "mfu": (flops / result.duration_s / 1e12 / self.peak_tflops
                       if self.peak_tflops else None),
               "peak_mem_bytes": step.peak_mem_bytes(), "loss": result.loss, "status": "ok"}
        row.update(_percentiles_ms(result.latencies_s))
        row.update(result.telemetry)
        if row.get("mem_bw_gbs") is None:  # no measured bandwidth: the workload's own bytes
            dtype_bytes = 2 if self.req.precision in ("fp16", "bf16") else 4
            moved = self.workload.stats.bytes_per_step(self.batch_size, self.req.mode, dtype_bytes)
            row.update(mem_bw_gbs=moved * result.iterations / result.duration_s / 1e9,
                       mem_bw_source="analytic")
        energy = row.get("energy_j")
        if energy:
            row["samples_per_joule"] = samples / energy
        return row

    def failed_row(self, error: str) -> Dict[str, Any]:
        return {**self.base_row, "trial": len(self.writer.trial_rows), "status": "failed",
                "error": error[-ERROR_TAIL_CHARS:]}

    def finish(self, stop_reason: str, extra: Mapping[str, Any]) -> RunOutcome:
        trials = self.writer.trials_frame()
        summary = summarize(trials, stop_reason)
        self.writer.write_summary(summary)
        self.writer.write_run_json({
            "schema_version": SCHEMA_VERSION, "run_id": self.writer.run_id,
            "started_utc": self.started_utc,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {**{k: v for k, v in asdict(self.req).items() if k != "protocol"},
                       "batch_size": self.batch_size, "params": dict(self.workload.params),
                       "out_dir": str(self.req.out_dir)},
            "protocol": {**asdict(self.req.protocol), "record_latency": self.req.mode == "infer"},
            "stop_reason": stop_reason,
            "workload": {"name": self.workload.name, "task": self.workload.task,
                         "input_shape": list(self.workload.input_shape),
                         "param_count": self.workload.stats.param_count,
                         "forward_flops_per_sample": self.workload.stats.forward_flops_per_sample,
                         "optimizer": self.workload.optimizer,
                         "optimizer_args": dict(self.workload.optimizer_args)},
            "environment": self.env, **extra,
        })
        status = "ok" if (trials["status"] == "ok").all() and len(trials) else "failed"
        errors = trials["error"].dropna()
        telemetry = dict(extra.get("telemetry") or {})
        return RunOutcome(self.writer.path, status, stop_reason, trials, summary,
                          errors.iloc[-1] if len(errors) else None, telemetry,
                          [*extra.get("warnings", []), *telemetry.get("warnings", [])])


def validate_request(req: RunRequest) -> None:
    if req.mode not in MODES:
        raise UserError(f"unknown mode {req.mode!r} (valid: {', '.join(MODES)})")
    if req.precision not in PRECISIONS:
        raise UserError(f"unknown precision {req.precision!r} (valid: {', '.join(PRECISIONS)})")
    if req.batch_size is not None and req.batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {req.batch_size}")
    check_telemetry_request(req.telemetry, req.sample_hz)


def preflight(req: RunRequest) -> Tuple[Workload, Backend]:
    """The checks that need no framework: bad input, an unknown or unavailable backend,
    a configuration the backend cannot run. Raises UserError (or a subclass)."""
    validate_request(req)
    workload = resolve_workload(req.workload, req.params)
    backend = resolve_backend(req.backend)
    backend.check_config(req.mode, req.precision)
    if req.onnx_path is not None and not backend.accepts_onnx:
        raise UserError(f"--onnx is for backends that run ONNX files (onnxruntime-cpu, "
                        f"onnxruntime-cuda, tensorrt); {backend.name} builds its own model")
    return workload, backend


def execute_run(req: RunRequest, progress=no_progress) -> RunOutcome:
    """Runs one configuration and writes its folder. Raises UserError (bad input,
    unavailable backend, unsupported configuration) before anything is written;
    KeyboardInterrupt after writing what finished."""
    cuda_device_order = pin_cuda_device_order(os.environ)  # before any framework starts CUDA
    workload, backend = preflight(req)
    run = _Run(req, workload, backend)
    run.env["cuda_device_order"] = cuda_device_order
    config = StepConfig(req.mode, req.precision, run.batch_size, req.device_index,
                        req.threads, req.seed,
                        onnx_path=req.onnx_path)
    progress("prepare", workload=workload.name, backend=backend.name)
    try:
        step = backend.prepare(workload, config)
    except (UserError, KeyboardInterrupt):
        run.writer.remove_if_empty()
        raise
    except Exception:  # a build that crashed (OOM, a framework bug) is a failed row
        run.writer.append_trial(run.failed_row(traceback.format_exc()))
        return run.finish(STOP_FAILED, {})
    run.prepared(step)
    sampler = None
    try:  # the GPU to watch: the step's, else --device (a CPU step watched with --telemetry nvml)
        sampler = make_sampler(
            req.telemetry, step.device.kind,
            req.device_index if step.device.index is None else step.device.index,
            req.sample_hz, step.device.uuid)
        # before measuring: other processes on the GPU, persistence mode, clocks
        gpu_state = pre_run_gpu_state(sampler, req.require_idle_gpu)
    except BaseException:  # a refusal: nothing measured, nothing left behind
        if sampler is not None:
            sampler.stop()  # never started: this closes its NVML session
        step.close()
        run.writer.remove_if_empty()
        raise
    # NVML knows the driver: run.json's environment and every row get it.
    run.env.update({k: v for k, v in sampler.environment().items() if run.env.get(k) is None})
    run.base_row["driver_version"] = run.env.get("driver_version")
    protocol = replace(req.protocol, record_latency=req.mode == "infer")
    stop, extra = STOP_FAILED, {"warnings": list(step.warnings)}
    try:
        with sampler:
            calibration, stop = measure(
                step, protocol, lambda r: run.writer.append_trial(run.trial_row(r, step)),
                sampler, progress)
        extra["calibration"] = asdict(calibration)
        if protocol.record_latency:
            extra["latency_timing"] = ("separate_pass" if step.latency_timing_syncs
                                       else "in_trial")
    except KeyboardInterrupt:
        run.writer.write_samples(sampler.samples())
        run.finish(STOP_INTERRUPTED,
                   {**extra, "telemetry": with_gpu_state(sampler.notes(), gpu_state)})
        raise
    except Exception:
        run.writer.append_trial(run.failed_row(traceback.format_exc()))
    finally:
        step.close()
    run.writer.write_samples(sampler.samples())
    return run.finish(stop, {**extra, "telemetry": with_gpu_state(sampler.notes(), gpu_state)})
