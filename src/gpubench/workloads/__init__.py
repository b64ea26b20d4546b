"""The workload registry (gpubench/registry.py): built-in workloads plus those
registered by plugins (entry-point group `gpubench.workloads`, each a WorkloadSpec)."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional

from gpubench.registry import Registry
from gpubench.workloads.base import (
    ParamSpec, Workload, WorkloadSpec, format_params, parse_param_args,
)
from gpubench.workloads import bert, collectives, gpt, lenet5, linreg, mnist, resnet50

__all__ = [
    "ParamSpec", "Workload", "WorkloadSpec", "format_params", "parse_param_args",
    "all_workloads", "get_workload", "register_workload", "resolve_workload",
]

WORKLOADS: Registry[WorkloadSpec] = Registry("workload", {
    spec.name: spec for spec in (linreg.SPEC, mnist.SPEC, lenet5.SPEC, resnet50.SPEC, gpt.SPEC,
                                 bert.SPEC, collectives.ALLREDUCE, collectives.ALLGATHER)},
    group="gpubench.workloads")
_extra = WORKLOADS.extra  # what tests put back after registering a workload


def register_workload(spec: WorkloadSpec) -> None:
    """Adds a workload for this process (tests, notebooks)."""
    WORKLOADS.register(spec.name, spec)


def all_workloads() -> Dict[str, WorkloadSpec]:
    return WORKLOADS.all()


def get_workload(name: str) -> WorkloadSpec:
    return WORKLOADS.get(name)


def resolve_workload(name: str, raw_params: Optional[Mapping[str, str]] = None) -> Workload:
    return get_workload(name).resolve(raw_params)


def workload_names() -> List[str]:
    return WORKLOADS.names()
