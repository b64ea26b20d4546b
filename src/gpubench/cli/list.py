"""`gpubench list`: workloads (parameters, FLOPs per sample, parameter count) and
backends (available, or why not). Imports no framework."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list workloads and backends",
                       description="List workloads and backends (with why a backend is unavailable).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(execute=execute)


def workload_facts(name: str, spec: Any) -> Dict[str, Any]:
    """What `gpubench list` (and the reference's workloads table) says of a workload."""
    w = spec.resolve()
    return {
        "name": name, "description": spec.description, "task": w.task,
        "input_shape": list(w.input_shape), "input_dtype": w.input_dtype,
        "tokens_per_sample": w.tokens_per_sample, "default_batch_size": w.default_batch_size,
        "param_count": w.stats.param_count,
        "forward_flops_per_sample": w.stats.forward_flops_per_sample,
        "params": {k: {"default": p.default, "type": p.type.__name__, "help": p.help}
                   for k, p in spec.params.items()},
    }


def collect() -> Dict[str, List[Dict[str, Any]]]:
    from gpubench.backends import AUTO_ORDER, all_backends
    from gpubench.workloads import all_workloads

    workloads = [workload_facts(name, spec) for name, spec in sorted(all_workloads().items())]
    backends = []
    for name, factory in sorted(all_backends().items()):
        backend = factory()
        ok, why = backend.is_available()
        backends.append({"name": name, "framework": backend.framework,
                         "device": backend.device_kind, "available": ok, "reason": why or None})
    auto = next((b["name"] for n in AUTO_ORDER for b in backends if b["name"] == n and b["available"]), None)
    backends.append({"name": "auto", "framework": None, "device": None, "available": auto is not None,
                     "reason": f"runs {auto}" if auto else "no backend in " + ", ".join(AUTO_ORDER) + " is available"})
    return {"workloads": workloads, "backends": backends}


def execute(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.table import Table
    from rich.text import Text

    from gpubench.cli.render import stdout_console

    # Piped: as wide as the tables need; on a terminal, text wraps (folds) and numbers are
    # whole, never cut. Cells are plain text: install hints hold brackets (gpubench[tf])
    # that rich would take as markup.
    console = stdout_console()
    headers = ("name", "input", "params (default)", "parameters", "FLOP/sample (fwd)", "batch")
    rows = []
    for w in data["workloads"]:
        params = ", ".join(f"{k}={v['default']}" for k, v in w["params"].items()) or "-"
        shape = "x".join(map(str, w["input_shape"]))
        if w["tokens_per_sample"]:
            shape = f"{w['tokens_per_sample']} tokens"
        rows.append((w["name"], shape, params,
                     f"{w['param_count']:,}", f"{w['forward_flops_per_sample']:,}",
                     str(w["default_batch_size"])))

    def workload_table(with_description: bool) -> Table:
        table = Table(title="Workloads", title_justify="left")
        for col in headers + (("description",) if with_description else ()):
            number = col in ("parameters", "FLOP/sample (fwd)", "batch")
            table.add_column(col, justify="right" if number else "left", overflow="fold",
                             no_wrap=col not in ("params (default)", "description"))
        for row, w in zip(rows, data["workloads"]):
            table.add_row(*map(Text, row + ((w["description"],) if with_description else ())))
        return table

    # A terminal too narrow for a readable description column: descriptions go below.
    narrow = console.measure(workload_table(False)).maximum + 3 + 24 > console.width
    wt = workload_table(not narrow)
    bt = Table(title="Backends", title_justify="left")
    for col in ("name", "device", "available", "why not / note"):
        bt.add_column(col, overflow="fold", no_wrap=col != "why not / note")
    for b in data["backends"]:
        bt.add_row(Text(b["name"]), Text(b["device"] or ""),
                   Text("yes") if b["available"] else Text("no", style="red"), Text(b["reason"] or ""))
    console.print(wt)
    if narrow:
        for w in data["workloads"]:
            console.print(Text(f"{w['name']}: {w['description']}"))
    console.print(bt)
    return 0
