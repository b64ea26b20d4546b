"""The phases of a run, reported as each begins (a `phase` progress event; the worker
relays it to its parent), so that a timeout or an interrupt can say where the run was.
A scenario's own events (warmup, trial, epoch, probe, message) say more within
`scenario`."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

PHASES: Dict[str, str] = {
    "imports": "starting the worker (importing gpubench and the framework)",
    "preflight": "checking the configuration (preflight)",
    "prepare": "building the model and data (prepare)",
    "checks": "checking the step's outputs (a compiled exec mode compiles here)",
    "telemetry": "starting telemetry",
    "scenario": "measuring",
    "finish": "writing the results",
}


def enter(progress: Callable[..., None], phase: str) -> None:
    progress("phase", phase=phase)


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
