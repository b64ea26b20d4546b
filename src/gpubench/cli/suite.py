"""`gpubench suite CONFIG.yaml`: a matrix of runs, each in an isolated worker; one run
never stops the others. Exit 4 when a run failed or timed out, or when every run was
unsupported here (a GPU suite on a machine without a GPU); unsupported runs beside ok
ones are not a failure. 0 otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from gpubench.cli.argtypes import path_arg, positive_float
from gpubench.cli.suite_slurm import add_slurm_arguments, check_executor_options
from gpubench.suite.shards import parse_shard


def _devices(text: str) -> List[int]:
    try:
        devices = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU indices like 0,1,2; got {text!r}") from None
    if not devices or any(d < 0 for d in devices) or len(set(devices)) != len(devices):
        raise argparse.ArgumentTypeError(f"expected distinct GPU indices like 0,1,2; got {text!r}")
    return devices


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("suite", help="run a YAML matrix of benchmarks in isolated workers",
                       description="Run every configuration a suite file expands to "
                                   "(workloads x backends x modes x precisions x batch sizes x "
                                   "params), each in a fresh worker process, and merge the "
                                   "results into one suite folder. A run that fails, crashes or "
                                   "times out becomes a row and the others go on. Exit 4 when a "
                                   "run failed or timed out, or when every run was unsupported "
                                   "here; 0 otherwise.")
    p.add_argument("config", type=path_arg, help="suite file (see configs/)")
    p.add_argument("--out", type=path_arg, default=Path("results"), help="results folder (default results/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the newest results of this suite in --out, skipping runs already ok")
    p.add_argument("--filter", metavar="KEY=GLOB[,...]",
                   help="only runs matching all conditions, e.g. backend=torch-*,mode=infer")
    p.add_argument("--dry-run", action="store_true", help="print the expanded matrix and exit")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="per-run timeout, overriding the file")
    p.add_argument("--devices", type=_devices, metavar="0,1,...",
                   help="GPUs to spread runs over, one run per GPU at a time (default: each run's own device)")
    p.add_argument("--shard", type=parse_shard, metavar="i/N",
                   help="run part i of N (balanced by the estimate, longest first; the same "
                        "parts on every machine); with --resume, that part's own folder")
    p.add_argument("--batch-id", metavar="ID",
                   help="with --shard: the same id on every shard of one suite run (e.g. "
                        "the CI run's), so their rows share one suite_id (default: "
                        "$SLURM_ARRAY_JOB_ID)")
    add_slurm_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="print only the suite folder")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default): the suite folder, then a table of every run; json: "
                        "one JSON document (path, run counts, summary rows) and nothing else "
                        "on standard output")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_RUN_FAILED
    from gpubench.cli.progress import suite_progress
    from gpubench.cli.render import print_suite, print_suite_plan
    from gpubench.suite.executor import execute_suite, open_suite_folder
    from gpubench.suite.plan import check_rank_devices, plan_suite

    check_executor_options(args)
    if args.executor == "slurm" and not args.dry_run:
        from gpubench.cli.suite_slurm import execute_slurm
        return execute_slurm(args)
    plan = plan_suite(args.config, args.out, args.filter, args.resume, install=not args.dry_run,
                      shard=args.shard)
    for line in plan.environments.notes:  # gpubench installed into a named environment
        print(f"gpubench: {line}", file=sys.stderr)
    for line in plan.environments.warnings:
        print(f"gpubench: warning: {line}", file=sys.stderr)
    if args.dry_run:
        from gpubench.suite.estimate import estimate_suite
        print_suite_plan(plan, args.format, estimate=estimate_suite(plan, args.devices, args.timeout))
        if args.executor == "slurm":  # the array's tasks: each shard's share of the estimate
            from gpubench.suite.estimate import format_duration
            from gpubench.suite.shards import shard_weights_s
            count = args.nodes or 1
            for i, seconds in enumerate(shard_weights_s(plan.runs, count), 1):
                print(f"slurm task {i}/{count}: about {format_duration(seconds)}", file=sys.stderr)
        return EXIT_OK
    devices: Optional[List[int]] = args.devices
    if devices is None:
        devices = [0]
    else:
        check_devices(devices)
        check_rank_devices(plan, devices)
    options = {"filter": args.filter, "timeout_s": args.timeout, "devices": devices}
    if args.shard is not None:
        from gpubench.suite.shards import batch_id_of
        options["batch_id"] = batch_id_of(args.batch_id)
    suite = open_suite_folder(plan, args.out, options)
    if args.format != "json":  # JSON: standard output holds one document
        print(suite.path, flush=True)
    before = len(suite.meta.get("runs", []))  # --resume: the runs of earlier sessions
    try:
        with suite_progress(not args.quiet and sys.stderr.isatty(), len(plan.runs)) as progress:
            outcome = execute_suite(plan, suite, devices, args.timeout, progress)
    except KeyboardInterrupt:  # the CLI's one closing line: what was kept, how to go on
        raise KeyboardInterrupt(interrupted_text(args, suite.path, len(plan.runs),
                                                 len(suite.meta.get("runs", [])) - before)) from None
    for warning in outcome.warnings:
        print(f"gpubench: warning: {warning}", file=sys.stderr)
    if not args.quiet or args.format == "json":
        print_suite(outcome, plan, args.format)
    failing = sum(outcome.statuses.get(s, 0) for s in ("failed", "timeout"))
    if not failing and set(outcome.statuses) == {"unsupported"} and not plan.skipped:
        from gpubench.cli import error_line
        error_line("every run of the suite was unsupported here: "
                   + outcome.first_errors.get("unsupported", "no reason recorded"))
        return EXIT_RUN_FAILED
    return EXIT_RUN_FAILED if failing else EXIT_OK


def interrupted_text(args: argparse.Namespace, folder: Path, planned: int, finished: int) -> str:
    """How many runs finished before Ctrl-C, where they are, and the command that
    runs the rest (an interrupted run is run again whole)."""
    import shlex

    again = ["gpubench", "suite", str(args.config), "--out", str(args.out), "--resume"]
    if args.filter:
        again += ["--filter", args.filter]
    if args.shard is not None:
        again += ["--shard", str(args.shard)] + (["--batch-id", args.batch_id] if args.batch_id else [])
    return (f"{finished} of {planned} run{'' if planned == 1 else 's'} finished, kept in "
            f"{folder}; `{shlex.join(again)}` runs the rest")


def check_devices(devices: List[int]) -> None:
    """An explicit --devices names GPUs this machine has, as CUDA numbers them (after
    CUDA_VISIBLE_DEVICES), counted through NVML (no framework import). `--devices 0` is
    the default and where CPU runs go, so it is always accepted; without a usable NVIDIA
    driver every other index is refused, with the reason."""
    from gpubench.errors import UserError
    from gpubench.telemetry.errors import TelemetryError
    from gpubench.telemetry.nvml import Nvml
    from gpubench.telemetry.nvml_select import visible_devices

    if devices == [0]:
        return
    shown = ",".join(str(d) for d in devices)
    try:
        with Nvml() as nvml:
            gpus = nvml.devices()
    except TelemetryError as exc:
        raise UserError(f"--devices {shown}: the GPUs here cannot be counted ({exc}); "
                        "without a usable NVIDIA driver only device 0, the default, runs") from None
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        count = len(visible_devices(gpus, spec))
    except TelemetryError:  # MIG instances: CUDA numbers them, NVML cannot tell how
        return
    missing = [str(d) for d in devices if d >= count]
    if missing:
        where = f" with CUDA_VISIBLE_DEVICES={spec!r}" if spec is not None else ""
        have = f"indices 0-{count - 1}" if count > 1 else "index 0" if count else "none"
        raise UserError(f"--devices {shown}: no GPU {', '.join(missing)} here "
                        f"({count} GPU{'' if count == 1 else 's'}{where}: {have})")
