"""Preflight: the checks a run passes before anything is written or any framework is
imported (bad input, an unknown or unavailable backend, a configuration the backend or
the scenario cannot run, a batch that cannot fit), and what they resolve, once: the
workload, backend, scenario, exec mode, batch size, identity and data of the run.
Raises UserError (Unsupported where this machine or backend cannot)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from gpubench.backends import Backend, all_backends, get_backend, resolve_backend
from gpubench.backends.exec_modes import exec_refusal
from gpubench.errors import Unsupported, UserError
from gpubench.measure.memory_check import check_memory
from gpubench.measure.options import OPTIONS, check_value
from gpubench.measure.generation.plan import (
    GENERATE_MODE, check_generate_backend, check_generate_workload, resolved_lengths,
)
from gpubench.measure.request import RunRequest, generation_identity, identity, onnx_identity
from gpubench.measure.scenarios.base import Scenario
from gpubench.measure.thermal import check_thermal_plan
from gpubench.measure.scenarios.registry import resolve_scenario
from gpubench.measure.scenarios.serving.options import (
    check_serving_plan, validate_serving_request,
)
from gpubench.measure.scenarios.time_to_accuracy_options import validate_accuracy_request
from gpubench.telemetry import check_request as check_telemetry_request
from gpubench.workloads import Workload, resolve_workload


@dataclass(frozen=True)
class Preflight:
    """What preflight resolved, for the rest of the run to take as it is."""

    workload: Workload
    backend: Backend
    scenario: Scenario
    exec_mode: str
    batch_size: int  # samples per batch (the scenario's: single-stream 1, ...)
    identity: Dict[str, Any]  # the configuration columns of every row
    data: Dict[str, Any]  # run.json's account of the data: source, pipeline, folder


def validate_request(req: RunRequest) -> None:
    """What options need of each other (validate_together), then every option's value
    by its declaration: an allowed name, a number in range."""
    validate_together(req)
    for o in OPTIONS:
        if o.request_field is None or o.cli_choices is False:  # workload, backend: preflight
            continue
        wrong = check_value(o, getattr(req, o.request_field))
        if wrong:
            raise UserError(wrong if wrong.startswith("unknown ") else f"{o.flag}: {wrong}")


def validate_together(req: RunRequest) -> None:
    """What options need of each other: telemetry's kind and rate (the sampler's own
    bounds), the ranks, the processes, the scenarios'. A suite checks each value as it
    reads it, then this for each run."""
    check_telemetry_request(req.telemetry, req.sample_hz)
    validate_ranks(req)
    if req.processes < 1 or not 0 <= req.process < req.processes:
        raise UserError(f"--processes must be a positive integer, got {req.processes}")
    if not req.environment.strip():
        raise UserError("the environment name is empty")
    validate_accuracy_request(req)
    validate_serving_request(req)


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
    if req.processes != 1:
        raise UserError("--processes spreads one process's trials over several; a run of "
                        "ranks (--nproc) times all its ranks together: use one or the other")


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
        variant = f"{backend.name}-{exec_mode}"  # tf-cpu + xla: the tf-cpu-xla backend
        hint = f"; backend {variant} runs it" if variant in all_backends() else ""
        if exec_mode == "cuda-graphs" and backend.device_kind == "cpu":
            hint = "; CUDA graphs replay work captured on a CUDA device's stream (torch-cuda)"
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


def data_account(req: RunRequest, scenario: Scenario, workload: Workload) -> Dict[str, Any]:
    """run.json's account of the data: its source, how it reaches the device, the start
    weights, and the real set's folder, which must hold it (a missing set: exit 2 before
    anything is written)."""
    account: Dict[str, Any] = {"source": req.data, "pipeline": scenario.data_pipeline,
                               "start_weights": ("models/init_weights.py" if
                                                 scenario.same_start_weights else "framework")}
    if req.data != "synthetic":
        from gpubench.data.mnist import mnist_folder
        from gpubench.data.sources import check_source, labelled_data
        check_source(workload, req.data)
        labelled_data(req.data, req.data_dir)
        account["folder"] = str(mnist_folder(req.data_dir))
    return account


def memory_plan(req: RunRequest, workload: Workload, lengths: Optional[Tuple[int, int]]
                ) -> Tuple[Workload, str]:
    """What the memory check weighs: the run's workload and mode; in --mode generate the
    forward pass over the positions a request fills (prompt + output: their K and V are
    its activations), not over the model's whole seq_len."""
    if lengths is None:
        return workload, req.mode
    return resolve_workload(req.workload, {**req.params, "seq_len": str(sum(lengths))}), "infer"


def preflight(req: RunRequest) -> Preflight:
    """The checks that need no framework, in the order a user would fix them, and what
    they resolved."""
    validate_request(req)
    scenario = resolve_scenario(req.scenario, req.mode)
    workload = resolve_workload(req.workload, req.params)
    generating = req.mode == GENERATE_MODE
    if generating:  # a decoder, lengths that fit it: before any backend is asked
        check_generate_workload(workload)
    lengths = resolved_lengths(req, workload) if generating else None
    # a mode's own refusals come on any machine (torch-cuda's cuda-graphs on a CPU box);
    # after resolving, again for the mode `auto` resolved to
    check_exec_plan(req, scenario, declared_exec(req))
    if generating and req.backend != "auto":  # no decode step, available here or not
        check_generate_backend(get_backend(req.backend), all_backends())
    backend = resolve_backend(req.backend)
    if generating and req.backend == "auto":  # the backend auto resolved to
        check_generate_backend(backend, all_backends())
    backend.check_config(req.mode, req.precision)
    check_thermal_plan(req.protocol, req.telemetry, backend.device_kind)  # --start-below-c
    exec_mode = exec_mode_of(req, backend)
    check_exec_plan(req, scenario, exec_mode)
    check_ranked(req, scenario, backend, workload)
    data = data_account(req, scenario, workload)
    missing = sorted(scenario.needs - backend.capabilities(req.mode))
    if missing:
        raise Unsupported(f"scenario {scenario.name} needs steps that can "
                          f"{', '.join(missing)}; {backend.name} {req.mode} steps cannot")
    if req.check_accuracy:
        check_gate_request(req, backend)
    if req.onnx_path is not None and not backend.accepts_onnx:
        raise UserError(f"--onnx is for backends that run ONNX files (onnxruntime-cpu, "
                        f"onnxruntime-cuda, tensorrt); {backend.name} builds its own model")
    batch_size = scenario.batch_size(req, workload)
    if req.onnx_path is not None:  # the workload's model, or its FLOPs would be fiction
        from gpubench.backends.onnx_graph_check import check_onnx_file
        check_onnx_file(req.onnx_path, workload, req.precision, batch_size,
                        variable_batch=scenario.variable_batches)
    check_serving_plan(req, scenario, exec_mode, workload)
    weighed, weighed_mode = memory_plan(req, workload, lengths)
    check_memory(weighed, backend, weighed_mode, req.precision,  # a lower bound that cannot fit
                 batch_size, req.device_index, user_model=req.onnx_path is not None)
    resolved = {"workload": workload.name, "backend": backend.name, "batch_size": batch_size,
                "params": workload.params_str, "exec": exec_mode,
                "onnx_sha256": onnx_identity(req), **generation_identity(req, workload)}
    return Preflight(workload, backend, scenario, exec_mode, batch_size,
                     identity(req, resolved), data)
