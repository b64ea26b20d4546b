"""`gpubench run`: one workload on one backend, written to a run folder and shown as a
table (or JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="benchmark one workload on one backend",
                       description="Benchmark one workload on one backend and write a run folder.")
    p.set_defaults(execute=execute)
    p.add_arguments = add_arguments  # the declared options: made when `run` parses (cli/__init__.py)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from gpubench.measure.options import OPTIONS

    for o in OPTIONS:  # every run option, as measure/options.py declares it
        if o.cli:
            add_option(p, o)


def add_option(p: argparse.ArgumentParser, o: Any) -> None:
    from gpubench.cli.argtypes import Choices, arg_type
    from gpubench.measure.option import PARAM, SWITCH

    kwargs: Dict[str, Any] = {"dest": o.name, "help": o.help}
    if o.kind is SWITCH:
        kwargs["action"] = "store_true"
    elif o.kind is PARAM:
        kwargs.update(action="append", default=[], metavar=o.metavar)
    else:
        kwargs.update(type=arg_type(o.kind), default=o.default, metavar=o.metavar)
    if o.required:
        kwargs["required"] = True
    action = p.add_argument(*o.cli_flags, **kwargs)
    if o.choices is not None and o.cli_choices and o.kind is not SWITCH:
        # set after add_argument, which formats the usage (asking for every choice):
        # a registry's names are asked for when a value is parsed or --help shown
        action.choices = Choices(o.choices)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_RUN_FAILED
    from gpubench.cli.progress import run_progress
    from gpubench.cli.render import print_run
    from gpubench.errors import UserError
    from gpubench.launch import RunInterrupted, make_launcher, run_one
    from gpubench.launch.environments import name_for
    from gpubench.measure.options import check_needs
    from gpubench.launch.torchrun_slurm import in_slurm_allocation
    from gpubench.measure.request import DEFAULT_ENVIRONMENT, request_from

    check_needs(vars(args))
    if args.nproc is not None and args.no_isolate:
        raise UserError("--nproc starts ranks through torchrun; --no-isolate runs in this process")
    if args.find_max_qps and args.trials is not None:
        raise UserError("--find-max-qps probes as the search goes: --trials is for runs at a "
                        "fixed --target-qps")
    python = checked_python(args.environment) if args.environment else None
    if python is None and not args.no_isolate:
        python = environment_for(args.backend)
    request = request_from({**vars(args), "environment": (
        DEFAULT_ENVIRONMENT if python is None else name_for(python))})
    show_progress = not args.quiet and sys.stderr.isatty()
    # process (default): a fresh worker, a clean CUDA context, the path suites take
    # torchrun (--nproc): the ranks through torch.distributed.run
    if args.nproc is not None and args.nnodes > 1 and args.master_addr is None \
            and in_slurm_allocation():  # srun: one agent per node, Slurm's rendezvous
        from gpubench.launch.torchrun_slurm import SlurmTorchrunLauncher
        launcher = SlurmTorchrunLauncher(python, nnodes=args.nnodes)
    elif args.nproc is not None:
        from gpubench.launch.torchrun import TorchrunLauncher
        launcher = TorchrunLauncher(python, nnodes=args.nnodes, node_rank=args.node_rank,
                                    master_addr=args.master_addr, master_port=args.master_port)
    else:
        launcher = make_launcher("inline" if args.no_isolate else "process", python)
    if args.nproc is None:  # before it starts: a step that takes minutes here is said
        from gpubench.measure.cpu_estimate import cpu_step_warning
        slow = cpu_step_warning(request, args.timeout_s)
        if slow:
            print(f"gpubench: warning: {slow}", file=sys.stderr)
    if args.dry_run:
        return dry_run(request, launcher)
    try:
        with run_progress(show_progress) as progress:
            outcome = run_one(request, launcher, args.timeout_s, progress)
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
    """--python NAME|PATH (an environment's registered name, or its folder or
    interpreter) as an interpreter that can run this checkout's workers; UserError
    saying what is wrong (not a Python, too old, without gpubench's dependencies or
    this gpubench: `run` installs nothing)."""
    from gpubench.errors import UserError
    from gpubench.launch.interpreter import is_this_python, probe, resolve_python
    import os

    from gpubench.launch.environments import Environment, known_environments, named_python, ready

    named = named_python(path)
    if named is None and os.sep not in path and not os.path.exists(os.path.expanduser(path)):
        names = ", ".join(env.name for env in known_environments())
        raise UserError(f"--python {path}: no such environment (known: {names}; gpubench "
                        "envs add NAME PATH names one) and no such file or folder")
    try:
        python = resolve_python(named or path)
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
    # the run's own word: one that had finished before the signal reached it says so
    stop = data.meta.get("stop_reason") or "interrupted"
    summary = data.summary if data.summary is not None else summarize(trials, stop)
    print_run(RunOutcome(folder, "interrupted", stop, trials, summary), fmt, quiet)
    ok = one_row_per_trial(trials[trials["status"] == "ok"])  # ranks: a trial once
    if not len(ok):
        return f"no trial had finished; the run's record is in {folder}"
    column = "throughput_samples_per_s_median"
    median = (summary[column].iloc[0] if len(summary) == 1 and column in summary
              else ok["throughput_samples_per_s"].median())
    ended = "" if stop == "interrupted" else f"the run had ended ({stop}) before the signal: "
    return (f"{ended}{len(ok)} finished trial{'' if len(ok) == 1 else 's'} kept in {folder} "
            f"(median {median:,.0f} samples/s), with run.json and summary.csv")
