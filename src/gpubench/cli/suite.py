"""`gpubench suite CONFIG.yaml`: a matrix of runs, each in an isolated worker; one run
never stops the others. Exit 4 when a run failed or timed out (unsupported is not a
failure), 0 otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from gpubench.cli.argtypes import positive_float


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
                       description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path, help="suite file (see configs/)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default results/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the newest results of this suite in --out, skipping runs already ok")
    p.add_argument("--filter", metavar="KEY=GLOB[,...]",
                   help="only runs matching all conditions, e.g. backend=torch-*,mode=infer")
    p.add_argument("--dry-run", action="store_true", help="print the expanded matrix and exit")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="per-run timeout, overriding the file")
    p.add_argument("--devices", type=_devices, metavar="0,1,...",
                   help="GPUs to spread runs over, one run per GPU at a time (default: each run's own device)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the suite folder")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_RUN_FAILED
    from gpubench.cli.progress import suite_progress
    from gpubench.cli.render import print_suite, print_suite_plan
    from gpubench.suite.executor import execute_suite, open_suite_folder, plan_suite

    plan = plan_suite(args.config, args.out, args.filter, args.resume)
    if args.dry_run:
        print_suite_plan(plan)
        return EXIT_OK
    devices: Optional[List[int]] = args.devices
    if devices is None:
        devices = [0]
    options = {"filter": args.filter, "timeout_s": args.timeout, "devices": devices}
    suite = open_suite_folder(plan, args.out, options)
    print(suite.path, flush=True)
    with suite_progress(not args.quiet and sys.stderr.isatty(), len(plan.runs)) as progress:
        outcome = execute_suite(plan, suite, devices, args.timeout, progress)
    if not args.quiet:
        print_suite(outcome, plan)
    failing = sum(outcome.statuses.get(s, 0) for s in ("failed", "timeout"))
    return EXIT_RUN_FAILED if failing else EXIT_OK
