"""`gpubench env`: what a run would record about this machine and its frameworks."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Tuple

from gpubench.cli.argtypes import positive_float


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="show the environment a run records",
                       description="Show the machine, framework and GPU facts a run records.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--frameworks", action="store_true",
                   help="import each framework for the facts only it knows (threads, cuDNN, "
                        "providers); slow: TensorFlow alone takes seconds")
    p.add_argument("--all-environments", action="store_true",
                   help="each known Python environment instead (this one, those of gpubench "
                        "envs add, this checkout's .venv-tf): its Python, frameworks and CUDA "
                        "builds, and the backends it can run; each probed in a subprocess, "
                        "all at once")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                   help="with --all-environments: how long an environment may take to "
                        "answer (default 30 s)")
    p.set_defaults(execute=execute)


def collect(frameworks: bool = False) -> Dict[str, Any]:
    """Machine facts, each framework's version and build (from package metadata unless
    `frameworks`: then imported, as a run records them), and the GPUs through NVML."""
    from gpubench.backends.inventory import framework_facts
    from gpubench.machine import machine_environment

    env: Dict[str, Any] = {"machine": machine_environment(),
                           "frameworks": framework_facts(imported=frameworks)}
    from gpubench.telemetry.nvml import gpu_inventory

    from gpubench.telemetry.nvml_fingerprint import gpu_fingerprint

    env["gpus"] = gpu_inventory(gpu_fingerprint)  # driver, CUDA driver, each GPU: NVML
    env["fingerprint"] = fingerprints(env["machine"], env["gpus"])
    return env


# A run's fingerprint has these from its backend; `gpubench env` runs none.
PER_RUN = {"framework": "a run's backend's (see the frameworks above)",
           "cuda_runtime_version": "a run's framework's CUDA build (see the frameworks above)"}


def fingerprints(machine: Dict[str, Any], inventory: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The fingerprint a run on each GPU would record (results/fingerprint.py), the
    framework's part left to the run; one without a GPU part where NVML sees none. Each
    GPU's raw part leaves `inventory`."""
    from gpubench.results.fingerprint import assemble

    env = {**machine, **{k: inventory.get(k) for k in ("driver_version", "cuda_driver_version")},
           "fingerprint_unavailable": dict(PER_RUN)}
    parts = [gpu.pop("fingerprint", None) for gpu in inventory.get("gpus", [])]
    prints = [assemble(env, part) for part in parts or [None]]
    if not parts:
        prints[0]["unavailable"]["gpu"] = inventory.get("reason") or "no GPU"
    return prints


def fingerprint_rows(prints: List[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """(key, value) rows: the software and host keys once, the GPU keys per GPU; a value
    not known says why."""
    from gpubench.results.fingerprint import GPU_KEYS, HOST_KEYS, SOFTWARE_KEYS

    def text(fingerprint: Dict[str, Any], key: str) -> str:
        value = fingerprint.get(key)
        reason = fingerprint.get("unavailable", {}).get(key)
        return f"not available: {reason}" if value is None and reason else _text(value)

    rows = [(f"fingerprint.{key}", text(prints[0], key)) for key in SOFTWARE_KEYS + HOST_KEYS]
    for i, fingerprint in enumerate(prints):
        rows += [(f"gpu{i}.{key}", text(fingerprint, key)) for key in GPU_KEYS if key in fingerprint]
    return rows


def gpu_rows(inventory: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(key, value) rows for the GPU section: one line saying why when there is no
    driver; else the driver versions and each GPU's facts."""
    if not inventory.get("available"):
        return [("gpus", f"not available: {inventory.get('reason')}")]
    rows = [(key, _text(inventory.get(key))) for key in ("driver_version", "cuda_driver_version")]
    if not inventory.get("gpus"):
        rows.append(("gpus", f"none ({inventory['reason']})" if inventory.get("reason") else "none"))
    for i, gpu in enumerate(inventory.get("gpus", [])):
        for key in ("name", "uuid", "memory_total_bytes", "power_limit_w", "max_sm_clock_mhz",
                    "max_mem_clock_mhz", "mem_bus_width_bits", "peak_mem_bw_gbs"):
            value = gpu.get(key)
            if value is None and key in gpu.get("unavailable", {}):
                value = f"not available: {gpu['unavailable'][key]}"
            rows.append((f"gpu{i}.{key}", _text(value)))
    return rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def execute(args: argparse.Namespace) -> int:
    if args.all_environments:
        from gpubench.cli.env_all import show_environments
        return show_environments(args.json, args.timeout)
    env = collect(args.frameworks)
    if args.json:
        print(json.dumps(env, indent=2, default=str))
        return 0
    from rich.table import Table
    from rich.text import Text

    from gpubench.cli.render import stdout_console

    # Piped: as wide as the longest value; on a terminal, long values wrap (never cut).
    # Values are plain text, never rich markup.
    table = Table(show_header=False, title="Environment", title_justify="left")
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in env["machine"].items():
        if isinstance(value, dict):  # env_variables: one row each, none when none are set
            for name, text in value.items():
                table.add_row(f"${name}", Text(str(text)))
            continue
        table.add_row(key, Text("" if value is None else str(value)))
    for framework, facts in env["frameworks"].items():
        for key, value in facts.items():
            table.add_row(f"{framework}.{key}", Text("" if value is None else str(value)))
    shown = set()
    for key, value in gpu_rows(env["gpus"]) + fingerprint_rows(env["fingerprint"]):
        if key not in shown:  # the fingerprint repeats a GPU fact or two (its power limit)
            shown.add(key)
            table.add_row(key, Text(value))
    stdout_console().print(table)
    return 0
