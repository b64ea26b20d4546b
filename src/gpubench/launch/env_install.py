"""Installing this checkout's gpubench into another Python environment, touching nothing
else there (its frameworks above all): `pip install --no-deps --no-build-isolation
--no-index -e CHECKOUT` where pip and a setuptools that builds editable wheels are
there (nothing is fetched), else a `.pth` file in its site-packages naming this
checkout's src/ (what an editable install amounts to; no `gpubench` script, no package
metadata, neither of which a worker needs). gpubench's own dependencies are never
installed: an environment without them is refused with the command that would add them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from gpubench.errors import UserError
from gpubench.machine import gpubench_checkout
from gpubench.launch.interpreter import REQUIRED_PYTHON, Probe, package_folder, probe

PTH_NAME = "gpubench-checkout.pth"
PIP_TIMEOUT_S = 300.0
# Distributions of WORKER_MODULES, for the message that names what to install.
DISTRIBUTIONS = {"yaml": "pyyaml", "pynvml": "nvidia-ml-py"}


def checkout_root() -> Optional[Path]:
    """This gpubench's source checkout (the folder of pyproject.toml above src/gpubench),
    or None when it runs from an installed copy."""
    root = gpubench_checkout()
    return Path(root) if root is not None else None


def _version(text: str) -> tuple:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def pip_problem(found: Probe) -> Optional[str]:
    """Why pip cannot install this checkout editable there without fetching anything
    (None when it can): it needs pip, setuptools 64 or newer (PEP 660), and before
    setuptools 70.1 the wheel package."""
    tools = found.tools
    if "pip" not in tools:
        return "no pip there"
    setuptools = tools.get("setuptools")
    if setuptools is None or _version(setuptools) < (64, 0):
        return f"setuptools {setuptools or 'missing'} there (editable installs need 64 or newer)"
    if _version(setuptools) < (70, 1) and "wheel" not in tools:
        return f"setuptools {setuptools} there builds wheels only with the wheel package, which is missing"
    return None


def missing_dependencies(found: Probe) -> str:
    """The message for an environment without gpubench's dependencies."""
    names = " ".join(DISTRIBUTIONS.get(m, m) for m in found.missing)
    return (f"lacks gpubench's dependencies ({', '.join(found.missing)}); gpubench installs "
            f"nothing but itself into an environment: {found.python} -m pip install {names}")


def install_checkout(found: Probe) -> str:
    """Installs this checkout into `found.python`'s environment; returns how, in words.
    UserError saying why when it cannot."""
    if found.missing:
        raise UserError(missing_dependencies(found))
    root = checkout_root()
    if root is None:
        raise UserError(f"gpubench runs from an installed copy ({package_folder()}), not a "
                        f"source checkout: install gpubench there with that environment's pip")
    problem = pip_problem(found)
    if problem is None:
        problem = _pip_install(found.python, root)
        if problem is None:
            return f"pip install --no-deps -e {root}"
    if not found.purelib:
        raise UserError(f"cannot install gpubench there ({problem}; no site-packages known)")
    pth = Path(found.purelib) / PTH_NAME
    try:
        os.makedirs(found.purelib, exist_ok=True)
        pth.write_text(str(root / "src") + "\n")
    except OSError as exc:
        raise UserError(f"cannot install gpubench there ({problem}; and writing {pth}: "
                        f"{exc.strerror or exc})") from None
    return f"{pth} names {root / 'src'} ({problem})"


def _pip_install(python: str, root: Path) -> Optional[str]:
    """pip's editable install of `root` (nothing fetched); None when it worked, else
    why not in one line."""
    try:
        done = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                               "--no-index", "--quiet", "-e", str(root)],
                              stdin=subprocess.DEVNULL, capture_output=True, encoding="utf-8",
                              errors="replace", timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"pip did not finish in {PIP_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"pip could not start: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    return "pip failed: " + (errors or lines or [f"exit code {done.returncode}"])[-1]


def ensure_checkout(found: Probe, install: bool = True) -> "tuple[Probe, Optional[str]]":
    """`found`'s environment made ready to run this checkout's workers: its Python new
    enough, its dependencies there, this checkout's gpubench importable (installed when
    missing and `install`). Returns the probe after any install and what was installed
    (None: nothing). UserError saying what is wrong."""
    if found.too_old:
        raise UserError(f"Python {found.version_text} cannot run gpubench (it needs Python "
                        f">= {'.'.join(map(str, REQUIRED_PYTHON))})")
    if found.missing:
        raise UserError(missing_dependencies(found))
    if found.has_this_gpubench:
        return found, None
    if found.gpubench_folder is not None:
        raise UserError(f"it imports another gpubench ({found.gpubench_folder}), not this one "
                        f"({package_folder()}); `gpubench envs add NAME {found.python}` "
                        "installs this one over it")
    if not install:
        return found, None
    how = install_checkout(found)
    after = probe(found.python)
    if not after.has_this_gpubench:
        raise UserError(f"installed ({how}) but it still cannot import gpubench: "
                        f"{after.gpubench_error or after.gpubench_folder}")
    return after, how


def reinstall_over(found: Probe) -> "tuple[Probe, str]":
    """`gpubench envs add` over another gpubench copy: this checkout installed in its
    place (pip replaces it; a .pth cannot shadow an installed copy, so pip must work)."""
    problem = pip_problem(found)
    if problem is not None:
        raise UserError(f"it imports another gpubench ({found.gpubench_folder}) that only "
                        f"pip can replace, and pip cannot here: {problem}")
    how = install_checkout(found)
    after = probe(found.python)
    if not after.has_this_gpubench:
        raise UserError(f"installed ({how}) but it still imports {after.gpubench_folder}")
    return after, how

