"""What one task of a Slurm job array runs (suite/slurm.py submits it through submitit,
which pickles this function by reference: keep it importable without a framework).
The task is one shard of the suite: `gpubench suite FILE --shard i/N` in a fresh
process, on the GPUs Slurm gave this task (CUDA_VISIBLE_DEVICES numbers them 0..G-1)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import List

EXECUTOR_ENV = "GPUBENCH_EXECUTOR"  # "slurm" in the tasks of the Slurm executor


def node_devices() -> List[str]:
    """`--devices 0,..,G-1` for the G GPUs Slurm gave the task; none without GPUs."""
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return ["--devices", ",".join(str(i) for i in range(len(visible)))] if visible else []


def run_shard(argv: List[str]) -> int:
    """The shard's suite; its exit code (4: a run failed) is the task's result. Slurm's
    SIGTERM (scancel, the time limit) reaches the suite too (the step's processes are
    signalled together): it writes what finished and stops."""
    env = {**os.environ, EXECUTOR_ENV: "slurm"}  # its runs of ranks then start through srun
    return subprocess.run([sys.executable, "-m", "gpubench", "suite", *argv, *node_devices()],
                          env=env, stdin=subprocess.DEVNULL).returncode
