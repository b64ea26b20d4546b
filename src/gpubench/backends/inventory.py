"""What this interpreter can run, without importing a framework: each framework's
version and CUDA build (package metadata), and each backend's availability. `gpubench
env` shows it for this interpreter; other interpreters answer the same question through
a probe (launch/interpreter.py), so a suite knows which environment runs which backend."""

from __future__ import annotations

from typing import Any, Dict

from gpubench.backends import all_backends


def framework_facts(imported: bool = False) -> Dict[str, Dict[str, Any]]:
    """framework -> its version and build (from package metadata; with `imported`, from
    the imported framework, as a run records them), or {available: False, reason}. A
    GPU backend's unavailability (no driver) does not hide an installed framework: its
    CPU backend says whether it is installed."""
    facts: Dict[str, Dict[str, Any]] = {}
    for name, factory in sorted(all_backends().items()):
        backend = factory()
        if backend.framework in facts:
            continue
        ok, why = backend.is_available()
        if not ok and backend.device_kind != "cpu":
            continue
        if not ok:
            facts[backend.framework] = {"available": False, "reason": why}
        else:
            facts[backend.framework] = backend.environment() if imported else backend.build_facts()
    return facts


def backend_availability() -> Dict[str, Dict[str, Any]]:
    """backend name -> {available, reason (empty when available), framework}."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, factory in sorted(all_backends().items()):
        backend = factory()
        ok, why = backend.is_available()
        out[name] = {"available": ok, "reason": why, "framework": backend.framework}
    return out


def inventory() -> Dict[str, Any]:
    return {"frameworks": framework_facts(), "backends": backend_availability()}
