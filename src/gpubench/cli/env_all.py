"""`gpubench env --all-environments`: every known Python environment (this one,
`gpubench envs add`'s, this checkout's .venv-tf) with its Python, its frameworks and
their CUDA builds, and the backends it can run. Each is probed in a subprocess, all in
parallel, each within a timeout; one that does not answer is a row saying why."""

from __future__ import annotations

import json
from typing import Any, Dict, List


def environment_rows(timeout_s: float) -> List[Dict[str, Any]]:
    from gpubench.errors import UserError
    from gpubench.launch.environments import probe_known

    rows = []
    for env, found in probe_known(timeout_s):
        row: Dict[str, Any] = {"name": env.name, "python": env.python, "where": env.where}
        if isinstance(found, UserError):
            rows.append({**row, "error": str(found)})
            continue
        row.update({"python_version": found.version_text, "gpubench": found.gpubench_folder,
                    "this_gpubench": found.has_this_gpubench, "missing": found.missing,
                    "frameworks": found.frameworks(), "backends": found.backends()})
        if found.too_old:
            row["error"] = f"Python {found.version_text} cannot run gpubench"
        elif found.missing:
            row["error"] = f"lacks gpubench's dependencies: {', '.join(found.missing)}"
        elif found.facts is None:
            row["error"] = f"cannot list its backends: {found.facts_error}"
        rows.append(row)
    return rows


def framework_text(name: str, facts: Dict[str, Any]) -> str:
    if facts.get("available") is False:
        return ""
    version = facts.get("framework_version") or "?"
    build = facts.get("cuda_version")
    return f"{name} {version}" + (f" (CUDA {build})" if build else
                                  " (CPU)" if "cuda_version" in facts else "")


def gpubench_text(row: Dict[str, Any]) -> str:
    if row.get("this_gpubench"):
        return "this checkout"
    if row.get("gpubench"):
        return f"another copy: {row['gpubench']}"
    return "not installed (gpubench envs add NAME PATH)"


def show_environments(as_json: bool, timeout_s: float) -> int:
    rows = environment_rows(timeout_s)
    if as_json:
        print(json.dumps({"environments": rows}, indent=2, default=str))
        return 0
    from rich.table import Table
    from rich.text import Text

    from gpubench.cli.render import stdout_console

    table = Table(title="Python environments", title_justify="left")
    for column in ("name", "python", "gpubench", "frameworks", "backends it can run"):
        table.add_column(column, overflow="fold")
    for row in rows:
        where = Text(f"{row['python']}" + (f"\nPython {row['python_version']}"
                                          if row.get("python_version") else ""))
        if "error" in row and not row.get("backends"):
            table.add_row(row["name"], where, Text(row["error"]), Text(""), Text(""))
            continue
        frameworks = [framework_text(n, f) for n, f in sorted(row["frameworks"].items())]
        backends = [n for n, b in sorted(row["backends"].items()) if b.get("available")]
        table.add_row(row["name"], where, Text(row.get("error") or gpubench_text(row)),
                      Text("\n".join(f for f in frameworks if f) or "none"),
                      Text(", ".join(backends) or "none"))
    stdout_console().print(table)
    return 0
