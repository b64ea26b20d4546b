"""Plugin discovery shared by the workload and backend registries:
- entry points of installed packages, groups `gpubench.workloads` (a WorkloadSpec) and
  `gpubench.backends` (a factory returning a Backend);
- modules named in GPUBENCH_PLUGINS (comma-separated import paths) that register
  themselves with register_workload / register_backend when imported. Worker
  processes inherit the variable, so suites see the same registry as their parent."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any, Dict

PLUGINS_ENV = "GPUBENCH_PLUGINS"
_imported: set = set()


def load_group(group: str) -> Dict[str, Any]:
    """Name -> loaded object for every entry point of `group`. A plugin that fails to
    load is an error with the plugin's name, not a silent omission."""
    found: Dict[str, Any] = {}
    for ep in entry_points(group=group):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin: say which one
            raise RuntimeError(f"entry point {ep.name!r} in {group} failed to load: {exc}") from exc
    return found


def import_env_plugins() -> None:
    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if name not in _imported:
            _imported.add(name)
            importlib.import_module(name)
