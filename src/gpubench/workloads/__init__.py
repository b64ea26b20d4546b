"""The workload registry: built-in workloads plus those registered by plugins
(entry-point group `gpubench.workloads`, each pointing at a WorkloadSpec)."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

from gpubench.errors import UserError
from gpubench.workloads.base import (
    ParamSpec, Workload, WorkloadSpec, format_params, parse_param_args,
)
from gpubench.workloads import bert, collectives, gpt, lenet5, linreg, mnist, resnet50

__all__ = [
    "ParamSpec", "Workload", "WorkloadSpec", "format_params", "parse_param_args",
    "all_workloads", "get_workload", "register_workload", "resolve_workload",
]

_BUILTIN = {spec.name: spec for spec in (linreg.SPEC, mnist.SPEC, lenet5.SPEC, resnet50.SPEC,
                                           gpt.SPEC, bert.SPEC, collectives.ALLREDUCE,
                                           collectives.ALLGATHER)}
_extra: Dict[str, WorkloadSpec] = {}
_plugins_loaded = False


def register_workload(spec: WorkloadSpec) -> None:
    """Adds a workload for this process (tests, notebooks)."""
    _extra[spec.name] = spec


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        from gpubench.plugins import import_env_plugins, load_group
        _plugins_loaded = True
        for name, spec in load_group("gpubench.workloads").items():
            _extra.setdefault(name, spec)
        import_env_plugins()


def all_workloads() -> Dict[str, WorkloadSpec]:
    _load_plugins()
    return {**_BUILTIN, **_extra}


def get_workload(name: str) -> WorkloadSpec:
    spec = _BUILTIN.get(name) or _extra.get(name)
    if spec is None:
        specs = all_workloads()
        spec = specs.get(name)
        if spec is None:
            raise UserError(f"unknown workload {name!r} (valid: {', '.join(sorted(specs))})")
    return spec


def resolve_workload(name: str, raw_params: Optional[Mapping[str, str]] = None) -> Workload:
    return get_workload(name).resolve(raw_params)


def workload_names() -> List[str]:
    return sorted(all_workloads())
