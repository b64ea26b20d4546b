"""`gpubench run`: one workload on one backend, written to a run folder and shown as a
table (or JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from gpubench.cli.argtypes import (
    accuracy, fraction, nonnegative_float, nonnegative_int, positive_float, positive_int,
)

MODES = ("train", "infer")  # kept in step with gpubench.backends.MODES (tested)
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
TELEMETRY = ("auto", "nvml", "cpu", "none")
DATA = ("synthetic", "mnist")  # kept in step with gpubench.data.sources.DATA_SOURCES (tested)
# kept in step with gpubench.backends.exec_modes (tested); `compile:MODE` via --compile-mode
EXEC_CHOICES = ("eager", "compile", "cuda-graphs", "xla")
COMPILE_CHOICES = ("default", "reduce-overhead", "max-autotune")
STRATEGY_CHOICES = ("ddp", "fsdp")  # kept in step with gpubench.ranks.STRATEGIES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="benchmark one workload on one backend",
                       description="Benchmark one workload on one backend and write a run folder.")
    p.add_argument("--workload", "-w", required=True, help="workload name (see gpubench list)")
    p.add_argument("--backend", "-b", default="auto", help="backend name, or auto (default)")
    p.add_argument("--mode", choices=MODES,
                   help="train (the default, but infer for a serving --scenario): forward, "
                        "backward and optimizer step; infer: forward only, with per-step "
                        "latency percentiles")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default); tf32 (TensorFloat-32 matmuls, NVIDIA Ampere and newer); "
                        "fp16 or bf16 (mixed precision)")
    p.add_argument("--batch-size", type=positive_int,
                   help="samples per step (default: the workload's own, see gpubench list)")
    p.add_argument("--trials", type=positive_int,
                   help="timed trials per process (default 6 with one process: the fewest that "
                        "give a 95%% CI of the median; 2 with several)")
    p.add_argument("--processes", type=positive_int, metavar="K",
                   help="spread the run over K worker processes one after another, --trials "
                        "each (default 1): the first calibrates, the rest "
                        "time the same work, so the run measures its own process-to-process "
                        "variation and compare can take the process as its unit")
    p.add_argument("--warmup-s", type=positive_float, default=1.0, help="warm-up budget (default 1 s)")
    p.add_argument("--min-trial-s", type=positive_float, default=1.0,
                   help="iterations are calibrated so one trial lasts at least this (default 1 s)")
    p.add_argument("--target-rel-ci", type=fraction,
                   help="add trials until the 95%% CI of the median is within this fraction "
                        "of it (e.g. 0.01 or 1%%), up to --max-time-s")
    p.add_argument("--max-time-s", type=positive_float, default=120.0,
                   help="time cap on trials when chasing --target-rel-ci (default 120 s)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="workload parameter, repeatable (e.g. image_size=64)")
    p.add_argument("--onnx", type=Path, metavar="PATH",
                   help="run this ONNX file (onnxruntime-*, tensorrt) instead of the workload's "
                        "own export; the workload still sets the input shape and FLOPs")
    p.add_argument("--data", choices=DATA, default="synthetic",
                   help="synthetic (default): learnable batches made with numpy, kept on the "
                        "device; mnist: the real MNIST (gpubench data fetch mnist)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="a folder holding the real set's files (default: the cache, "
                        "$GPUBENCH_DATA_DIR or ~/.cache/gpubench/data)")
    p.add_argument("--target-accuracy", type=accuracy, metavar="ACC",
                   help="time-to-accuracy: train epoch by epoch on --data mnist, evaluating "
                        "after each, until the test accuracy reaches ACC (e.g. 0.97)")
    p.add_argument("--max-epochs", type=positive_int, metavar="N",
                   help="time-to-accuracy: give up after N epochs (default 10)")
    p.add_argument("--exec", choices=EXEC_CHOICES, metavar="MODE",
                   help="execution mode: eager (default on torch), compile (torch.compile), "
                        "cuda-graphs (torch-cuda: the whole step captured and replayed); "
                        "tf-*-xla backends run xla. Compiling or capturing is timed apart "
                        "(compile_s) and checked against eager first")
    p.add_argument("--compile-mode", choices=COMPILE_CHOICES,
                   help="with --exec compile: torch.compile's mode (default: default)")
    p.add_argument("--check-accuracy", action="store_true",
                   help="inference: before timing, run the model (seeded, the same weights on "
                        "every backend) through this backend and fp32 torch on 1,000 test "
                        "images (--data mnist; else synthetic inputs); rows say accuracy_ok")
    add_serving_arguments(p)
    p.add_argument("--threads", type=positive_int, help="CPU threads for the framework")
    p.add_argument("--device", type=nonnegative_int, default=0, help="GPU index (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed for the weights and the synthetic data (default 0)")
    p.add_argument("--telemetry", choices=TELEMETRY, default="auto",
                   help="auto (default): NVML when the backend runs on an NVIDIA GPU, else CPU "
                        "(psutil, RAPL); nvml: watch GPU --device whatever the backend")
    p.add_argument("--sample-hz", type=positive_float, default=10.0,
                   help="telemetry sampling rate (default 10 Hz, at most 1000)")
    p.add_argument("--require-idle-gpu", action="store_true",
                   help="refuse to run (exit 2) when other processes use the GPU, or when NVML "
                        "cannot tell (without it, they are a warning)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default results/)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default): the run folder, then a table of the results; json: "
                        "one JSON document (path, status, stop reason, summary rows)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the run folder")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="stop the run after S seconds (a row with status=timeout)")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="data-parallel: N ranks through torchrun (torch.distributed.run), each "
                        "on its own GPU (--device is the first) or, on the CPU, over gloo; "
                        "rows per rank, every trial timed across all ranks on rank 0's clock")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES,
                   help="with --nproc: how the ranks share training; ddp (default): "
                        "DistributedDataParallel replicas; fsdp: the model sharded (FSDP2's "
                        "fully_shard where torch has it, else FSDP1; run.json says which)")
    p.add_argument("--nnodes", type=positive_int, default=1, metavar="M",
                   help="with --nproc: the run spans M nodes of --nproc ranks each (world size "
                        "N x M); run the same command on every node, each with its "
                        "--node-rank, all naming node 0 in --master-addr and --master-port. "
                        "Node 0 writes the results; the others keep their ranks' output")
    p.add_argument("--node-rank", type=nonnegative_int, default=0, metavar="R",
                   help="with --nnodes: this node's number, 0 to M-1 (default 0)")
    p.add_argument("--master-addr", metavar="HOST",
                   help="with --nnodes: node 0's address (one node: 127.0.0.1)")
    p.add_argument("--master-port", type=positive_int, metavar="PORT",
                   help="with --nnodes: a free port on node 0 (one node: a free one is picked)")
    p.add_argument("--python", metavar="PATH",
                   help="run in another Python environment: a venv folder or an interpreter "
                        "with this checkout's gpubench (gpubench envs add installs it); rows "
                        "name the environment (its registered name, else its path)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run in this process instead of a fresh worker (for debugging)")
    p.add_argument("--dry-run", action="store_true",
                   help="check this command line as the run would (every refusal, in the "
                        "Python that would run it), print the configuration, and stop: "
                        "nothing is measured or written")
    p.set_defaults(execute=execute)


SCENARIOS = ("throughput", "offline", "single-stream", "multi-stream", "server")


def add_serving_arguments(p: argparse.ArgumentParser) -> None:
    """The serving scenarios' options (MLPerf Inference's LoadGen scenarios)."""
    p.add_argument("--scenario", choices=SCENARIOS,
                   help="inference as it is served: single-stream (one sample a query, each "
                        "when the last completes), multi-stream (queries of "
                        "--samples-per-query samples), server (Poisson arrivals, a dynamic "
                        "batcher), offline (one query of every sample); default throughput "
                        "(resident batches back to back)")
    for flag, kind, metavar, text in SERVING_OPTIONS:
        p.add_argument(flag, type=kind, metavar=metavar, help=text)
    p.add_argument("--find-max-qps", action="store_true",
                   help="server: search (bisection) for the highest rate whose p99 latency "
                        "meets --latency-bound-ms; every probe a row")


# The serving scenarios' valued options: flag, type, metavar, help.
SERVING_OPTIONS = (
    ("--samples-per-query", positive_int, "S", "multi-stream: samples a query (default 8)"),
    ("--max-batch", positive_int, "N",
     "server, offline: the largest batch (default: --batch-size or the workload's)"),
    ("--target-qps", positive_float, "QPS", "server: the Poisson arrival rate, queries per second"),
    ("--latency-bound-ms", positive_float, "MS",
     "server: the p99 latency bound; rows say whether it held"),
    ("--batch-timeout-ms", nonnegative_float, "MS",
     "server: how long the batcher holds the oldest waiting query for more (default 0: what "
     "waits goes as soon as the model is free)"),
    ("--min-queries", positive_int, "N",
     "single-stream, multi-stream, server: queries a trial holds at least (default 662: the "
     "fewest that can claim p99 at 99%% confidence)"),
)


def serving_batch_size(args: argparse.Namespace) -> Optional[int]:
    """--batch-size, or what a serving scenario names it: multi-stream's
    --samples-per-query, server's and offline's --max-batch."""
    from gpubench.errors import UserError
    for flag, value, scenarios in (("--samples-per-query", args.samples_per_query, ("multi-stream",)),
                                   ("--max-batch", args.max_batch, ("server", "offline"))):
        if value is None:
            continue
        if args.scenario not in scenarios:
            raise UserError(f"{flag} is for scenario {' and '.join(scenarios)}, not "
                            f"{args.scenario or 'throughput'}")
        if args.batch_size is not None and args.batch_size != value:
            raise UserError(f"{flag} {value} and --batch-size {args.batch_size} both set the "
                            "batch: give one")
        return value
    return args.batch_size


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_RUN_FAILED
    from gpubench.cli.progress import run_progress
    from gpubench.cli.render import print_run
    from gpubench.backends.exec_modes import exec_with_compile_mode
    from gpubench.errors import UserError
    from gpubench.measure.protocol import DEFAULT_PROCESSES, ProtocolConfig, default_trials
    from gpubench.launch import RunInterrupted, make_launcher, run_one
    from gpubench.measure.request import DEFAULT_ENVIRONMENT, scenario_for
    from gpubench.launch.environments import name_for
    from gpubench.measure.runner import RunRequest
    from gpubench.workloads import parse_param_args

    processes = args.processes or DEFAULT_PROCESSES
    accuracy_run = args.target_accuracy is not None
    if args.compile_mode is not None and args.exec != "compile":
        raise UserError("--compile-mode is for --exec compile")
    if args.max_epochs is not None and not accuracy_run:
        raise UserError("--max-epochs is for time-to-accuracy runs: give --target-accuracy")
    if args.strategy is not None and args.nproc is None:
        raise UserError("--strategy is for runs of ranks: give --nproc N")
    if args.nproc is not None and args.no_isolate:
        raise UserError("--nproc starts ranks through torchrun; --no-isolate runs in this process")
    multi_node = (args.nnodes != 1 or args.node_rank != 0 or args.master_addr is not None
                  or args.master_port is not None)
    if multi_node and args.nproc is None:
        raise UserError("--nnodes, --node-rank, --master-addr and --master-port are for runs "
                        "of ranks: give --nproc N")
    from gpubench.measure.scenarios.serving import SERVING_SCENARIOS
    serving = args.scenario in SERVING_SCENARIOS
    if args.find_max_qps and args.trials is not None:
        raise UserError("--find-max-qps probes as the search goes: --trials is for runs at a "
                        "fixed --target-qps")
    python = checked_python(args.python) if args.python else None
    if python is None and not args.no_isolate:
        python = environment_for(args.backend)
    protocol = ProtocolConfig(
        trials=args.trials or default_trials(processes), warmup_s=args.warmup_s, min_trial_s=args.min_trial_s,
        target_rel_ci=args.target_rel_ci,
        max_time_s=args.max_time_s)
    request = RunRequest(
        workload=args.workload, backend=args.backend,
        mode=args.mode or ("infer" if serving else "train"),
        precision=args.precision, batch_size=serving_batch_size(args),
        params=parse_param_args(args.param), device_index=args.device, threads=args.threads,
        seed=args.seed, protocol=protocol, telemetry=args.telemetry,
        sample_hz=args.sample_hz, out_dir=args.out,
        onnx_path=str(args.onnx.absolute()) if args.onnx else None,
        require_idle_gpu=args.require_idle_gpu, processes=processes, data=args.data,
        data_dir=str(Path(args.data_dir).expanduser().absolute()) if args.data_dir else None,
        target_accuracy=args.target_accuracy, max_epochs=args.max_epochs,
        check_accuracy=args.check_accuracy,
        exec=exec_with_compile_mode(args.exec, args.compile_mode) if args.exec else None,
        scenario=scenario_for(args.workload, parse_param_args(args.param), args.target_accuracy,
                              args.scenario),
        target_qps=args.target_qps, latency_bound_ms=args.latency_bound_ms,
        batch_timeout_ms=args.batch_timeout_ms, find_max_qps=args.find_max_qps,
        min_queries=args.min_queries,
        world_size=(args.nproc or 1) * args.nnodes,
        strategy=(args.strategy or "ddp") if args.nproc is not None else None,
        environment=DEFAULT_ENVIRONMENT if python is None else name_for(python))
    show_progress = not args.quiet and sys.stderr.isatty()
    # process (default): a fresh worker, a clean CUDA context, the path suites take
    # torchrun (--nproc): the ranks through torch.distributed.run
    if args.nproc is not None:
        from gpubench.launch.torchrun import TorchrunLauncher
        launcher = TorchrunLauncher(python, nnodes=args.nnodes, node_rank=args.node_rank,
                                    master_addr=args.master_addr, master_port=args.master_port)
    else:
        launcher = make_launcher("inline" if args.no_isolate else "process", python)
    if args.dry_run:
        return dry_run(request, launcher)
    try:
        with run_progress(show_progress) as progress:
            outcome = run_one(request, launcher, args.timeout, progress)
    except RunInterrupted as exc:  # Ctrl-C or SIGTERM: the run wrote what finished
        raise KeyboardInterrupt(show_kept(exc.folder, args.format, args.quiet)) from None
    if outcome.stop_reason == "rows_on_node_0":  # another node of a run of several
        print(outcome.path)
        if not args.quiet:
            print(f"node {args.node_rank} of {args.nnodes}: its ranks finished; node 0 "
                  "writes the run's rows (this folder keeps their output in worker.log)")
        return EXIT_OK
    for warning in outcome.warnings:  # also in run.json
        print(f"gpubench: warning: {warning}", file=sys.stderr)
    if args.target_rel_ci is not None and len(outcome.summary):  # stopped on a cap short of it
        from gpubench.cli.result_table import THR, missed_target_text, rel_ci_value
        row = outcome.summary.iloc[0]
        missed = missed_target_text(args.target_rel_ci, outcome.stop_reason, row.get("n_ok"),
                                    rel_ci_value(row, THR))
        if missed:
            print(f"gpubench: warning: {missed}", file=sys.stderr)
    print_run(outcome, args.format, args.quiet)
    return EXIT_OK if outcome.status == "ok" else EXIT_RUN_FAILED


def dry_run(request: Any, launcher: Any) -> int:
    """--dry-run: the launcher's preflight (a refusal raises, exit 2), then the
    configuration the run would have, one key=value line."""
    from gpubench.cli import EXIT_OK
    from gpubench.measure.request import request_identity

    launcher.preflight(request)
    identity = request_identity(request)
    print("ok: " + " ".join(f"{k}={v}" for k, v in identity.items()
                            if v not in (None, "") and k != "onnx_sha256"))
    return EXIT_OK


def environment_for(backend: str) -> "str | None":
    """The interpreter of the first known environment that can run `backend` when this
    one cannot (TensorFlow in .venv-tf, say), said on stderr; None: this one."""
    from gpubench.backends import all_backends
    from gpubench.launch.environments import DEFAULT, EnvironmentSet

    factory = all_backends().get(backend)
    if factory is None or factory().is_available()[0]:  # unknown: preflight says so
        return None
    envs = EnvironmentSet([], install=False)
    chosen = envs.choose(backend)
    for line in envs.warnings:
        print(f"gpubench: warning: {line}", file=sys.stderr)
    if chosen.name == DEFAULT:
        return None
    print(f"gpubench: {backend} is not available here; it runs in environment {chosen.name} "
          f"({chosen.python})", file=sys.stderr)
    return chosen.python


def checked_python(path: str) -> str:
    """--python PATH as an interpreter that can run this checkout's workers; UserError
    saying what is wrong (not a Python, too old, without gpubench's dependencies or
    this gpubench: `run` installs nothing)."""
    from gpubench.errors import UserError
    from gpubench.launch.interpreter import is_this_python, probe, resolve_python
    from gpubench.launch.environments import Environment, ready

    try:
        python = resolve_python(path)
    except UserError as exc:
        raise UserError(f"--python: {exc}") from None
    if not is_this_python(python):
        env = Environment("", python, f"--python {path}")
        try:
            found = probe(python)
        except UserError as exc:
            raise UserError(f"{env.where}: {exc}") from None
        found, _ = ready(env, found, install=False)
        if not found.has_this_gpubench:
            raise UserError(f"--python {path}: {python} does not import gpubench; "
                            f"`gpubench envs add NAME {path}` installs this checkout there")
    return python


def show_kept(folder: Optional[Path], fmt: str, quiet: bool) -> str:
    """After Ctrl-C or SIGTERM: the run folder and its kept trials' summary, shown as a
    finished run's are; returns what the CLI's one closing line on stderr says."""
    if folder is None:
        return "no trial had finished; nothing was kept"
    from gpubench.cli.render import print_run
    from gpubench.errors import UserError
    from gpubench.measure.run_record import RunOutcome
    from gpubench.results.rank_rows import one_row_per_trial
    from gpubench.results.reader import read_run
    from gpubench.results.summary import summarize

    try:
        data = read_run(folder)
    except (UserError, OSError, ValueError):  # a worker killed while writing
        print(folder, flush=True)
        return f"the trials that finished are in {folder}"
    trials = data.trials
    summary = data.summary if data.summary is not None else summarize(trials, "interrupted")
    print_run(RunOutcome(folder, "interrupted", "interrupted", trials, summary), fmt, quiet)
    ok = one_row_per_trial(trials[trials["status"] == "ok"])  # ranks: a trial once
    if not len(ok):
        return f"no trial had finished; the run's record is in {folder}"
    column = "throughput_samples_per_s_median"
    median = (summary[column].iloc[0] if len(summary) == 1 and column in summary
              else ok["throughput_samples_per_s"].median())
    return (f"{len(ok)} finished trial{'' if len(ok) == 1 else 's'} kept in {folder} "
            f"(median {median:,.0f} samples/s), with run.json and summary.csv")
