"""The `inline` launcher: the run in this process (`gpubench run --no-isolate`). No
timeout can be enforced and a crash takes this process with it: for debugging."""

from __future__ import annotations

from typing import Any, Optional

from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.launch.base import (
    LaunchResult, Launcher, OnStart, Progress, is_this_python, no_progress, refuse_ranks,
)


class InlineLauncher(Launcher):
    name = "inline"
    isolated = False

    def __init__(self, python: Optional[str] = None) -> None:
        super().__init__(python)
        if python is not None and not is_this_python(self.python):
            raise UserError(f"{python}: the inline launcher runs in this interpreter "
                            "only; another Python needs a worker process (leave out "
                            "--no-isolate)")

    def preflight(self, req: Any) -> None:
        refuse_ranks(req, self.name)
        if req.processes > 1:
            raise UserError(f"--processes {req.processes} starts worker processes; the inline "
                            "launcher (--no-isolate) runs in this one")
        from gpubench.measure.preflight import preflight
        from gpubench.telemetry import clock_policy
        clock_policy.check(req)
        preflight(req)

    def launch(self, req: Any, timeout_s: Optional[float] = None,
               progress: Progress = no_progress,
               on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        from gpubench.launch.policy import under_policy
        return under_policy(req, lambda: self._execute(req, progress))

    @staticmethod
    def _execute(req: Any, progress: Progress) -> LaunchResult:
        """The run in this process (its policy, if any, set around it: launch/policy.py
        restores it in a finally, also on Ctrl-C and SIGTERM)."""
        from gpubench.measure.runner import execute_run
        try:
            outcome = execute_run(req, progress)
        except (Unsupported, BackendUnavailable) as exc:
            return LaunchResult("refused", str(exc), "unsupported")
        except UserError as exc:
            return LaunchResult("refused", str(exc), "usage")
        return LaunchResult("finished", events=[{
            "event": "finished", "path": str(outcome.path), "status": outcome.status,
            "telemetry": outcome.telemetry, "warnings": outcome.warnings}])
