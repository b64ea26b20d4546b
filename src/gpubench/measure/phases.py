"""The phases of a run, reported as each begins (a `phase` progress event; the worker
relays it to its parent), so that a timeout or an interrupt can say where the run was.
A scenario's own events (warmup, trial, epoch, probe, message) say more within
`scenario`.

The same events time the phases (PhaseClock, on the monotonic clock): each lasts from
its event to the next phase's, so run.json's `phases_s` add up to its `wall_s` exactly.
A worker's run starts at its launch: the parent's CLOCK_MONOTONIC reading in
GPUBENCH_LAUNCHED_AT (the same clock in every process of a Linux machine; a launcher
that queues the run, a fork server say, sets it), else the worker process's start."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

PHASES: Dict[str, str] = {
    "imports": "starting the worker (importing gpubench and the framework)",
    "preflight": "checking the configuration (preflight)",
    "prepare": "building the model and data (prepare)",
    "checks": "checking the step's outputs (a compiled exec mode compiles here)",
    "telemetry": "starting telemetry",
    "scenario": "measuring",
    "finish": "writing the results",
}

# run.json's phases_s, in the order a run goes through them. launch: from the parent's
# launch to the worker process's start; imports: from there to preflight (Python's start,
# gpubench's imports and the backend's framework, which the worker imports first); scenario:
# the scenario's time outside warm-up and trials (all of it for one without them).
TIMED_PHASES = ("launch", "imports", "preflight", "prepare", "checks", "telemetry",
                "scenario", "warmup", "trials", "writing")
_TIMED_AS = {"finish": "writing"}  # a phase event timed under another name
_SCENARIO_EVENTS = {"warmup": "warmup", "trial": "trials"}  # events that begin a timed phase

LAUNCHED_AT_ENV = "GPUBENCH_LAUNCHED_AT"
Clock = Callable[[], float]


def enter(progress: Callable[..., None], phase: str) -> None:
    progress("phase", phase=phase)


def launched_at_env(clock: Clock = time.monotonic) -> Dict[str, str]:
    """What a launcher adds to its worker's environment as it starts it."""
    return {LAUNCHED_AT_ENV: repr(clock())}


def _process_age_s() -> Optional[float]:
    """Seconds since this process started (Linux /proc: its fork), else None."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        start_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start_s)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def worker_start_marks(environ: Optional[Dict[str, str]] = None,
                       clock: Clock = time.monotonic,
                       process_age_s: Callable[[], Optional[float]] = _process_age_s,
                       ) -> List[Tuple[str, float]]:
    """The marks a worker's run starts with: launch at the parent's reading (when it gave
    one), imports at this process's start (never before the launch: a process that was
    waiting already, forked ahead, starts its imports at the launch)."""
    environ = os.environ if environ is None else environ
    marks: List[Tuple[str, float]] = []
    launched: Optional[float] = None
    try:
        launched = float(environ[LAUNCHED_AT_ENV])
        marks.append(("launch", launched))
    except (KeyError, ValueError):
        pass
    age = process_age_s()
    started = clock() - age if age is not None else launched
    if started is not None:
        marks.append(("imports", started if launched is None else max(started, launched)))
    return marks


class PhaseClock:
    """A progress callback that passes every event on and times the phases the events
    begin; `record(requested_s)` gives run.json's phases_s, wall_s and fixed_s."""

    def __init__(self, progress: Callable[..., None],
                 marks: Optional[List[Tuple[str, float]]] = None,
                 clock: Clock = time.monotonic) -> None:
        self.progress, self.clock = progress, clock
        self.marks: List[Tuple[str, float]] = list(marks or [])

    def __call__(self, event: str, **fields: Any) -> None:
        phase = (_TIMED_AS.get(fields.get("phase"), fields.get("phase")) if event == "phase"
                 else _SCENARIO_EVENTS.get(event))
        if phase in TIMED_PHASES and (not self.marks or self.marks[-1][0] != phase):
            self.marks.append((phase, self.clock()))
        self.progress(event, **fields)

    def record(self, requested_s: Optional[float] = None) -> Dict[str, Any]:
        """Each phase's seconds (a phase entered again adds up), the wall time from the
        first mark to now, and the fixed cost: the wall time less what the run asked to
        measure (warm-up budget and trials x min trial time), where it asks for a time."""
        if not self.marks:
            return {}
        now = self.clock()
        phases: Dict[str, float] = {}
        for (phase, begun), (_, ended) in zip(self.marks, self.marks[1:] + [("", now)]):
            phases[phase] = phases.get(phase, 0.0) + max(0.0, ended - begun)
        wall = sum(phases.values())
        timed: Dict[str, Any] = {
            "phases_s": {p: round(phases[p], 6) for p in TIMED_PHASES if p in phases},
            "wall_s": round(wall, 6)}
        if requested_s is not None:
            timed["fixed_s"] = round(wall - requested_s, 6)
        return timed


def where(events: List[Dict[str, Any]]) -> str:
    """Where a run was at its last progress event, in words ("" before any)."""
    for event in reversed(events):
        name = event.get("event")
        if name == "phase":
            return PHASES.get(event.get("phase"), str(event.get("phase")))
        if name == "warmup":
            return "warm-up (the first step compiles or autotunes)"
        if name == "trial":
            return f"trial {int(event.get('trial', 0)) + 1} of {event.get('trials')}"
        if name == "epoch":
            return f"epoch {event.get('epoch')}"
        if name in ("probe", "message"):
            return f"measuring ({name} {event.get(name) or event.get('message_bytes')})"
    return ""
