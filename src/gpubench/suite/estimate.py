"""A suite's plan judged before it runs: roughly how long it will take, and which of its
configurations are known to be refused here (a backend that is not available, a mode or
precision the backend cannot run, a batch that cannot fit in memory), by the same
framework-free checks as preflight, each asked once per backend, workload and machine,
so that a 10,000-run matrix is judged in seconds. `gpubench suite --dry-run` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from gpubench.backends import Backend, get_backend, resolve_backend
from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.measure.memory_check import MemoryCapacity, check_memory
from gpubench.launch.environments import EnvironmentSet
from gpubench.launch.forked import family_of
from gpubench.launch.interpreter import is_this_python
from gpubench.measure.preflight import exec_mode_of, validate_request
from gpubench.measure.scenarios.registry import resolve_scenario
from gpubench.suite.config import SuiteRun
# a run's own cost (re-exported: render.py and the tests read them here)
from gpubench.suite.run_cost import FIXED_COST_S, RunCost, run_cost  # noqa: F401
from gpubench.suite.plan import SuitePlan, request_for
from gpubench.workloads import Workload, resolve_workload

# A fork server's own start (its imports), once per suite for each Python environment
# and framework family: the same benchmark's first forked run, 2.10 s, less a fork's.
SERVER_START_S = 1.8
# A worker that refuses its run in preflight: Python and gpubench's imports, no
# framework (`time python -c "import gpubench.launch.worker, gpubench.measure.runner"`:
# about 2 s on the same machine).
REFUSAL_S = 2.0
# Beyond either, --dry-run warns that the suite is large.
LARGE_SUITE_RUNS = 500
LARGE_SUITE_WALL_S = 12 * 3600.0

Refusal = Tuple[str, str]  # (status the run's row would get: unsupported | failed, reason)


class Judge:
    """Preflight's checks for many configurations (validate_request, the backend's
    availability and check_config, the exec mode, the memory check), each backend,
    workload and memory size looked up once. A backend's availability in another
    environment is what that environment's probe said."""

    def __init__(self, device: Optional[int] = None,
                 environments: Optional[EnvironmentSet] = None) -> None:
        self.device = device  # --devices' first GPU; None: each run's own `device`
        self.environments = environments
        self.capacity = MemoryCapacity()
        self._backends: Dict[str, object] = {}
        self._workloads: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], Workload] = {}

    def _backend(self, name: str, environment: Optional[str]) -> Backend:
        if self.environments is not None and environment is not None:
            env = self.environments.environment(environment)
            if not is_this_python(env.python):
                why = self.environments.unavailable(env, name)
                if why is not None:
                    raise BackendUnavailable(f"backend {name} is not available in "
                                             f"environment {environment}: {why}")
                return get_backend(name)
        if name not in self._backends:
            try:
                self._backends[name] = resolve_backend(name)
            except UserError as exc:
                self._backends[name] = exc
        found = self._backends[name]
        if isinstance(found, UserError):
            raise type(found)(str(found))
        return found  # type: ignore[return-value]

    def _workload(self, run: SuiteRun) -> Workload:
        key = (run.workload, run.params)
        if key not in self._workloads:
            self._workloads[key] = resolve_workload(run.workload, dict(run.params))
        return self._workloads[key]

    def refusal(self, run: SuiteRun) -> Optional[Refusal]:
        """Why the run would be refused here, or None when nothing known stops it."""
        device = run.setting("device") if self.device is None else self.device
        req, _ = request_for(run, Path("unused"), device, None)
        try:
            validate_request(req)
            workload = self._workload(run)
            backend = self._backend(run.backend, run.environment)
            backend.check_config(run.mode, run.precision)
            exec_mode_of(req, backend)
            check_memory(workload, backend, run.mode, run.precision,
                         resolve_scenario(req.scenario, req.mode).batch_size(req, workload), device,
                         capacity=self.capacity)
        except (Unsupported, BackendUnavailable) as exc:
            return "unsupported", str(exc)
        except UserError as exc:  # bad input the file's checks let through: a failed row
            return "failed", str(exc)
        return None


@dataclass
class SuiteEstimate:
    runs: int
    devices: int
    seconds: float  # all runs one after another
    max_seconds: float  # the same with every target_rel_ci run at its caps
    refused: Dict[Tuple[str, ...], Refusal] = field(default_factory=dict)  # by configuration key
    refused_runs: int = 0  # runs (repeats included) of refused configurations

    @property
    def wall_s(self) -> float:
        return self.seconds / self.devices

    @property
    def max_wall_s(self) -> float:
        return self.max_seconds / self.devices

    def as_dict(self, plan: SuitePlan) -> Dict[str, object]:
        """For --format json: the figures, and each refused run's label and reason."""
        return {"runs": self.runs, "devices": self.devices, "seconds": self.seconds,
                "max_seconds": self.max_seconds, "wall_s": self.wall_s,
                "max_wall_s": self.max_wall_s, "refused_runs": self.refused_runs,
                "refused": [{"run": p.label(), "status": self.refused[p.key][0],
                             "reason": self.refused[p.key][1]}
                            for p in plan.runs if p.key in self.refused],
                "warnings": self.warnings()}

    def warnings(self) -> List[str]:
        """One line when the suite is large: more than LARGE_SUITE_RUNS runs, or an
        estimated wall time above LARGE_SUITE_WALL_S."""
        if self.runs <= LARGE_SUITE_RUNS and self.wall_s <= LARGE_SUITE_WALL_S:
            return []
        where = f"over {self.devices} devices" if self.devices > 1 else "on one device"
        upto = (f" (up to {format_duration(self.max_wall_s)})"
                if self.max_wall_s > self.wall_s * 1.05 else "")
        return [f"a large suite: {self.runs} runs, about {format_duration(self.wall_s)}{upto} "
                f"{where}; --filter runs part of it, --devices spreads it over GPUs"]


def estimate_suite(plan: SuitePlan, devices: Optional[Sequence[int]] = None,
                   timeout_override: Optional[float] = None) -> SuiteEstimate:
    """The plan's wall time and its known refusals (a refused run costs a worker that
    refuses, REFUSAL_S, not a measurement), and the start of each fork server."""
    judge = Judge(devices[0] if devices else None, plan.environments)
    estimate = SuiteEstimate(len(plan.runs), len(devices) if devices else 1, 0.0, 0.0)
    judged: Dict[Tuple[str, ...], Optional[Refusal]] = {}  # repeats share a configuration
    servers: Set[Tuple[str, str]] = set()  # the fork servers the runs start
    for planned in plan.runs:
        if planned.key not in judged:
            judged[planned.key] = judge.refusal(planned.run)
            if judged[planned.key] is not None:
                estimate.refused[planned.key] = judged[planned.key]  # type: ignore[assignment]
        if judged[planned.key] is not None:
            estimate.refused_runs += 1
            estimate.seconds += REFUSAL_S
            estimate.max_seconds += REFUSAL_S
        else:
            cost = run_cost(planned.run, timeout_override)
            estimate.seconds += cost.seconds
            estimate.max_seconds += cost.max_seconds
            if planned.run.setting("isolation") == "fork":
                servers.add((planned.run.setting("environment"), family_of(planned.run.backend)))
    estimate.seconds += len(servers) * SERVER_START_S
    estimate.max_seconds += len(servers) * SERVER_START_S
    return estimate


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
