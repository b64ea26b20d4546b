"""`gpubench env`: what a run would record about this machine and its frameworks."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="show the environment a run records",
                       description="Show the machine, framework and GPU facts a run records.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(execute=execute)


def collect() -> Dict[str, Any]:
    from gpubench.backends import all_backends
    from gpubench.environment import machine_environment

    env: Dict[str, Any] = {"machine": machine_environment(), "frameworks": {}}
    for name, factory in sorted(all_backends().items()):
        backend = factory()
        if backend.framework in env["frameworks"]:
            continue
        ok, why = backend.is_available()
        if ok or backend.device_kind == "cpu":
            env["frameworks"][backend.framework] = backend.environment() if ok else {"available": False, "reason": why}
    return env


def execute(args: argparse.Namespace) -> int:
    env = collect()
    if args.json:
        print(json.dumps(env, indent=2, default=str))
        return 0
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title="Environment", title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in env["machine"].items():
        table.add_row(key, "" if value is None else str(value))
    for framework, facts in env["frameworks"].items():
        for key, value in facts.items():
            table.add_row(f"{framework}.{key}", "" if value is None else str(value))
    Console(file=sys.stdout).print(table)
    return 0
