"""Every run option, declared once (what an option is: measure/option.py). In this order
`gpubench run` shows its flags and docs/usage.md its options table; suites take the keys
(settings, and matrix keys crossed like `backends`) with these defaults; the RunRequest
has a field for each (measure/request.py), a scenario's options as one record
(RunRequest.serving, .accuracy); a suite run's label shows the ones with a `label`.

The options of a scenario are declared beside it (scenarios/serving/options.py,
scenarios/time_to_accuracy_options.py) and gathered here. A new option is one entry in
one of these lists; an identity option is also a column of results/schema.py (with the
schema version and a migration: a test holds the two together).

No framework and no registry is imported here: allowed values that a registry holds are
asked for when a value is checked.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from gpubench.errors import UserError
from gpubench.measure.generation.options import GENERATION_OPTIONS
from gpubench.measure.option import (
    FRACTION, HOST, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, PARAM, PATH, PORT, POSITIVE_FLOAT,
    POSITIVE_INT, SEED, SWITCH, Kind, Option,
)
from gpubench.measure.protocol_config import (
    MAX_THROTTLE_RERUNS, THROTTLE_POLICIES, ProtocolConfig,
)
from gpubench.measure.scenarios.serving.options import SERVING_OPTIONS, ServingOptions
from gpubench.measure.scenarios.time_to_accuracy_options import (
    ACCURACY_OPTIONS, AccuracyOptions,
)
from gpubench.results import schema


def _held(module: str, name: str) -> Callable[[], Sequence[str]]:
    """Allowed values that `module`.`name` holds (a tuple, or a function listing a
    registry's names), imported when first asked for."""
    def values() -> Sequence[str]:
        found = getattr(importlib.import_module(module), name)
        return found() if callable(found) else found
    return values


def _lock_clocks(text: str) -> Optional[str]:
    """--lock-clocks: max, base or a whole number of MHz (kept as text)."""
    text = text.strip().lower()
    return text if text in ("max", "base") or (text.isdigit() and 0 < int(text) < 100000) \
        else None


LOCK_CLOCKS = Kind(str, "max, base or a clock in MHz", lambda v: _lock_clocks(str(v)) is not None,
                   _lock_clocks)

RANKS_ONLY = ("--nnodes, --node-rank, --master-addr and --master-port are for runs of ranks: "
              "give --nproc N")

# What is measured: the classic configuration.
CONFIGURATION: Tuple[Option, ...] = (
    Option("workload", "workload name (see gpubench list)", required=True,
           flags=("--workload", "-w"), choices=_held("gpubench.workloads", "workload_names"),
           cli_choices=False, identity=True, suite="matrix", suite_key="workloads"),
    Option("backend", "backend name, or auto (the default: torch-cuda if usable, else "
                      "torch-cpu)", default="auto", flags=("--backend", "-b"),
           choices=_held("gpubench.backends", "backend_names"), cli_choices=False,
           identity=True, suite="matrix", suite_key="backends", suite_required=True),
    Option("mode", "train (the default, but infer for a serving --scenario and on a backend "
                   "that runs inference only: onnxruntime-*, tensorrt): forward, backward "
                   "and optimizer step; infer: forward only, with per-step latency "
                   "percentiles; generate (gpt on torch): a prompt's prefill, then greedy "
                   "decode over a KV cache, with TTFT/TPOT/ITL", shown_default="train (infer with a serving --scenario or "
                                                "an inference-only backend)",
           choices=_held("gpubench.backends.base", "MODES"), identity=True, suite="matrix",
           suite_key="modes"),
    Option("precision", "fp32 (default); tf32 (TensorFloat-32 matmuls, NVIDIA Ampere and "
                        "newer); fp16 or bf16 (mixed precision)", default="fp32",
           choices=_held("gpubench.backends.base", "PRECISIONS"), identity=True,
           suite="matrix", suite_key="precisions"),
    Option("batch_size", "samples per step (default: the workload's own, see gpubench list)",
           POSITIVE_INT, shown_default="the workload's", identity=True, suite="matrix",
           suite_key="batch_sizes"),
)

# The protocol (measure/protocol.py): trials, their length, the CI target.
PROTOCOL: Tuple[Option, ...] = (
    Option("trials", "timed trials per process (default 6 with one process: the fewest that "
                     "give a 95%% CI of the median; 2 with several)", POSITIVE_INT,
           shown_default="6 (2 with --processes)", group="protocol"),
    Option("processes", "spread the run over K worker processes one after another, --trials "
                        "each (default 1): the first calibrates, the rest time the same work, "
                        "so the run measures its own process-to-process variation and compare "
                        "can take the process as its unit", POSITIVE_INT, metavar="K",
           shown_default="1"),
    Option("warmup_s", "warm-up budget (default 1 s)", POSITIVE_FLOAT,
           default=ProtocolConfig.warmup_s, group="protocol"),
    Option("min_trial_s", "iterations are calibrated so one trial lasts at least this "
                          "(default 1 s)", POSITIVE_FLOAT, default=ProtocolConfig.min_trial_s,
           group="protocol"),
    Option("target_rel_ci", "add trials until the 95%% CI of the median is within this "
                            "fraction of it (e.g. 0.01 or 1%%), up to --max-time-s", FRACTION,
           shown_default="off", group="protocol"),
    Option("max_time_s", "time cap on trials when chasing --target-rel-ci (default 120 s)",
           POSITIVE_FLOAT, default=ProtocolConfig.max_time_s, group="protocol"),
)

# Throttle-aware trials (measure/thermal.py): what a throttled trial becomes, and a
# thermally comparable start for every trial. Protocol, not identity.
THERMAL: Tuple[Option, ...] = (
    Option("on_throttle", "a trial whose GPU clocks were throttled (NVML: power cap, thermal, "
                          "hardware slowdown or power brake; not idle or clock settings): "
                          "exclude (default): kept in trials.csv with its reasons, left out of "
                          "the statistics and replaced, up to --throttle-reruns; rerun: the "
                          "same, each replacement after a cool start (--cooldown-s, "
                          "--start-below-c, else the first trial's start temperature + 2 C); "
                          "flag: kept in the statistics, reasons named; fail: the run stops",
           default=ProtocolConfig.on_throttle, choices=lambda: THROTTLE_POLICIES,
           noun="throttle policy", group="protocol"),
    Option("throttle_reruns", f"replacements of throttled trials a run may make (default 2, "
                              f"at most {MAX_THROTTLE_RERUNS}); past them a throttled trial "
                              "counts, left out, and the run warns",
           Kind(int, f"an integer in 0..{MAX_THROTTLE_RERUNS}",
                lambda v: 0 <= v <= MAX_THROTTLE_RERUNS),
           default=ProtocolConfig.throttle_reruns, metavar="N", group="protocol"),
    Option("cooldown_s", "wait S seconds before each trial (rows say cooldown_s, the seconds "
                         "waited)", NONNEGATIVE_FLOAT, metavar="S", shown_default="none",
           group="protocol"),
    Option("start_below_c", "before each trial, wait (at most 300 s, then a warning) until the "
                            "GPU is below TEMP degrees C (NVML; rows say start_temp_c)",
           Kind(float, "a temperature in (0, 100] degrees C",
                lambda v: v == v and 0 < v <= 100),
           metavar="TEMP", shown_default="none", group="protocol"),
)

# What the model is and what it runs on: parameters, a user's ONNX file, the data.
INPUTS: Tuple[Option, ...] = (
    Option("params", "workload parameter, repeatable (e.g. image_size=64); a suite's "
                     "`params` maps each to a list, crossed", PARAM,
           flags=("--param", "-p"), metavar="KEY=VALUE", identity=True, suite=None),
    Option("onnx", "run this ONNX file (onnxruntime-*, tensorrt) instead of the workload's "
                   "own export; the workload still sets the input shape and FLOPs", PATH,
           metavar="PATH", in_request="onnx_path", suite=None),
    Option("data", "synthetic (default): learnable batches made with numpy, kept on the "
                   "device; mnist: the real MNIST (gpubench data fetch mnist)",
           default="synthetic", choices=_held("gpubench.data.sources", "DATA_SOURCES"),
           identity=True, label="data {}"),
    Option("data_dir", "a folder holding the real set's files (default: the cache, "
                       "$GPUBENCH_DATA_DIR or ~/.cache/gpubench/data)", PATH, metavar="DIR",
           shown_default="the cache"),
)

# How the step runs, and an output check before timing.
EXECUTION: Tuple[Option, ...] = (
    Option("exec", "execution mode: eager (default on torch), compile (torch.compile), "
                   "cuda-graphs (torch-cuda: the whole step captured and replayed); tf-*-xla "
                   "backends run xla. Compiling or capturing is timed apart (compile_s) and "
                   "checked against eager first", metavar="MODE", shown_default="the backend's",
           choices=_held("gpubench.backends.exec_modes", "EXEC_MODES"), noun="exec mode",
           identity=True, suite="matrix", suite_key="execs", label="exec {}"),
    Option("compile_mode", "with --exec compile: torch.compile's mode (default: default); "
                           "a suite writes it into execs (compile:max-autotune)",
           choices=_held("gpubench.backends.exec_modes", "COMPILE_MODES"), suite=None,
           in_request=None, needs=("exec", "compile", "--compile-mode is for --exec compile")),
    Option("check_accuracy", "inference: before timing, run the model (seeded, the same "
                             "weights on every backend) through this backend and fp32 torch "
                             "on 1,000 test images (--data mnist; else synthetic inputs); rows "
                             "say accuracy_ok", SWITCH, default=False),
)

# The scenario: the loop that measures (scenarios/registry.py).
SCENARIO: Tuple[Option, ...] = (
    Option("scenario", "inference as it is served: single-stream (one sample a query, each "
                       "when the last completes), multi-stream (queries of "
                       "--samples-per-query samples), server (Poisson arrivals, a dynamic "
                       "batcher), offline (one query of every sample); default throughput "
                       "(resident batches back to back), or what the workload or "
                       "--target-accuracy implies (collective, time-to-accuracy)",
           metavar="NAME", shown_default="throughput",
           choices=_held("gpubench.measure.scenarios.registry", "scenario_names"),
           identity=True, suite="matrix", suite_key="scenarios", label="{}"),
)

# The device, the framework's threads, seeds, what is watched beside the run.
MACHINE: Tuple[Option, ...] = (
    Option("threads", "CPU threads for the framework", POSITIVE_INT,
           shown_default="the framework's", identity=True),
    Option("device", "GPU index (default 0)", NONNEGATIVE_INT, default=0,
           in_request="device_index"),
    Option("seed", "seed for the weights and the synthetic data (default 0)", SEED,
           default=0),
    Option("telemetry", "auto (default): NVML when the backend runs on an NVIDIA GPU, else "
                        "CPU (psutil, RAPL); nvml: watch GPU --device whatever the backend",
           default="auto", choices=_held("gpubench.telemetry", "TELEMETRY_KINDS")),
    Option("sample_hz", "telemetry sampling rate (default 10 Hz, at most 1000)",
           POSITIVE_FLOAT, default=10.0),
    # The clock and power policy (telemetry/clock_policy.py): set through NVML by the
    # launcher's parent before the run, restored after it.
    Option("lock_clocks", "lock the GPU's SM clock through NVML for the run: MHz, max (its "
                          "max SM clock) or base (its default applications clock); restored "
                          "after, also after a crash or Ctrl-C. Needs root (sudo)",
           LOCK_CLOCKS, metavar="MHz|max|base", shown_default="none", identity=True,
           label="clocks {}"),
    Option("power_limit_w", "set the GPU's board power limit (watts) through NVML for the "
                            "run, within its constraints; the limit before is put back after. "
                            "Needs root (sudo). A suite sweeps it with power_limits",
           POSITIVE_FLOAT, flags=("--power-limit",), metavar="WATTS",
           shown_default="the board's", identity=True, suite="matrix",
           suite_key="power_limits", label="{:g} W"),
    Option("require_idle_gpu", "refuse to run (exit 2) when other processes use the GPU, or "
                               "when NVML cannot tell (without it, they are a warning)", SWITCH,
           default=False),
)

# How a run is shown and kept.
OUTPUT: Tuple[Option, ...] = (
    Option("out", "results folder (default results/)", PATH, default="results",
           shown_default="results/", in_request="out_dir", suite=None),
    Option("format", "table (default): the run folder, then a table of the results; json: "
                     "one JSON document (path, status, stop reason, summary rows)",
           default="table", choices=lambda: ("table", "json"), suite=None, in_request=None),
    Option("quiet", "print only the run folder", SWITCH, default=False, flags=("--quiet", "-q"),
           suite=None, in_request=None),
    Option("timeout_s", "stop the run after S seconds (a row with status=timeout); a suite's "
                        "applies to each worker process of a run", POSITIVE_FLOAT,
           flags=("--timeout",), metavar="S", shown_default="none (a suite: 600)",
           suite_default=600.0, in_request=None),
)

# The launch: ranks through torchrun, and the Python environment it starts.
LAUNCH: Tuple[Option, ...] = (
    Option("nproc", "data-parallel: N ranks through torchrun (torch.distributed.run), each "
                    "on its own GPU (--device is the first) or, on the CPU, over gloo; rows per "
                    "rank, every trial timed across all ranks on rank 0's clock", POSITIVE_INT,
           metavar="N", suite="matrix", suite_key="nprocs", in_request=None, label="nproc {}"),
    Option("strategy", "with --nproc: how the ranks share training; ddp (default): "
                       "DistributedDataParallel replicas; fsdp: the model sharded (FSDP2's "
                       "fully_shard where torch has it, else FSDP1; run.json says which)",
           means="ddp", choices=_held("gpubench.ranks", "STRATEGIES"), identity=True, label="{}",
           needs=("nproc", None, "--strategy is for runs of ranks: give --nproc N")),
    Option("nnodes", "with --nproc: the run spans M nodes of --nproc ranks each (world size "
                     "N x M); run the same command on every node, each with its --node-rank, "
                     "all naming node 0 in --master-addr and --master-port. Node 0 writes the "
                     "results; the others keep their ranks' output", POSITIVE_INT, default=1,
           metavar="M", suite=None, in_request=None, needs=("nproc", None, RANKS_ONLY)),
    Option("node_rank", "with --nnodes: this node's number, 0 to M-1 (default 0)",
           NONNEGATIVE_INT, default=0, metavar="R", suite=None, in_request=None,
           needs=("nproc", None, RANKS_ONLY)),
    Option("master_addr", "with --nnodes: node 0's address (one node: 127.0.0.1)", HOST,
           metavar="HOST", suite=None, in_request=None, needs=("nproc", None, RANKS_ONLY)),
    Option("master_port", "with --nnodes: a free port on node 0 (one node: a free one is "
                          "picked)", PORT, metavar="PORT", suite=None, in_request=None,
           needs=("nproc", None, RANKS_ONLY)),
    Option("environment", "run in another Python environment: a name gpubench envs add "
                          "registered, a venv folder or an interpreter with this checkout's "
                          "gpubench (gpubench envs add installs it); rows name the environment "
                          "(its registered name, else its path). A suite names environments "
                          "of its file", PATH,
           means="default", flags=("--python",), metavar="NAME|PATH",
           shown_default="where the backend is available", identity=True, suite="matrix",
           suite_key="environments", label="env {}"),
    Option("isolation", "how each worker process starts: fork (default where it works): "
                        "forked from a server that imported the framework once per suite "
                        "or run (0.3 s a run instead of 2.7 s, torch-cpu), in its own "
                        "process group as a fresh one; fresh: a new interpreter each; "
                        "run.json says which ran", default="fork",
           choices=lambda: ("fork", "fresh")),
    Option("no_isolate", "run in this process instead of a fresh worker (for debugging)",
           SWITCH, default=False, suite=None, in_request=None),
    Option("dry_run", "check this command line as the run would (every refusal, in the "
                      "Python that would run it), print the configuration, and stop: nothing "
                      "is measured or written", SWITCH, default=False, suite=None,
           in_request=None),
)

# A suite's own: how often each configuration runs.
SUITE: Tuple[Option, ...] = (
    Option("repeats", "runs per configuration, interleaved: compare then tests per-run "
                      "medians (run-to-run noise included)", POSITIVE_INT, cli=False,
           suite_default=1, in_request=None),
)

# In the order `gpubench run --help` lists them; the scenarios' own after their switch.
OPTIONS: Tuple[Option, ...] = (CONFIGURATION + PROTOCOL + THERMAL + INPUTS + ACCURACY_OPTIONS + EXECUTION
                               + SCENARIO + SERVING_OPTIONS + GENERATION_OPTIONS + MACHINE
                               + OUTPUT + LAUNCH + SUITE)
BY_NAME: Dict[str, Option] = {o.name: o for o in OPTIONS}
# The records of options that belong together (an Option's `group`): one RunRequest field
# each, holding them (measure/request.py).
GROUPS: Dict[str, type] = {"protocol": ProtocolConfig, "accuracy": AccuracyOptions,
                           "serving": ServingOptions}
assert len(BY_NAME) == len(OPTIONS), "two options of one name"
for _o in OPTIONS:  # an identity option is a configuration column (results/schema.py)
    if _o.identity:
        schema.declare_configuration_column(_o.name, _o.default)


def option(name: str) -> Option:
    return BY_NAME[name]


def suite_options(kind: Optional[str] = None) -> List[Option]:
    """The options a suite file takes (`kind`: only its settings or its matrix keys)."""
    return [o for o in OPTIONS if o.key is not None and (kind is None or o.suite == kind)]


def suite_default(o: Option) -> Any:
    return o.default if o.suite_default is None else o.suite_default


def given(o: Option, value: Any) -> bool:
    """Whether a value differs from not giving the option (a switch: set)."""
    return value is not None and value is not False and value != o.default


def check_needs(values: Mapping[str, Any]) -> None:
    """The command line's options that mean something only beside another (--strategy
    without --nproc): one line (UserError) for the first given without it."""
    for o in OPTIONS:
        if o.needs is None or not given(o, values.get(o.name, o.default)):
            continue
        other, wanted, line = o.needs
        value = values.get(other)
        if value is None or (wanted is not None and value != wanted):
            raise UserError(line)


def check_value(o: Option, value: Any) -> Optional[str]:
    """What is wrong with a value of `o` already of its kind's type (its range, or a
    name outside the allowed ones); None when nothing is."""
    if value is None or o.kind is PARAM:
        return None
    expected = o.kind.check(value)
    if expected:
        return f"expected {expected}, got {value!r}"
    return o.unknown(value)


def label_parts(values: Mapping[str, Any], scenario: Optional[str]) -> List[str]:
    """What a suite run's label adds for its options: those with a `label`, given a
    value other than their default, that a run of `scenario` takes."""
    parts = []
    for o in OPTIONS:
        value = values.get(o.name)
        if o.label is None or value in (None, False, o.default, o.means):
            continue
        if not o.applies(scenario) or not o.applies_to_mode(values.get("mode")):
            continue
        if o.needs is not None and values.get(o.needs[0]) is None:
            continue
        parts.append(o.label.format(value))  # a switch's label has no {}
    return parts


def values_with_defaults(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Every option's value: the given ones (the command line's, a suite run's), the
    defaults for the rest."""
    out = {o.name: o.default for o in OPTIONS}
    out.update({k: v for k, v in values.items() if k in BY_NAME})
    return out

