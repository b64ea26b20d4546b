"""The clock and power policy around a launch (telemetry/clock_policy.py): the launcher's
parent sets it before the worker starts and restores it in a `finally`, whatever the
worker did (finished, crashed, killed by SIGKILL, timed out) and whatever reached the
parent (Ctrl-C, SIGTERM: a KeyboardInterrupt here). What was set and restored goes into
the run's run.json (`clock_policy`). A run without a policy only restores what a killed
gpubench left behind (a warning says so)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from gpubench.errors import UserError
from gpubench.launch.base import LaunchResult
from gpubench.telemetry import clock_policy


PENDING = "clock_policy.json"  # the note of a run whose worker wrote no run.json


def pending_note(folder: Path) -> Mapping[str, Any]:
    """The `clock_policy` a worker that died left for the run.json written for it
    (launch/status_rows.py); the file is removed."""
    path = Path(folder) / PENDING
    try:
        note = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return {"clock_policy": note}


def _note(folder: Optional[Any], summary: Mapping[str, Any]) -> None:
    """run.json gains `clock_policy` (atomically); a worker that died before writing
    run.json leaves the note for the run.json its status row brings."""
    if folder is None or not Path(folder).is_dir():
        return
    path = Path(folder) / "run.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        tmp = Path(folder) / f"{PENDING}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dict(summary), default=str))
        os.replace(tmp, Path(folder) / PENDING)
        return
    meta["clock_policy"] = dict(summary)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, path)


def under_policy(req: Any, launch: Callable[[], LaunchResult]) -> LaunchResult:
    """`launch()` with the request's policy in force; a policy that cannot be set is a
    refusal (usage), with the GPU as it was."""
    warnings = [] if clock_policy.asked(req) else clock_policy.recover()
    try:
        applied = clock_policy.apply(req)
    except UserError as exc:
        return LaunchResult("refused", str(exc), "usage")
    try:
        result = launch()
    finally:
        if applied is not None:
            restored = applied.restore()
            _note(req.folder, applied.summary())
    if applied is not None:
        warnings += applied.recovered
        warnings += [f"GPU {applied.plan.nvml_index}'s clock policy NOT restored: {line}"
                     for line in restored.get("errors", [])]
    result.launch_warnings += warnings
    return result
