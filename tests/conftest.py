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


@pytest.fixture
def cli():
    return run_cli


# Small, fast protocol settings for tests: real measurement, short trials.
FAST_RUN = ("--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")


@pytest.fixture
def fast_run_args():
    return FAST_RUN


def wait_for_trials(root: Path, at_least: int, below: int | None = None,
                    timeout_s: float = 60) -> Path:
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
