"""Framework-free facts about the machine and the code: host, OS, Python, CPU, git
commit. Backends add their framework's facts; telemetry adds the GPUs'."""

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


def git_commit(folder: str = ".") -> Optional[str]:
    """The commit checked out in `folder` (with '-dirty' when it has changes), if any."""
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


def machine_environment() -> Dict[str, Any]:
    return {
        "host": host_name(),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpubench_version": gpubench.__version__,
        "git_commit": git_commit(),
    }
