"""`gpubench list`: workloads (parameters, FLOPs per sample, parameter count) and
backends (available, or why not). Imports no framework."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Tuple


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

    # Piped: as wide as the tables need; on a terminal (or COLUMNS) the workloads fit it:
    # parameters and FLOPs in SI units if whole counts do not fit, never cut; a k=v
    # parameter is never split. Cells are plain text: install hints hold brackets
    # (gpubench[tf]) that rich would take as markup.
    console = stdout_console()
    wt, below = workloads_table(data["workloads"], console.width)
    console.print(wt)
    for line in below:  # descriptions that did not fit beside the numbers
        console.print(Text(line))
    bt = Table(title="Backends", title_justify="left")
    for col in ("name", "device", "available", "why not / note"):
        bt.add_column(col, overflow="fold", no_wrap=col != "why not / note")
    for b in data["backends"]:
        bt.add_row(Text(b["name"]), Text(b["device"] or ""),
                   Text("yes") if b["available"] else Text("no", style="red"), Text(b["reason"] or ""))
    console.print(bt)
    return 0


MIN_DESCRIPTION_WIDTH = 24  # narrower, descriptions go under the table


def si_count(value: int) -> str:
    """A count in 3-4 significant digits with an SI prefix: 124M, 8.22G, 852k, 5."""
    from gpubench.cli.table_cells import sig

    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return sig(value / size) + prefix
    return str(value)


def workloads_table(workloads: List[Dict[str, Any]], width: int) -> Tuple[Any, List[str]]:
    """The workloads table fitted to `width`, and the lines under it (descriptions that
    do not fit beside it)."""
    from gpubench.cli.fit_table import fit_columns, fitted_table, table_width
    from gpubench.cli.table_cells import Col

    def cells(counts: Any, with_description: bool) -> List[List[str]]:
        rows = []
        for w in workloads:
            params = ", ".join(f"{k}={v['default']}" for k, v in w["params"].items()) or "-"
            shape = (f"{w['tokens_per_sample']} tokens" if w["tokens_per_sample"]
                     else "x".join(map(str, w["input_shape"])))
            rows.append([w["name"], shape, params, counts(w["param_count"]),
                         counts(w["forward_flops_per_sample"]), str(w["default_batch_size"]),
                         w["description"] if with_description else ""])
        return rows

    # "weights": the parameter count (the -p settings are "params")
    cols = [Col("name", str), Col("input", str), Col("params (default)", str),
            Col("weights", str, "n"), Col("FLOP/sample (fwd)", str, "n"),
            Col("batch", str, "n"), Col("description", str, "description", text=True)]
    for counts in (lambda n: f"{n:,}", si_count):  # whole counts, else SI where they do not fit
        shown, _, dropped, widths = fit_columns(cols, cells(counts, False), width, ("n",))
        if not dropped or counts is si_count:
            break
    with_description = table_width(widths) + 3 + MIN_DESCRIPTION_WIDTH <= width
    fitted = fitted_table(cols, cells(counts, with_description), width, "Workloads", ("description", "n"))
    below = [] if with_description else [f"{w['name']}: {w['description']}" for w in workloads]
    return fitted.table, below
