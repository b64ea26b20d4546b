"""Framework-free facts about the machine and the code (run.json's `environment`):
host, OS, Python, CPU, git commits (gpubench's checkout; the caller's folder's). Backends add their framework's facts; telemetry adds
the GPUs'. (A Python environment, the interpreter a run starts in, is
launch/environments.py's.)"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from typing import Any, Dict, Optional

import gpubench


@lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpubench_checkout() -> Optional[str]:
    """The source checkout gpubench runs from (the folder of pyproject.toml above
    src/gpubench), None for an installed copy: a site-packages inside some other
    repository must not lend it that repository's commit."""
    package = os.path.dirname(os.path.abspath(gpubench.__file__))
    root = os.path.dirname(os.path.dirname(package))
    if (os.path.basename(os.path.dirname(package)) == "src"
            and os.path.isfile(os.path.join(root, "pyproject.toml"))):
        return root
    return None


def git_commit(folder: Optional[str] = None) -> Optional[str]:
    """The commit checked out in `folder` (default: gpubench's own checkout, the code
    that runs; not the current folder's), with '-dirty' when it has changes; None when
    there is none."""
    folder = folder or gpubench_checkout()
    if folder is None:
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_name() -> str:
    return socket.gethostname()


# Instruction-set extensions that decide which CPU kernels a framework can use.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
# Variables that change how frameworks place and thread work (as collect_env lists them).
ENV_VARIABLES = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME",
                 "OMP_PROC_BIND", "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG",
                 "NVIDIA_TF32_OVERRIDE", "TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS",
                 "TF_FORCE_GPU_ALLOW_GROWTH", "NCCL_DEBUG", "LD_LIBRARY_PATH")


@lru_cache(maxsize=None)
def cpu_flags() -> Optional[str]:
    """The CPU_FLAGS this CPU has, space-separated (None where /proc/cpuinfo is not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(flag for flag in CPU_FLAGS if flag in have)
    except OSError:
        pass
    return None


def package_version(*distributions: str) -> Optional[str]:
    """The installed version of the first of `distributions` present (package
    metadata: nothing is imported)."""
    import importlib.metadata
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cpu_governors(root: str = "/sys/devices/system/cpu") -> Optional[str]:
    """The cpufreq scaling governor of every CPU ("performance"; "powersave x62,
    performance x2" when they differ); None where cpufreq is not exposed (many VMs and
    containers)."""
    import glob

    counts: Dict[str, int] = {}
    for path in sorted(glob.glob(os.path.join(root, "cpu[0-9]*", "cpufreq", "scaling_governor"))):
        try:
            with open(path) as f:
                governor = f.read().strip()
        except OSError:
            continue
        counts[governor] = counts.get(governor, 0) + 1
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{g} x{n}" for g, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def machine_environment() -> Dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    libc, libc_version = platform.libc_ver()
    return {
        "host": host_name(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "cpu_governor": cpu_governors(),
        "libc": f"{libc} {libc_version}".strip() or None,
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "numpy_version": package_version("numpy"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "ram_total_bytes": memory.total,
        "ram_available_bytes": memory.available,
        "env_variables": {k: os.environ[k] for k in ENV_VARIABLES if k in os.environ},
        "gpubench_version": gpubench.__version__,
        "git_commit": git_commit(),  # the rows' column: the code that ran
        "caller_git_commit": git_commit(os.getcwd()),  # the folder gpubench ran from
    }
