"""Python interpreters a run may be launched with: a venv folder or an interpreter path
as a usable interpreter, whether two of them are one environment, and what one holds.

What an interpreter holds is asked in a subprocess (`probe`), never by importing
anything here: its Python version, whether gpubench's dependencies are there, whether
it imports gpubench and from which folder, and which frameworks and backends it has
(backends/inventory.py, run there through this checkout's gpubench when it has none of
its own, so an environment can be judged before gpubench is installed into it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from gpubench.errors import UserError

# pyproject's requires-python (kept in step by a test)
REQUIRED_PYTHON = (3, 10)
# The modules a worker imports of pyproject's dependencies (a test keeps them in step;
# ruptures is left out: only change points (history, dashboard) import it).
WORKER_MODULES = ("numpy", "pandas", "yaml", "rich", "pynvml", "psutil", "scipy")
PROBE_TIMEOUT_S = 60.0
_MARK = "GPUBENCH-PROBE "

# Runs in the probed interpreter: old Pythons must be able to parse it (no f-strings),
# so that a Python too old to run gpubench is told apart from something not a Python.
_PROBE = """
import json, os, sys
mark, src, modules, required = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
out = {"version": list(sys.version_info[:3]), "executable": sys.executable,
       "prefix": sys.prefix}
if tuple(sys.version_info[:2]) >= tuple(int(x) for x in required.split(".")):
    import importlib.util
    out["missing"] = [m for m in modules if importlib.util.find_spec(m) is None]
    try:
        import gpubench
        out["gpubench"] = [os.path.dirname(os.path.abspath(gpubench.__file__)),
                           getattr(gpubench, "__version__", None)]
    except Exception as exc:
        out["gpubench_error"] = "%s: %s" % (type(exc).__name__, exc)
        sys.path.insert(0, src)  # this checkout's, for the facts only
    import importlib.metadata, sysconfig
    out["purelib"] = sysconfig.get_paths()["purelib"]
    out["tools"] = {}
    for name in ("pip", "setuptools", "wheel"):
        try:
            out["tools"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    if not out["missing"]:
        try:
            from gpubench.backends.inventory import inventory
            out["facts"] = inventory()
        except Exception as exc:
            out["facts_error"] = "%s: %s" % (type(exc).__name__, exc)
sys.stdout.write("\\n" + mark + " " + json.dumps(out) + "\\n")
"""


def resolve_python(path: str) -> str:
    """`path` (a venv or other environment folder, or an interpreter) as the absolute
    path of an executable interpreter. Symbolic links are kept: a venv's bin/python is a
    link to its base interpreter, and only the link's path runs in the venv."""
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
            candidate = os.path.join(full, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        raise UserError(f"{path}: a folder without bin/python: not a Python environment")
    if not os.path.exists(full):
        raise UserError(f"{path}: not an executable Python interpreter (no such file or folder)")
    if not os.path.isfile(full) or not os.access(full, os.X_OK):
        raise UserError(f"{path}: not an executable Python interpreter")
    return full


def environment_root(python: str) -> str:
    """The environment an interpreter runs in: a venv's folder (the one holding
    pyvenv.cfg above bin/), else the interpreter file itself, links resolved."""
    full = os.path.abspath(python)
    root = os.path.dirname(os.path.dirname(full))
    if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
        return os.path.realpath(root)
    return os.path.realpath(full)


def same_environment(a: str, b: str) -> bool:
    return environment_root(a) == environment_root(b)


def is_this_python(python: str) -> bool:
    """Whether `python` runs in this process's environment (bin/python and bin/python3
    of one venv do; another venv made from the same base interpreter does not)."""
    return same_environment(python, sys.executable)


def package_folder() -> str:
    """The folder of the gpubench package this process runs."""
    import gpubench
    return os.path.dirname(os.path.abspath(gpubench.__file__))


@dataclass
class Probe:
    """What an interpreter answered (see the module docstring)."""

    python: str
    version: Tuple[int, ...]
    executable: str = ""
    prefix: str = ""
    missing: List[str] = field(default_factory=list)  # of WORKER_MODULES
    gpubench_folder: Optional[str] = None  # where it imports gpubench from; None: nowhere
    gpubench_version: Optional[str] = None
    gpubench_error: Optional[str] = None  # why `import gpubench` failed there
    facts: Optional[Dict[str, Any]] = None  # backends/inventory.py's, None if unknown
    facts_error: Optional[str] = None
    purelib: str = ""  # its site-packages
    tools: Dict[str, str] = field(default_factory=dict)  # pip, setuptools, wheel: versions

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def too_old(self) -> bool:
        return tuple(self.version[:2]) < REQUIRED_PYTHON

    @property
    def has_this_gpubench(self) -> bool:
        return (self.gpubench_folder is not None
                and os.path.realpath(self.gpubench_folder) == os.path.realpath(package_folder()))

    def backends(self) -> Dict[str, Dict[str, Any]]:
        return dict((self.facts or {}).get("backends") or {})

    def frameworks(self) -> Dict[str, Dict[str, Any]]:
        return dict((self.facts or {}).get("frameworks") or {})


def probe(python: str, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """Asks `python` (an interpreter path, resolve_python's) what it holds. UserError
    when it is not a Python (it cannot be started, or answers nothing) or does not
    answer within `timeout_s`."""
    src = os.path.dirname(package_folder())
    required = ".".join(map(str, REQUIRED_PYTHON))
    try:
        done = subprocess.run([python, "-c", _PROBE, _MARK.strip(), src, ",".join(WORKER_MODULES),
                               required], stdin=subprocess.DEVNULL, capture_output=True,
                              encoding="utf-8", errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"{python}: did not answer gpubench's probe in {timeout_s:g} s") from None
    except OSError as exc:
        raise UserError(f"{python}: not a Python interpreter (cannot start it: "
                        f"{exc.strerror or exc})") from None
    answer = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if not answer:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise UserError(f"{python}: not a Python interpreter gpubench can use (no answer to "
                        f"its probe: {last.strip()})")
    try:
        data = json.loads(answer[-1][len(_MARK):])
        folder, version = (data.get("gpubench") or [None, None])
        python_version = tuple(int(v) for v in data["version"])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise UserError(f"{python}: not a Python interpreter gpubench can use (its answer to "
                        f"the probe does not read: {answer[-1][:80]!r})") from None
    return Probe(python, python_version, data.get("executable", ""),
                 data.get("prefix", ""), list(data.get("missing") or []), folder, version,
                 data.get("gpubench_error"), data.get("facts"), data.get("facts_error"),
                 data.get("purelib", ""), dict(data.get("tools") or {}))


def probe_all(pythons: List[str], timeout_s: float = PROBE_TIMEOUT_S
              ) -> Dict[str, "Probe | UserError"]:
    """probe() of each interpreter, in parallel: python -> its Probe, or the UserError
    saying why it gave none."""
    from concurrent.futures import ThreadPoolExecutor

    def one(python: str) -> "Probe | UserError":
        try:
            return probe(python, timeout_s)
        except UserError as exc:
            return exc

    unique = list(dict.fromkeys(pythons))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(unique))) as pool:
        return dict(zip(unique, pool.map(one, unique)))
