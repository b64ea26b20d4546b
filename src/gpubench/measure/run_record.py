"""The record of one run while it executes: its folder, the identity and context every
row carries, the environment for run.json, and the outcome it ends with."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import pandas as pd

from gpubench.backends import Step
from gpubench.machine import machine_environment
from gpubench.measure.preflight import Preflight
from gpubench.measure.request import RunRequest
from gpubench.peaks import peak_tflops
from gpubench.ranks import SINGLE_RANK, RankContext
from gpubench.results.fingerprint import assemble
from gpubench.results.schema import ENVIRONMENT_COLUMNS, SCHEMA_VERSION
from gpubench.results.summary import summarize
from gpubench.results.writer import RankRowsWriter, RunWriter

ERROR_TAIL_CHARS = 2000


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    loss: Dict[str, Any] = field(default_factory=dict)  # train: first step, last trial, fell


# What run.json keeps of each worker process of a run (--processes); the top level
# holds the last process's.
PROCESS_FIELDS = ("started_utc", "finished_utc", "stop_reason", "calibration", "contention",
                  "loss", "warnings", "phases_s", "wall_s", "fixed_s")


def process_entry(meta: Mapping[str, Any], process: int) -> Dict[str, Any]:
    return {"process": process, **{k: meta[k] for k in PROCESS_FIELDS if k in meta}}


# What run.json keeps of each rank of a data-parallel run (`ranks`, in rank order); the
# top level holds rank 0's.
RANK_FIELDS = ("device", "params_sha256", "calibration", "contention", "loss", "warnings",
               "telemetry")


def with_global_columns(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every rank's row of one trial, each given the trial's whole-run figures: all
    ranks' samples over the trial (timed on rank 0's clock, the same duration on every
    row) and all their devices' energy (empty unless each measured its own)."""
    if not rows or "samples" not in rows[0]:  # not a throughput row
        return rows
    duration = rows[0]["duration_s"]
    samples = sum(r["samples"] for r in rows)
    energies = [r.get("energy_j") for r in rows]
    known = all(e is not None and e == e for e in energies)  # NaN: not measured
    energy = sum(energies) if known else None
    return [{**r, "global_throughput_samples_per_s": samples / duration,
             "global_energy_j": energy} for r in rows]


class RunRecord:
    """The run's rows and run.json, from what preflight resolved (`plan`: the identity,
    the batch size, the data). In a run of several ranks every rank keeps a record;
    rank 0's writes the folder, the others send it their rows (emit, write_samples,
    finish gather them)."""

    def __init__(self, req: RunRequest, plan: Preflight,
                 ranks: RankContext = SINGLE_RANK) -> None:
        self.req, self.plan, self.workload, self.ranks = req, plan, plan.workload, ranks
        self.identity = plan.identity
        self.peak_tflops: Optional[float] = None  # known once the device is
        self.gpu_fingerprint: Optional[Dict[str, Any]] = None  # NVML's part, once it is open
        self.env = {**machine_environment(), **plan.backend.environment()}
        self.writer = (RunWriter(req.out_dir, self.env["host"], folder=req.folder)
                       if ranks.is_writer else RankRowsWriter(req.folder))
        self.started_utc = self.process_started_utc = utc_now()
        if ranks.world_size > 1:  # rank 0's run: other nodes name their own folders
            self.writer.run_id, self.started_utc = ranks.agree((self.writer.run_id,
                                                                self.started_utc))
        self.earlier_processes: List[Dict[str, Any]] = []
        # run.json's phases_s, wall_s, fixed_s, read as it is written (the runner's clock)
        self.timed: Callable[[], Dict[str, Any]] = dict
        if req.process > 0:  # a later worker process of the run: the folder holds the earlier
            earlier = self.writer.resume()
            self.started_utc = earlier.get("started_utc") or self.started_utc
            self.earlier_processes = list(earlier.get("processes") or [process_entry(earlier, 0)])
        self.base_row: Dict[str, Any] = {
            "run_id": self.writer.run_id, **self.identity, "rank": ranks.rank,
            "process": req.process,
            "started_utc": self.started_utc, "git_commit": self.env.get("git_commit"),
            "suite_id": req.suite_id, "round": req.round, "shard": req.shard,
            **{c: self.env.get(c) for c in ENVIRONMENT_COLUMNS},
            "schema_version": SCHEMA_VERSION,
        }

    def prepared(self, step: Step) -> None:
        """Records what only a prepared step knows: the device, and framework settings
        that prepare() changed (threads, say)."""
        self.env.update(self.plan.backend.environment())
        self.base_row.update(device_index=step.device.index, device_name=step.device.name,
                             device_uuid=step.device.uuid)
        self.peak_tflops = (peak_tflops(step.device.name, self.req.precision)
                            if step.device.kind == "cuda" else None)
        self.env["peak_tflops"] = self.peak_tflops  # datasheet, dense: the MFU denominator

    def learned_environment(self, facts: Mapping[str, Any]) -> None:
        """Facts found later (NVML knows the driver): run.json and every row get them."""
        facts = dict(facts)
        self.gpu_fingerprint = facts.pop("gpu_fingerprint", self.gpu_fingerprint)
        self.env.update({k: v for k, v in facts.items() if self.env.get(k) is None})
        self.base_row.update({c: self.env.get(c) for c in ENVIRONMENT_COLUMNS
                              if c != "schema_version"})

    def output_checked(self, name: str, check: Mapping[str, Any]) -> Dict[str, Any]:
        """An output check's result (`accuracy_check`: --check-accuracy against fp32
        torch; `exec_check`: a non-eager exec mode against eager). Its columns go on every
        row, the worst of the checks made (lowest agreement, largest difference, ok only
        if all are); returns run.json's record of it, with a warning when it failed."""
        row = self.base_row
        known = row.get("accuracy_ok") is not None
        row["top1_agreement"] = min(check["top1_agreement"], row["top1_agreement"]) if known \
            else check["top1_agreement"]
        row["max_abs_diff"] = max(check["max_abs_diff"], row["max_abs_diff"]) if known \
            else check["max_abs_diff"]
        row["accuracy_ok"] = bool(check["accuracy_ok"] and row.get("accuracy_ok", True) is not False)
        extra: Dict[str, Any] = {name: dict(check), "warnings": []}
        if not check["accuracy_ok"]:
            extra["warnings"] = [
                f"{name.replace('_', ' ')} failed: against {check['reference']} on "
                f"{check['inputs']}, top-1 agreement {check['top1_agreement']:.4f} (at least "
                f"{check['tolerance']['min_top1']:g} needed), max abs difference "
                f"{check['max_abs_diff']:.3g} (at most {check['tolerance']['rel_max_abs']:g} x "
                f"{check['reference_max_abs']:.3g}); the rows say accuracy_ok=false"]
        return extra

    def emit(self, measured: Mapping[str, Any]) -> None:
        """One row; in a run of several ranks every rank emits its row of the trial
        together (the scenario keeps them in step) and rank 0 writes them all."""
        unknown = set(measured) - set(self.plan.scenario.columns)
        assert not unknown, f"{self.plan.scenario.name} fills columns it did not declare: {sorted(unknown)}"
        row = {**self.base_row, **measured, "status": "ok"}
        if not self.ranks.ranked:
            self.writer.append_trial(row)
            return
        rows = self.ranks.gather(row)
        self.writer.append_trials(with_global_columns(rows) if rows is not None else [row])

    def write_samples(self, samples: List[Dict[str, Any]]) -> None:
        """The telemetry series; every rank's (each watched its own device) on rank 0."""
        if self.ranks.world_size == 1:
            self.writer.write_samples(samples)
            return
        gathered = self.ranks.gather([{**s, "rank": self.ranks.rank} for s in samples])
        self.writer.write_samples([s for rank in gathered or [samples] for s in rank])

    def rank_entries(self, extra: Mapping[str, Any]) -> Dict[str, Any]:
        """run.json's `ranks` (every rank's device, parameter hashes, calibration,
        warnings and telemetry notes) and `distributed`; {} for a plain run."""
        if not self.ranks.ranked:
            return {}
        this = {"rank": self.ranks.rank, "local_rank": self.ranks.local_rank,
                "host": self.env.get("host"), **{k: extra[k] for k in RANK_FIELDS if k in extra}}
        entries = self.ranks.gather(this) or [this]
        return {"ranks": entries, "distributed": {
            "world_size": self.ranks.world_size, "strategy": self.ranks.strategy,
            "applied": extra.get("data_parallel"),  # what the step did (none: inference)
            "process_group_backend": self.ranks.group_backend}}

    def failed(self, error: str) -> None:
        self.writer.append_trial({**self.base_row, "trial": len(self.writer.trial_rows),
                                  "status": "failed", "error": error[-ERROR_TAIL_CHARS:]})

    def finish(self, stop_reason: str, extra: Mapping[str, Any]) -> RunOutcome:
        ranked = self.rank_entries(extra)  # a collective: every rank gets here once
        trials = self.writer.write_trials()
        summary = summarize(trials, stop_reason)
        self.writer.write_summary(summary)
        extra = {**extra, **self.timed()}  # the time up to writing run.json
        processes = {}
        if self.req.processes > 1:  # each process's calibration, contention, loss, warnings
            this = process_entry({**extra, "started_utc": self.process_started_utc,
                                  "finished_utc": utc_now(), "stop_reason": stop_reason},
                                 self.req.process)
            processes["processes"] = [*self.earlier_processes, this]
        self.writer.write_run_json({
            "schema_version": SCHEMA_VERSION, "run_id": self.writer.run_id,
            "started_utc": self.started_utc, "finished_utc": utc_now(),
            "config": {**self.req.flat(), "batch_size": self.plan.batch_size,
                       "params": dict(self.workload.params),
                       "out_dir": str(self.req.out_dir), "exec": self.plan.exec_mode},
            "protocol": {**asdict(self.req.protocol), "record_latency": self.req.mode == "infer"},
            "scenario": self.plan.scenario.name,
            "stop_reason": stop_reason,
            "workload": {"name": self.workload.name, "task": self.workload.task,
                         "input_shape": list(self.workload.input_shape),
                         "param_count": self.workload.stats.param_count,
                         "forward_flops_per_sample": self.workload.stats.forward_flops_per_sample,
                         "optimizer": self.workload.optimizer,
                         "optimizer_args": dict(self.workload.optimizer_args),
                         "input_dtype": self.workload.input_dtype,
                         "tokens_per_sample": self.workload.tokens_per_sample},
            "environment": self.env, "fingerprint": assemble(self.env, self.gpu_fingerprint),
            **extra, **processes, **ranked,
        })
        status = "ok" if (trials["status"] == "ok").all() and len(trials) else "failed"
        errors = trials["error"].dropna()
        telemetry = dict(extra.get("telemetry") or {})
        return RunOutcome(self.writer.path, status, stop_reason, trials, summary,
                          errors.iloc[-1] if len(errors) else None, telemetry,
                          [*extra.get("warnings", []), *telemetry.get("warnings", [])],
                          dict(extra.get("loss") or {}))
