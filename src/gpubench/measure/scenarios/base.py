"""Scenarios: what a run measures, and how. A scenario owns its loop and declares the
measured columns it fills and the step capabilities it needs (backends/base.py
STEP_CAPABILITIES); preflight refuses a backend whose steps lack one, so no scenario
ever names a backend. Today's protocol is the `throughput` scenario (throughput.py); a
new scenario is a new module named in registry.py (the serving scenarios: serving/).

A scenario gets the prepared step and a context, writes its rows through
`ctx.emit(measured columns)` as they come (the run record adds the identity and
writes them atomically), and returns its stop reason and what run.json should keep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, FrozenSet, Optional, Tuple

from gpubench.backends import Step
from gpubench.ranks import SINGLE_RANK, RankContext
from gpubench.telemetry import Sampler
from gpubench.workloads import Workload

Progress = Callable[..., None]


@dataclass
class ScenarioContext:
    step: Step
    request: Any  # the RunRequest (measure/request.py)
    workload: Workload
    batch_size: int
    peak_tflops: Optional[float]  # the device's datasheet peak at this precision, if known
    sampler: Sampler  # already started; bracket each measured interval with it
    progress: Progress
    emit: Callable[[Dict[str, Any]], None]  # one row of measured columns, written at once
    ranks: RankContext = SINGLE_RANK  # which rank of a data-parallel run this is


class Scenario(ABC):
    name: ClassVar[str]
    needs: ClassVar[FrozenSet[str]] = frozenset({"run"})
    columns: ClassVar[Tuple[str, ...]]  # the measured columns its rows may fill
    # True: every backend starts from the same numpy weights (models/init_weights.py),
    # so runs on different frameworks train the same model from the same point.
    same_start_weights: ClassVar[bool] = False
    # How the data reaches the device, for run.json: `resident` (batches moved before
    # timing and cycled through) or `epochs` (host-shuffled batches copied each step).
    data_pipeline: ClassVar[str] = "resident"
    # True: its loop keeps the ranks of a data-parallel run in step (the same steps and
    # decisions on every rank, rank 0's clock); preflight refuses --nproc otherwise.
    ranked: ClassVar[bool] = False
    # True: it measures a collective workload (no model; workloads/collectives.py), and
    # only those: preflight pairs collective workloads with collective scenarios.
    collective: ClassVar[bool] = False
    # True: it runs batches of any size up to the step's batch size (the serving
    # scenarios' `serve`), which an exec mode replaying one captured shape cannot.
    variable_batches: ClassVar[bool] = False

    def batch_size(self, req: Any, workload: Workload) -> int:
        """Samples per batch the run's steps take: --batch-size, else the workload's
        default (the serving scenarios each name theirs)."""
        return req.batch_size or workload.default_batch_size

    def requested_s(self, req: Any) -> Optional[float]:
        """The seconds of measuring the request asks for (its warm-up budget and its
        trials x --min-trial-s): run.json's fixed_s is the run's wall time less this.
        None for a scenario that asks for no time (one that runs to a target)."""
        p = req.protocol
        return p.warmup_s + p.trials * p.min_trial_s

    @abstractmethod
    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        """Measures, emitting rows as it goes; returns (stop reason, run.json extras).
        Rows emitted before an exception or a KeyboardInterrupt are kept."""


class RecompileWatch:
    """Which trials of a compiled step built new graphs (torch.compile recompiling: they
    time compiling, not only running): the step's graph count before and after each."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.before: Optional[int] = None  # None: not a compiled step
        self.trials: List[int] = []

    def before_trial(self) -> None:
        self.before = self.step.recompiles()

    def after_trial(self, trial: int) -> None:
        now = self.step.recompiles()
        if self.before is not None and now is not None and now > self.before:
            self.trials.append(trial)

    def record(self) -> Dict[str, Any]:
        """run.json's recompiled_trials (a compiled step's only) and the warning."""
        if self.before is None:
            return {}
        warnings = [f"torch.compile built new graphs during trial(s) "
                    f"{', '.join(map(str, self.trials))}: those trials include compiling, not "
                    "only running (run.json recompiled_trials; TORCH_LOGS=recompiles says why)"
                    ] if self.trials else []
        return {"recompiled_trials": self.trials, "warnings": warnings}
