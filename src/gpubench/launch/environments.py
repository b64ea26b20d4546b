"""Named Python environments (name -> interpreter) feeding the launcher.

Where names come from:
- `default`: the interpreter gpubench runs in (what every row said before environments);
- a suite's `environments:` mapping (a venv folder or an interpreter per name);
- `gpubench envs add NAME PATH`: a registry in $XDG_CONFIG_HOME/gpubench (default
  ~/.config/gpubench/environments.json);
- `tf`: this checkout's .venv-tf, what `make install-tf` builds, when it exists and is
  not registered under another name.

A backend runs in the environment its suite entry names; else in the first candidate
that can run it (its framework there and usable), else the first that has its
framework, else `default` (which then records why it cannot). A suite that names
environments takes them as the candidates, in its order, then `default`; one that names
none takes `default`, the registered ones, then `tf`, so that TensorFlow in .venv-tf
runs tf-* with no YAML at all. Candidates beyond `default` are probed only when a
backend is not available in the ones before them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gpubench.errors import UserError
from gpubench.launch.interpreter import (
    Probe, environment_root, probe_all, resolve_python, same_environment,
)
from gpubench.results.schema import CONFIGURATION_DEFAULTS
from gpubench.launch.env_install import checkout_root, ensure_checkout

DEFAULT = CONFIGURATION_DEFAULTS["environment"]  # the interpreter gpubench runs in
TF_NAME, TF_VENV = "tf", ".venv-tf"  # make install-tf's environment
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Environment:
    name: str
    python: str  # an interpreter path (resolve_python's)
    where: str  # where it was named, for messages ("configs/x.yaml: environments.tf")


def this_environment() -> Environment:
    return Environment(DEFAULT, sys.executable, "the interpreter gpubench runs in")


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(f"{where}: expected an environment name (letters, digits, . _ + -), "
                        f"got {name!r}")
    if name == DEFAULT:
        raise UserError(f"{where}: {DEFAULT!r} is the interpreter gpubench runs in; give "
                        "the environment another name")
    return name


def registry_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "gpubench" / "environments.json"


def load_registry() -> Dict[str, str]:
    """`gpubench envs add`'s environments: name -> interpreter path."""
    path = registry_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the registered environments ({exc}); "
                        "repair or remove it") from None
    entries = data.get("environments") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise UserError(f"{path}: expected {{\"environments\": {{NAME: PYTHON}}}}; repair or remove it")
    return {str(k): str(v) for k, v in entries.items()}


def save_registry(entries: Dict[str, str]) -> Path:
    from gpubench.atomic_io import write_text_atomic

    path = registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"environments": entries}, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def known_environments() -> List[Environment]:
    """`default`, the registered environments, then this checkout's .venv-tf as `tf`
    (unless the registry names it, or names another environment `tf`)."""
    envs = [this_environment()]
    where = f"environment {{}} ({registry_path()})"
    for name, python in load_registry().items():
        envs.append(Environment(name, python, where.format(name)))
    root = checkout_root()
    tf = root / TF_VENV / "bin" / "python" if root is not None else None
    if tf is not None and tf.exists() and all(
            e.name != TF_NAME and not _same(e.python, str(tf)) for e in envs):
        envs.append(Environment(TF_NAME, str(tf), f"environment {TF_NAME} ({tf.parent.parent}, "
                                                  "make install-tf)"))
    return envs


def named_python(text: str) -> Optional[str]:
    """The interpreter of the known environment named `text` (`gpubench envs add`'s,
    `tf`, `default`), None when none is; a file or folder of that name wins."""
    if os.path.exists(os.path.expanduser(text)):
        return None
    return next((env.python for env in known_environments() if env.name == text), None)


def _same(a: str, b: str) -> bool:
    try:
        return same_environment(a, b)
    except OSError:
        return False


def name_for(python: str) -> str:
    """The name rows give a run in `python` (`run --python`): the known environment's
    name, else the environment's folder (or the interpreter) as a path."""
    for env in known_environments():
        if _same(env.python, python):
            return env.name
    return environment_root(python)


def ready(env: Environment, found: Probe, install: bool) -> Tuple[Probe, Optional[str]]:
    """ensure_checkout with messages that say which environment and where it was named."""
    try:
        return ensure_checkout(found, install)
    except UserError as exc:
        raise UserError(f"{env.where}: {env.python}: {exc}") from None


def local_inventory() -> Dict[str, Any]:
    from gpubench.backends.inventory import inventory
    return inventory()


class EnvironmentSet:
    """A suite's environments: the ones it names (checked, gpubench installed where it
    is missing unless `install` is off), and the candidates that run a backend its
    entries leave to gpubench."""

    def __init__(self, declared: List[Environment], install: bool = True) -> None:
        self.install = install
        self.notes: List[str] = []  # what was installed where
        self.warnings: List[str] = []  # known environments left out, and why
        self.inventories: Dict[str, Dict[str, Any]] = {}
        this = this_environment()
        self._check_declared(declared)
        if declared:
            self.candidates = declared + [e for e in [this] if not
                                          any(_same(d.python, e.python) for d in declared)]
        else:
            self.candidates = known_environments()
        self.by_name = {e.name: e for e in self.candidates + [this]}
        self._probed = bool(declared)
        for env in self.candidates:
            if _same(env.python, this.python):
                self.inventories[env.name] = local_inventory()

    def _check_declared(self, declared: List[Environment]) -> None:
        for i, env in enumerate(declared):
            for other in declared[:i]:
                if _same(env.python, other.python):
                    raise UserError(f"{env.where}: the same environment as {other.name} "
                                    f"({environment_root(env.python)})")
        self._probe([e for e in declared if not _same(e.python, sys.executable)], strict=True)

    def _probe(self, envs: List[Environment], strict: bool) -> None:
        answers = probe_all([e.python for e in envs])
        for env in envs:
            found = answers[env.python]
            try:
                if isinstance(found, UserError):
                    raise UserError(f"{env.where}: {found}")
                found, how = ready(env, found, self.install and strict)
            except UserError as exc:
                if strict:
                    raise
                self.warnings.append(f"{exc}; left out")
                continue
            if not found.has_this_gpubench and not strict:  # installed into only when named
                self.warnings.append(f"{env.where}: {env.python} lacks this gpubench "
                                     f"(gpubench envs add {env.name} {env.python}); left out")
                continue
            if not found.has_this_gpubench:  # named, with installing off (--dry-run)
                self.notes.append(f"environment {env.name} ({env.python}) lacks this gpubench; "
                                  "the suite installs it when it runs")
            if how:
                self.notes.append(f"installed this checkout into environment {env.name} "
                                  f"({env.python}): {how}")
            if found.facts is None:
                message = f"{env.where}: {env.python}: cannot list its backends ({found.facts_error})"
                if strict:
                    raise UserError(message)
                self.warnings.append(message + "; left out")
                continue
            self.inventories[env.name] = found.facts

    def environment(self, name: str) -> Environment:
        return self.by_name[name]

    def choose(self, backend: str) -> Environment:
        """The environment that runs `backend` when its entry names none."""
        known = [(e.name, self.inventories[e.name]) for e in self.candidates
                 if e.name in self.inventories]
        if not self._probed and not any(available(backend, inv) for _, inv in known):
            self._probed = True  # probe the rest only now: most suites never need them
            self._probe([e for e in self.candidates if e.name not in self.inventories], False)
            self.candidates = [e for e in self.candidates if e.name in self.inventories]
            return self.choose(backend)
        return self.by_name[pick(backend, known) or DEFAULT]

    def unavailable(self, env: Environment, backend: str) -> Optional[str]:
        """Why `backend` cannot run in `env` as its probe says (None: it can, or unknown)."""
        info = self.inventories.get(env.name, {}).get("backends", {}).get(backend)
        if info is None or info.get("available"):
            return None
        return info.get("reason") or "not available"

    def describe(self) -> Dict[str, Dict[str, Any]]:
        """For the suite's run.json: each environment with a known inventory."""
        return {e.name: {"python": e.python, "where": e.where}
                for e in self.by_name.values() if e.name in self.inventories}


def available(backend: str, inventory: Dict[str, Any]) -> bool:
    return bool(inventory["backends"].get(backend, {}).get("available"))


def has_framework(backend: str, inventory: Dict[str, Any]) -> bool:
    framework = inventory["backends"].get(backend, {}).get("framework")
    return (inventory["frameworks"].get(framework) or {}).get("framework_version") is not None


def pick(backend: str, inventories: List[Tuple[str, Dict[str, Any]]]) -> Optional[str]:
    """Of (name, inventory) candidates in order, the first that can run `backend`, else
    the first that has its framework (its row will say why it cannot run); None when
    no candidate has the framework."""
    for test in (available, has_framework):
        for name, inventory in inventories:
            if test(backend, inventory):
                return name
    return None


def declared_environments(raw: Dict[str, str], source: Path) -> List[Environment]:
    """A suite's `environments:` mapping as Environments (paths resolved from the
    current folder, `~` expanded), in its order."""
    envs = []
    for name, path in raw.items():
        where = f"{source}: environments.{name}"
        try:
            python = resolve_python(path)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        envs.append(Environment(name, python, where))
    return envs


def probe_known(timeout_s: float) -> List[Tuple[Environment, "Probe | UserError"]]:
    """`gpubench env --all-environments`: each known environment and its probe (or why
    it gave none), probed in parallel."""
    envs = known_environments()
    answers = probe_all([e.python for e in envs], timeout_s)
    return [(e, answers[e.python]) for e in envs]

