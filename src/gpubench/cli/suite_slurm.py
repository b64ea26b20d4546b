"""`gpubench suite FILE --executor slurm`: its options and their checks (the submission
itself is suite/slurm.py's, imported when it runs: submitit loads only then)."""

from __future__ import annotations

import argparse

from gpubench.cli.argtypes import positive_float

SLURM_ONLY = ("partition", "nodes", "gpus_per_node", "time_limit", "account")


def _whole(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {least}; "
                                             f"got {text!r}")
        return value
    return parse


_positive_int, _count = _whole(1), _whole(0)


def add_slurm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local (default): runs on this machine; slurm: a Slurm job array "
                        "through submitit, one task per shard (--nodes of them), each on "
                        "its node's GPUs")
    p.add_argument("--partition", metavar="P", help="slurm: the partition to submit to")
    p.add_argument("--nodes", type=_positive_int, metavar="N",
                   help="slurm: shards of the suite, one array task (and node) each (default 1)")
    p.add_argument("--gpus-per-node", type=_count, metavar="G",
                   help="slurm: GPUs each task asks for and spreads its runs over (default: none)")
    p.add_argument("--time-limit", type=positive_float, metavar="MIN",
                   help="slurm: each task's time limit in minutes (default: the estimate of "
                        "the largest shard, doubled, at least 10)")
    p.add_argument("--account", metavar="A", help="slurm: the account to charge")


def check_executor_options(args: argparse.Namespace) -> None:
    """Slurm's options only with --executor slurm; the Slurm executor makes its own
    shards (--nodes), so it takes no --shard."""
    from gpubench.errors import UserError

    if args.batch_id is not None and args.shard is None:
        raise UserError("--batch-id is for --shard i/N (the Slurm executor makes its own)")
    if args.executor == "local":
        given = [f"--{name.replace('_', '-')}" for name in SLURM_ONLY
                 if getattr(args, name) is not None]
        if given:
            raise UserError(f"{', '.join(given)} only with --executor slurm")
        return
    if args.shard is not None:
        raise UserError("--shard with --executor slurm: the Slurm executor cuts the suite "
                        "itself, one shard per array task (--nodes N)")
    if args.devices is not None:
        raise UserError("--devices with --executor slurm: each task uses its node's GPUs "
                        "(--gpus-per-node)")


def execute_slurm(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_RUN_FAILED
    from gpubench.suite.slurm import SlurmOptions, run_on_slurm

    options = SlurmOptions(partition=args.partition, nodes=args.nodes or 1,
                           gpus_per_node=args.gpus_per_node or 0,
                           time_limit_min=args.time_limit, account=args.account)
    as_json = args.format == "json"  # then standard output holds one document
    outcome = run_on_slurm(args.config, args.out, options, filter_expr=args.filter,
                           resume=args.resume, timeout_override=args.timeout,
                           announce=lambda path: as_json or print(path, flush=True))
    if as_json:
        import json
        print(json.dumps({"path": str(outcome.path), "tasks": outcome.tasks,
                          "statuses": outcome.statuses}, indent=2))
    elif not args.quiet:
        for line in outcome.lines():
            print(line)
    return EXIT_RUN_FAILED if outcome.failing else EXIT_OK
