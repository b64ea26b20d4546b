"""The launcher interface: how a run's process(es) are started, with which Python.

A launcher takes a RunRequest whose `folder` is set and runs it to the end, reporting
progress events and saying how it ended (LaunchResult). What to make of that ending
(a refusal, a crash, a timeout) is decided in one place for every launcher
(launch/status_rows.py, launch/__init__.py). Backends never learn which launcher ran
them.

- `inline`: in this process (debugging; no timeout, no clean CUDA context);
- `process`: worker processes per run (one, or `--processes K` one after another),
  forked from a warm fork server or fresh interpreters (`--isolation`), the default:
  a clean CUDA context, and a segfault, OOM kill or hang stays in it;
- `torchrun`: the run's ranks through `torch.distributed.run` (launch/torchrun.py),
  each running the runner with its rank context (`gpubench run --nproc N`).
"""

from __future__ import annotations

import json
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional

from gpubench.errors import UserError
from gpubench.launch.interpreter import is_this_python, resolve_python  # noqa: F401 (re-exported)
from gpubench.measure.protocol import Progress, no_progress  # noqa: F401 (re-exported)

# A launcher hands its caller a way to interrupt the run (SIGINT: write what finished).
OnStart = Callable[[Callable[[], None]], None]


@dataclass
class LaunchResult:
    """How a run ended: finished | refused | failed | timeout | interrupted."""

    outcome: str
    message: Optional[str] = None
    refused_kind: Optional[str] = None  # unsupported | usage
    events: List[Dict[str, Any]] = field(default_factory=list)
    process: int = 0  # the run's worker process it ended in (--processes)
    launch_warnings: List[str] = field(default_factory=list)  # the launcher's own (a fallback)

    @property
    def telemetry(self) -> Dict[str, Any]:
        return self._finished().get("telemetry") or {}

    @property
    def warnings(self) -> List[str]:
        return list(self._finished().get("warnings") or []) + self.launch_warnings

    def _finished(self) -> Dict[str, Any]:
        finished = [e for e in self.events if e["event"] == "finished"]
        return finished[-1] if finished else {}


def run_ended(req: Any, result: LaunchResult) -> bool:
    """Whether the run is over after `result`'s process: its last, one that did not
    finish, or one whose run failed (a crash while building, say: the later processes
    would crash the same way)."""
    if result.outcome != "finished" or result.process == req.processes - 1:
        return True
    try:
        meta = json.loads((Path(req.folder) / "run.json").read_text())
    except (OSError, ValueError):
        return True
    return meta.get("stop_reason") == "failed"


def refuse_ranks(req: Any, launcher: str) -> None:
    """A request for ranks (a strategy, --nproc) needs the launcher that starts them."""
    if req.strategy is not None or req.world_size != 1:
        raise UserError(f"a run of ranks (--nproc, --strategy) is started by the torchrun "
                        f"launcher, not the {launcher} launcher")


class Launcher(ABC):
    name: ClassVar[str]
    isolated: ClassVar[bool]  # a fresh process per run (timeouts and crashes contained)

    def __init__(self, python: Optional[str] = None) -> None:
        self.python = sys.executable if python is None else resolve_python(python)

    def close(self) -> None:
        """Ends what the launcher keeps between runs (the process launcher's fork
        servers); it may run again after, starting them anew."""

    def writes_rows(self, req: Any) -> bool:
        """Whether the run's rows land in this launcher's folder: False for the other
        nodes of a run of several (rank 0's node writes them)."""
        return True

    @abstractmethod
    def preflight(self, req: Any) -> None:
        """The checks that need no framework, run by the interpreter the run will run
        in. Raises UserError (or Unsupported / BackendUnavailable)."""

    def refusal(self, req: Any) -> Optional[LaunchResult]:
        """The refusal preflight gives `req`, when it can be known without starting a
        process (the launcher runs this interpreter); None when it passes or only the
        launched run can tell. The run's folder is made, for its status row."""
        if not is_this_python(self.python):
            return None
        from gpubench.errors import BackendUnavailable, Unsupported
        try:
            self.preflight(req)
            return None
        except UserError as exc:
            kind = "unsupported" if isinstance(exc, (Unsupported, BackendUnavailable)) else "usage"
            message = str(exc)
        os.makedirs(req.folder, exist_ok=True)
        return LaunchResult("refused", message, kind)

    @abstractmethod
    def launch(self, req: Any, timeout_s: Optional[float] = None,
               progress: Progress = no_progress,
               on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        """Runs `req` (its `folder` set) to the end. KeyboardInterrupt propagates after
        the run wrote its finished trials."""

    def launch_process(self, req: Any, process: int, timeout_s: Optional[float] = None,
                       progress: Progress = no_progress,
                       on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        """Runs only worker process `process` of `req` (--processes; a suite interleaves
        the processes of its runs). A launcher without worker processes has process 0."""
        if process != 0 or req.processes != 1:
            raise UserError(f"the {self.name} launcher runs one process per run")
        return self.launch(req, timeout_s, progress, on_start)
