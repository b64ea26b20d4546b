"""What one run is asked to do (RunRequest), made from the declared options
(measure/options.py) by one function, request_from, for the command line and suites
alike; and the request's identity as its result rows will hold it."""

from __future__ import annotations

from dataclasses import field, make_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from gpubench.errors import UserError
from gpubench.measure.option import record_fields
from gpubench.measure.options import GROUPS, OPTIONS, values_with_defaults
from gpubench.measure.protocol_config import DEFAULT_PROCESSES, default_trials
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS
from gpubench.results import schema

DEFAULT_ENVIRONMENT = schema.CONFIGURATION_DEFAULTS["environment"]

GROUP_OF: Dict[str, str] = {o.request_field: o.group for o in OPTIONS
                            if o.group is not None and o.request_field is not None}

# A request made directly (not by request_from) holds, where an option is not given,
# what request_from resolves it to when nothing else decides.
RESOLVED_DEFAULTS = {"mode": "train", "scenario": "throughput", "processes": DEFAULT_PROCESSES,
                     "environment": DEFAULT_ENVIRONMENT, "out_dir": Path("results")}

# The request's fields: each option's of its own (in declaration order), each group's
# record, then what the launch adds (none of them a user's option).
_RequestFields = make_dataclass("RunRequest", [
    *record_fields([o for o in OPTIONS if o.group is None], RESOLVED_DEFAULTS),
    *((name, Any, field(default_factory=cls)) for name, cls in GROUPS.items()),
    ("world_size", Any, field(default=1)),  # processes the run spans: --nproc x --nnodes
    ("folder", Any, field(default=None)),  # the run folder itself (suites name it)
    # Which of the run's worker processes (--processes) this request is. Protocol, not
    # identity: runs with any number of processes measure the same work.
    ("process", Any, field(default=0)),
    # The suite the run belongs to and the round of its interleaving in which this
    # process runs (None for a lone run): compare pairs rounds of one suite.
    ("suite_id", Any, field(default=None)),
    ("round", Any, field(default=None)),
    ("shard", Any, field(default=None)),  # "i/N" of a sharded suite (suite/shards.py)
], frozen=True)


class RunRequest(_RequestFields):
    """One run: a field per option (measure/options.py), the protocol's and each
    scenario's options as one record (`protocol`, `accuracy`, `serving`), then the
    launch's. Any option reads by its name (`req.target_qps` is `req.serving.target_qps`),
    and is given by it too: RunRequest("mnist", "torch-cpu", target_qps=100.0). A group
    may also come as a mapping (the worker's JSON)."""

    def __init__(self, *args: Any, **values: Any) -> None:
        grouped: Dict[str, Dict[str, Any]] = {}
        for name in [k for k in values if k in GROUP_OF]:
            grouped.setdefault(GROUP_OF[name], {})[name] = values.pop(name)
        for group, cls in GROUPS.items():
            record = values.get(group)
            if isinstance(record, Mapping):
                record = cls(**record)
            if group in grouped:
                record = replace(record if record is not None else cls(), **grouped[group])
            if record is not None:
                values[group] = record
        super().__init__(*args, **values)

    def __getattr__(self, name: str) -> Any:  # only names that are not fields: grouped options
        group = GROUP_OF.get(name)
        if group is None:
            raise AttributeError(f"RunRequest has no option or field {name!r}")
        return getattr(getattr(self, group), name)

    def flat(self) -> Dict[str, Any]:
        """Every field, the scenarios' records flattened (run.json's `config`), the
        protocol apart."""
        out: Dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if name == "protocol":
                continue
            out.update(value.__dict__ if name in GROUPS else {name: value})
        return out


def default_mode(scenario: Optional[str], backend: Optional[str] = None) -> str:
    """train, but infer for the serving scenarios (what they do) and on a backend that
    runs inference only (onnxruntime-*, tensorrt)."""
    if scenario in SERVING_SCENARIOS or (backend is not None and infers_only(backend)):
        return "infer"
    return "train"


@lru_cache(maxsize=None)
def infers_only(backend: str) -> bool:
    """Whether the backend named so runs only inference (False for one unknown or auto:
    preflight says what is wrong with it)."""
    from gpubench.backends import all_backends

    factory = all_backends().get(backend)
    return factory is not None and tuple(factory().modes) == ("infer",)


def scenario_for(workload: str, params: Mapping[str, str],
                 target_accuracy: Optional[float], asked: Optional[str] = None) -> str:
    """The scenario `gpubench run` and suites measure a workload with: the one asked for
    (--scenario), else time-to-accuracy when given a target, collective for a collective
    workload, else throughput. An unknown workload is left to preflight's message."""
    from gpubench.workloads import resolve_workload

    if asked is not None:
        return asked
    if target_accuracy is not None:
        return "time-to-accuracy"
    try:
        task = resolve_workload(workload, params).task
    except UserError:
        return "throughput"
    return "collective" if task == "collective" else "throughput"


def request_from(values: Mapping[str, Any], **fields: Any) -> RunRequest:
    """The request for options' values by name (the command line's, a suite run's; the
    rest take their defaults), and `fields` set as given (a suite's folder and device).
    Where options meet, decided here once: another name for the batch (--max-batch), the
    scenario (asked, or what the target or the workload implies) and the mode it
    implies, trials by processes, the exec mode's compile mode, the ranks' world size and
    strategy, paths made absolute."""
    v = values_with_defaults(values)
    v["batch_size"] = batch_size_given(v)
    params = v["params"] or {}
    if not isinstance(params, Mapping):  # the command line's KEY=VALUE texts
        from gpubench.workloads import parse_param_args
        params = parse_param_args(params)
    v["params"] = dict(params)
    v["scenario"] = scenario_for(v["workload"], params, v["target_accuracy"], v["scenario"])
    v["mode"] = v["mode"] or default_mode(v["scenario"], v["backend"])
    v["processes"] = v["processes"] or DEFAULT_PROCESSES
    v["trials"] = v["trials"] or default_trials(v["processes"])
    if v["exec"] is not None:
        from gpubench.backends.exec_modes import exec_with_compile_mode
        v["exec"] = exec_with_compile_mode(v["exec"], v["compile_mode"])
    ranked = v["nproc"] is not None
    v["strategy"] = (v["strategy"] or "ddp") if ranked else None
    v["environment"] = v["environment"] or DEFAULT_ENVIRONMENT
    for name in ("onnx", "data_dir"):  # from where gpubench runs, as its worker may not
        v[name] = str(Path(v[name]).expanduser().absolute()) if v[name] else None
    v["out"] = Path(v["out"])
    made = {o.request_field: v[o.name] for o in OPTIONS if o.request_field is not None}
    made.update(world_size=(v["nproc"] or 1) * v["nnodes"], **fields)
    return RunRequest(**made)


def batch_size_given(v: Mapping[str, Any]) -> Optional[int]:
    """--batch-size, or another name a scenario gives it (multi-stream's
    --samples-per-query, server's and offline's --max-batch): one line when that name is
    not its scenario's, or when both set the batch."""
    for o in OPTIONS:
        value = v.get(o.name)
        if o.alias_of != "batch_size" or value is None:
            continue
        if not o.applies(v["scenario"]):
            raise UserError(f"{o.flag} is for scenario {' and '.join(o.scenarios)}, not "
                            f"{v['scenario'] or 'throughput'}")
        if v["batch_size"] is not None and v["batch_size"] != value:
            raise UserError(f"{o.flag} {value} and --batch-size {v['batch_size']} both set the "
                            "batch: give one")
        return value
    return v["batch_size"]


def identity(req: RunRequest, resolved: Mapping[str, Any]) -> Dict[str, Any]:
    """The configuration columns (schema.CONFIGURATION_COLUMNS) of the request's rows:
    `resolved` first (the workload's name and batch size, the exec mode, ...), then each
    identity option's value: empty outside the scenarios that take it, and for an option
    of some scenarios what not giving it means there (the server's batcher timeout 0);
    then the request field of the column's name (world_size)."""
    from gpubench.measure.options import BY_NAME

    out: Dict[str, Any] = {}
    for column in schema.CONFIGURATION_COLUMNS:
        o = BY_NAME.get(column)
        if column in resolved:
            out[column] = resolved[column]
        elif o is not None and o.identity and o.request_field is not None:
            value = getattr(req, o.request_field)
            out[column] = (None if not (o.applies(req.scenario) and o.applies_to_mode(req.mode))
                           else o.in_effect(value) if o.scenarios else value)
        else:
            out[column] = getattr(req, column, None)
    return out


def generation_identity(req: RunRequest, workload: Any) -> Dict[str, Any]:
    """--mode generate: the prompt and output lengths it resolves to (plan.py); with the
    server's --prompt-dist, prompt_len is the distribution's mean (prompts.py)."""
    if req.mode != "generate":
        return {}
    from gpubench.measure.generation.plan import resolved_lengths, seq_len_of
    from gpubench.measure.generation.prompts import parse_prompt_dist
    prompt_len, output_len = resolved_lengths(req, workload)
    if req.scenario == "server" and req.prompt_dist is not None:  # a distribution: its mean
        room = seq_len_of(workload) - output_len
        prompt_len = parse_prompt_dist(req.prompt_dist).mean(prompt_len, room)
    return {"prompt_len": prompt_len, "output_len": output_len}


def onnx_identity(req: RunRequest) -> str:
    """The `onnx_sha256` column: the SHA-256 of the user's --onnx file (hashed once per
    process; UserError when unreadable), empty for the workload's own model."""
    from gpubench.backends.onnx_graph_check import file_sha256
    return file_sha256(req.onnx_path) if req.onnx_path is not None else ""


def request_identity(req: RunRequest) -> Dict[str, Any]:
    """The identity without preflight's availability checks (the suite's resume key,
    the row of a run that never produced one); a name that does not resolve stays as
    the request spelled it."""
    from gpubench.backends import get_backend, resolve_backend
    from gpubench.measure.scenarios.registry import resolve_scenario
    from gpubench.workloads import resolve_workload

    try:
        workload = resolve_workload(req.workload, req.params)
        backend = resolve_backend(req.backend) if req.backend == "auto" else get_backend(req.backend)
        batch_size = resolve_scenario(req.scenario, req.mode).batch_size(req, workload)
        return identity(req, {"workload": workload.name, "backend": backend.name,
                              "batch_size": batch_size, "params": workload.params_str,
                              "exec": req.exec or backend.exec_modes[0],
                              "onnx_sha256": onnx_identity(req),
                              **generation_identity(req, workload)})
    except UserError:
        spelled = {"params": ";".join(f"{k}={v}" for k, v in sorted(req.params.items())),
                   "exec": req.exec or schema.CONFIGURATION_DEFAULTS["exec"]}
        try:
            spelled["onnx_sha256"] = onnx_identity(req)
        except UserError:  # an unreadable file: no hash to record
            spelled["onnx_sha256"] = ""
        return identity(req, spelled)
