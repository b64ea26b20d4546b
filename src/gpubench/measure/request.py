"""What one run is asked to do (RunRequest), the checks that need no framework
(preflight), and the request's identity as its result rows will hold it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from gpubench.backends import MODES, PRECISIONS, Backend, get_backend, resolve_backend
from gpubench.backends.exec_modes import exec_refusal
from gpubench.backends.onnx_graph_check import check_onnx_file, file_sha256
from gpubench.errors import Unsupported, UserError
from gpubench.measure.memory_check import check_memory
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.scenarios.base import Scenario
from gpubench.measure.scenarios.registry import resolve_scenario
from gpubench.measure.scenarios.serving.options import (
    batch_size_of, check_serving_plan, serving_identity, validate_serving_request,
)
from gpubench.ranks import STRATEGIES
from gpubench.results import schema
from gpubench.telemetry import check_request as check_telemetry_request
from gpubench.workloads import Workload, resolve_workload

DEFAULT_ENVIRONMENT = schema.CONFIGURATION_DEFAULTS["environment"]


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
    scenario: str = "throughput"  # the loop that measures (measure/scenarios/)
    exec: Optional[str] = None  # execution mode; None = the backend's default (eager)
    world_size: int = 1  # processes the run spans (a launcher's business)
    # how the ranks share the training (gpubench/ranks.py STRATEGIES): set by a rank
    # launcher (--nproc; ddp unless --strategy says otherwise), None for a plain run
    strategy: Optional[str] = None
    environment: str = DEFAULT_ENVIRONMENT  # the name of the Python environment it runs in
    # the data measured on (data/sources.py): "synthetic" (made with numpy) or "mnist"
    # (the real set, from data_dir or the cache); an identity column, like threads
    data: str = schema.CONFIGURATION_DEFAULTS["data"]
    data_dir: Optional[str] = None  # a folder holding the real set (None: the cache)
    # time-to-accuracy: the test accuracy to train to (an identity column) and the
    # epochs allowed (None: the scenario's default)
    target_accuracy: Optional[float] = None
    max_epochs: Optional[int] = None
    # the accuracy gate (measure/accuracy_gate.py): outputs against fp32 torch before timing
    check_accuracy: bool = False
    # The serving scenarios (measure/scenarios/serving/; the batch cap is batch_size): server's
    # Poisson rate, its p99 latency bound and the dynamic batcher's timeout are identity
    # columns (server runs only); --find-max-qps searches the rate instead (target_qps
    # None); each trial's minimum query count (None: enough to claim p99).
    target_qps: Optional[float] = None
    latency_bound_ms: Optional[float] = None
    batch_timeout_ms: Optional[float] = None
    find_max_qps: bool = False
    min_queries: Optional[int] = None
    # Worker processes the run's trials are spread over, one after another (the process
    # launcher; `protocol.trials` each), and which one this request is. Protocol, not
    # identity: runs with any number of processes measure the same work.
    processes: int = 1
    process: int = 0


@dataclass(frozen=True)
class Preflight:
    """What preflight resolved: the run's workload, backend, scenario and exec mode."""

    workload: Workload
    backend: Backend
    scenario: Scenario
    exec_mode: str


def validate_request(req: RunRequest) -> None:
    if req.mode not in MODES:
        raise UserError(f"unknown mode {req.mode!r} (valid: {', '.join(MODES)})")
    if req.precision not in PRECISIONS:
        raise UserError(f"unknown precision {req.precision!r} (valid: {', '.join(PRECISIONS)})")
    if req.batch_size is not None and req.batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {req.batch_size}")
    validate_ranks(req)
    if req.processes < 1 or not 0 <= req.process < req.processes:
        raise UserError(f"--processes must be a positive integer, got {req.processes}")
    if not req.environment.strip():
        raise UserError("the environment name is empty")
    validate_accuracy_request(req)
    validate_serving_request(req)
    check_telemetry_request(req.telemetry, req.sample_hz)


def validate_ranks(req: RunRequest) -> None:
    """World size and strategy: several ranks need a strategy (the torchrun launcher
    sets one), and a rank's trials are not spread over --processes."""
    if req.world_size < 1:
        raise UserError(f"the world size must be a positive integer, got {req.world_size}")
    if req.strategy is None:
        if req.world_size != 1:
            raise UserError(f"world size {req.world_size}: runs of more than one process are "
                            "started by the torchrun launcher (gpubench run --nproc N)")
        return
    if req.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {req.strategy!r} (valid: {', '.join(STRATEGIES)})")
    if req.processes != 1:
        raise UserError("--processes spreads one process's trials over several; a run of "
                        "ranks (--nproc) times all its ranks together: use one or the other")


def scenario_for(workload: str, params: Mapping[str, str],
                 target_accuracy: Optional[float], asked: Optional[str] = None) -> str:
    """The scenario `gpubench run` and suites measure a workload with: the one asked for
    (--scenario), else time-to-accuracy when given a target, collective for a collective
    workload, else throughput. An unknown workload is left to preflight's message."""
    if asked is not None:
        return asked
    if target_accuracy is not None:
        return "time-to-accuracy"
    try:
        task = resolve_workload(workload, params).task
    except UserError:
        return "throughput"
    return "collective" if task == "collective" else "throughput"


def check_ranked(req: RunRequest, scenario: Scenario, backend: Backend,
                 workload: Workload) -> None:
    """A collective workload needs the collective scenario and ranks; a run of ranks
    needs a scenario that keeps them in step and steps that honour the rank context."""
    if scenario.collective != (workload.task == "collective"):
        kind = "a collective" if workload.task == "collective" else "a model"
        raise UserError(f"workload {workload.name} is {kind}: scenario {scenario.name} "
                        f"measures {'collectives' if scenario.collective else 'models'}")
    if scenario.collective and req.strategy is None:
        raise UserError(f"workload {workload.name} runs between ranks: give --nproc N")
    if req.strategy is None:
        return
    if not scenario.ranked:
        raise UserError(f"scenario {scenario.name} runs in one process; it cannot run on "
                        "several ranks (--nproc)")
    if "data_parallel" not in backend.capabilities(req.mode):
        raise Unsupported(f"{backend.name} {req.mode} steps cannot run data-parallel "
                          "(--nproc): their ranks would only run side by side")


def validate_accuracy_request(req: RunRequest) -> None:
    """time-to-accuracy's inputs: a target in (0, 1], real data, training, one process."""
    from gpubench.data.sources import DATA_SOURCES
    if req.data not in DATA_SOURCES:
        raise UserError(f"unknown data {req.data!r} (valid: {', '.join(DATA_SOURCES)})")
    target = req.target_accuracy
    if target is not None and not 0 < target <= 1:
        raise UserError(f"--target-accuracy must be in (0, 1], got {target:g}")
    if req.max_epochs is not None and req.max_epochs < 1:
        raise UserError(f"--max-epochs must be a positive integer, got {req.max_epochs}")
    if req.scenario != "time-to-accuracy":
        if target is not None:
            raise UserError(f"--target-accuracy is for the time-to-accuracy scenario, "
                            f"not {req.scenario}")
        return
    if target is None:
        raise UserError("time-to-accuracy needs --target-accuracy (a test accuracy in (0, 1])")
    if req.data == "synthetic":
        raise UserError("--target-accuracy needs real data (--data mnist): a model memorises "
                        "synthetic batches, so their accuracy says nothing")
    if req.mode != "train":
        raise UserError("--target-accuracy trains: it cannot run in --mode infer")
    if req.processes != 1:
        raise UserError("--target-accuracy runs one training from start to target: it "
                        "cannot be spread over --processes")


def check_gate_request(req: RunRequest, backend: Backend) -> None:
    if req.mode != "infer":
        raise UserError("--check-accuracy checks inference outputs: use it with --mode infer")
    if req.onnx_path is not None:
        raise UserError("--check-accuracy compares the workload's own model with fp32 torch; "
                        "a user's --onnx file holds weights of its own")
    if "predict" not in backend.capabilities(req.mode):
        raise Unsupported(f"--check-accuracy needs steps that can predict; {backend.name} "
                          "steps cannot")


def exec_mode_of(req: RunRequest, backend: Backend) -> str:
    exec_mode = req.exec or backend.exec_modes[0]
    if exec_mode not in backend.exec_modes:
        from gpubench.backends import all_backends
        variant = f"{backend.name}-{exec_mode}"  # tf-cpu + xla: the tf-cpu-xla backend
        hint = f"; backend {variant} runs it" if variant in all_backends() else ""
        raise Unsupported(f"exec mode {exec_mode!r} is unsupported on {backend.name} "
                          f"(it runs: {', '.join(backend.exec_modes)}){hint}")
    return exec_mode


def declared_exec(req: RunRequest) -> Optional[str]:
    """The exec mode asked for where the named backend declares it, read without
    asking whether the backend is available here (None: not asked, `auto`, or not
    declared, which exec_mode_of says once the backend resolves)."""
    if req.exec is None or req.backend == "auto":
        return None
    try:
        backend = get_backend(req.backend)
    except UserError:  # unknown: resolve_backend says so
        return None
    return req.exec if req.exec in backend.exec_modes else None


def check_exec_plan(req: RunRequest, scenario: Scenario, exec_mode: Optional[str]) -> None:
    """An exec mode that cannot run this scenario or a run of ranks (exec_modes.py)."""
    why = exec_mode and exec_refusal(exec_mode, scenario.name, ranked=req.strategy is not None,
                                     epochs=scenario.data_pipeline == "epochs")
    if why:
        raise Unsupported(why)


def preflight(req: RunRequest) -> Preflight:
    """The checks that need no framework: bad input, an unknown or unavailable backend,
    a configuration the backend cannot run, a scenario needing what its steps cannot
    do. Raises UserError (or a subclass)."""
    validate_request(req)
    scenario = resolve_scenario(req.scenario)
    workload = resolve_workload(req.workload, req.params)
    # a mode's own refusals come on any machine (torch-cuda's cuda-graphs on a CPU box);
    # after resolving, again for the mode `auto` resolved to
    check_exec_plan(req, scenario, declared_exec(req))
    backend = resolve_backend(req.backend)
    backend.check_config(req.mode, req.precision)
    exec_mode = exec_mode_of(req, backend)
    check_exec_plan(req, scenario, exec_mode)
    check_ranked(req, scenario, backend, workload)
    if req.data != "synthetic":  # before anything is written: a missing set is exit 2
        from gpubench.data.sources import check_source, labelled_data
        check_source(workload, req.data)
        labelled_data(req.data, req.data_dir)
    missing = sorted(scenario.needs - backend.capabilities(req.mode))
    if missing:
        raise Unsupported(f"scenario {scenario.name} needs steps that can "
                          f"{', '.join(missing)}; {backend.name} {req.mode} steps cannot")
    if req.check_accuracy:
        check_gate_request(req, backend)
    if req.onnx_path is not None and not backend.accepts_onnx:
        raise UserError(f"--onnx is for backends that run ONNX files (onnxruntime-cpu, "
                        f"onnxruntime-cuda, tensorrt); {backend.name} builds its own model")
    if req.onnx_path is not None:  # the workload's model, or its FLOPs would be fiction
        check_onnx_file(req.onnx_path, workload, req.precision, batch_size_of(req, workload),
                        variable_batch=scenario.variable_batches)
    check_serving_plan(req, scenario, exec_mode, workload)
    check_memory(workload, backend, req.mode, req.precision,  # a lower bound that cannot fit
                 batch_size_of(req, workload), req.device_index,
                 user_model=req.onnx_path is not None)
    return Preflight(workload, backend, scenario, exec_mode)


def run_identity(req: RunRequest, workload: Workload, backend: Backend,
                 exec_mode: str) -> Dict[str, Any]:
    """The configuration columns (schema.CONFIGURATION_COLUMNS) of the request's rows:
    defaults resolved; a column the declaration adds is the request field of its name
    (`threads` as asked: empty for the framework's default, whatever that is here;
    `data`)."""
    resolved = {"workload": workload.name, "backend": backend.name,
                "batch_size": batch_size_of(req, workload),
                "params": workload.params_str, "exec": exec_mode,
                "onnx_sha256": onnx_identity(req), **serving_identity(req)}
    return {c: resolved[c] if c in resolved else getattr(req, c, None)
            for c in schema.CONFIGURATION_COLUMNS}


def onnx_identity(req: RunRequest) -> str:
    """The `onnx_sha256` column: the SHA-256 of the user's --onnx file (hashed once per
    process; UserError when unreadable), empty for the workload's own model."""
    return file_sha256(req.onnx_path) if req.onnx_path is not None else ""


def request_identity(req: RunRequest) -> Dict[str, Any]:
    """run_identity without preflight's availability checks (the suite's resume key,
    the row of a run that never produced one); a name that does not resolve stays as
    the request spelled it."""
    try:
        workload = resolve_workload(req.workload, req.params)
        backend = resolve_backend(req.backend) if req.backend == "auto" else get_backend(req.backend)
        return run_identity(req, workload, backend, req.exec or backend.exec_modes[0])
    except UserError:
        spelled = {"params": ";".join(f"{k}={v}" for k, v in sorted(req.params.items())),
                   "exec": req.exec or schema.CONFIGURATION_DEFAULTS["exec"],
                   **serving_identity(req)}
        try:
            spelled["onnx_sha256"] = onnx_identity(req)
        except UserError:  # an unreadable file: no hash to record
            spelled["onnx_sha256"] = ""
        return {c: spelled[c] if c in spelled else getattr(req, c, None)
                for c in schema.CONFIGURATION_COLUMNS}
