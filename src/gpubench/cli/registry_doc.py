"""The reference's workloads and backends tables, made from the registries' built-ins
(what `gpubench list` shows, less what depends on this machine and plugins): which
backends run each
workload and what each backend can run follow from the backends' own checks
(`check_config`, `capabilities`, `exec_modes`) and the scenarios' needs, as preflight
asks them. Written into docs/ by `python -m gpubench.cli.docs_gen`."""

from __future__ import annotations

from typing import Dict, FrozenSet, List

from gpubench.backends import BACKENDS, PRECISIONS, Backend
from gpubench.errors import Unsupported
from gpubench.measure.scenarios.registry import SCENARIOS
from gpubench.workloads import WORKLOADS


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _modes(backend: Backend) -> Dict[str, List[str]]:
    """mode -> the precisions check_config accepts in it (a GPU's compute capability,
    checked when the run starts, may refuse more)."""
    modes: Dict[str, List[str]] = {}
    for mode in backend.modes:
        for precision in PRECISIONS:
            try:
                backend.check_config(mode, precision)
            except Unsupported:
                continue
            modes.setdefault(mode, []).append(precision)
    return modes


def _needs() -> Dict[str, FrozenSet[str]]:
    return {name: make().needs for name, make in SCENARIOS.builtin.items()}


def _scenarios(backend: Backend, needs: Dict[str, FrozenSet[str]]) -> List[str]:
    return [name for name, need in needs.items()
            if any(need <= backend.capabilities(mode) for mode in _modes(backend))]


def _backends() -> Dict[str, Backend]:
    return {name: make() for name, make in sorted(BACKENDS.builtin.items())}


def workloads_table() -> str:
    """Every registered workload, as `gpubench list` shows it, and the backends that run
    it: those whose steps have what its scenario needs (a collective's or a model's)."""
    from gpubench.cli.list import workload_facts

    needs = _needs()
    backends = _backends()
    rows = ["| workload | what | input | parameters (default) | weights | FLOP/sample (fwd) "
            "| batch | backends |", "| --- | --- | --- | --- | --: | --: | --: | --- |"]
    for name, spec in sorted(WORKLOADS.builtin.items()):
        w = workload_facts(name, spec)
        scenario = "collective" if w["task"] == "collective" else "throughput"
        runs = [name for name, b in backends.items()
                if any(needs[scenario] <= b.capabilities(mode) for mode in _modes(b))]
        shape = (f"{w['tokens_per_sample']} tokens" if w["tokens_per_sample"]
                 else "x".join(map(str, w["input_shape"])))
        params = ", ".join(f"`{k}={v['default']}`" for k, v in w["params"].items())
        rows.append(f"| `{w['name']}` | {_cell(w['description'])} | {shape} | {params} "
                    f"| {w['param_count']:,} | {w['forward_flops_per_sample']:,} "
                    f"| {w['default_batch_size']} | {', '.join(runs)} |")
    return "\n".join(rows)


def backends_table() -> str:
    """Every registered backend: its device and framework, the modes and precisions it
    takes, its execution modes (the default first) and the scenarios its steps can run."""
    needs = _needs()
    rows = ["| backend | device | framework | modes: precisions | `--exec` | scenarios |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, b in _backends().items():
        modes = "; ".join(f"{mode}: {', '.join(ps)}" for mode, ps in _modes(b).items())
        rows.append(f"| `{name}` | {b.device_kind} | {b.framework} | {modes} "
                    f"| {', '.join(b.exec_modes)} | {', '.join(_scenarios(b, needs))} |")
    return "\n".join(rows)
