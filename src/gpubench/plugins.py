"""Entry-point discovery shared by the workload and backend registries. Third-party
packages register under the groups `gpubench.workloads` and `gpubench.backends`."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Dict


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
