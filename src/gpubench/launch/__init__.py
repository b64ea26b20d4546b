"""Launchers: how a run's process(es) are started (launch/base.py: `inline`,
`process`), and what every launcher's ending becomes (`run_one` for `gpubench run`,
`settle` for suites).

The names below are imported on first use: `python -m gpubench.launch.worker` imports
this package first, and the worker must start light (its early signal handlers) and
must not be imported twice (once by the package, once as __main__).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "LAUNCHERS": "launchers", "RunInterrupted": "launchers", "make_launcher": "launchers",
    "run_one": "launchers", "LaunchResult": "base", "Launcher": "base", "run_ended": "base",
    "read_folder_trials": "status_rows", "record_status": "status_rows", "settle": "status_rows",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
