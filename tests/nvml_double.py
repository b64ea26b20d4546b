"""The NVML test double (tests/native/fake_nvml.c): building it with gcc, and running
gpubench in a subprocess that loads it as libnvidia-ml.so.1.

The double is loaded the way the real driver library is: pynvml calls
CDLL("libnvidia-ml.so.1"), and the subprocess starts with LD_LIBRARY_PATH pointing at
the folder that holds the built double under that name. The double's behaviour is
scripted with FAKE_NVML_* environment variables (see the header of fake_nvml.c).

Used by the tests (the `fake_nvml_dir` fixture) and by benchmarks/sampler_overhead.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

try:
    import pytest
except ImportError:  # the benchmark uses the build helpers without pytest
    pytest = None

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "tests" / "native" / "fake_nvml.c"
DEFAULT_BUILD_DIR = REPO / "tests" / "native" / "build"  # git-ignored
LIB_NAME = "libnvidia-ml.so.1"


class BuildError(RuntimeError):
    pass


def build_fake_nvml(build_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Compiles the double into `build_dir`/libnvidia-ml.so.1 (again only when the
    source is newer) and returns the folder."""
    build_dir = Path(build_dir)
    lib = build_dir / LIB_NAME
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return build_dir
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BuildError("gcc is needed to build the NVML test double (make native)")
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = build_dir / f"{LIB_NAME}.{os.getpid()}.tmp"
    cmd = [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
           f"-Wl,-soname,{LIB_NAME}", "-o", str(tmp), str(SOURCE), "-lm", "-lpthread"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"building the NVML test double failed:\n{done.stderr}")
    os.replace(tmp, lib)  # atomic: parallel sessions never load a half-written file
    return build_dir


def double_env(lib_dir: Path, **fake: Any) -> Dict[str, str]:
    """The environment of a subprocess that loads the double: LD_LIBRARY_PATH first,
    FAKE_NVML_* from `fake` (FAKE_NVML_ prefix optional), no inherited FAKE_NVML_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVML_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(lib_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    for key, value in fake.items():
        name = key if key.startswith(("FAKE_NVML_", "CUDA_")) else f"FAKE_NVML_{key.upper()}"
        env[name] = str(value)
    return env


@dataclass
class RunResult:
    proc: subprocess.CompletedProcess
    folder: Optional[Path]

    @property
    def trials(self):
        import pandas as pd
        return pd.read_csv(self.folder / "trials.csv")

    @property
    def samples(self):
        import pandas as pd
        return pd.read_csv(self.folder / "samples.csv")

    @property
    def run_json(self) -> Dict[str, Any]:
        return json.loads((self.folder / "run.json").read_text())


FAST = ("--trials", "2", "--warmup-s", "0.1", "--min-trial-s", "0.2")

# `fake_cuda=True` adds backend `fake-cuda` (tests/native/fake_cuda_plugin.py) through
# GPUBENCH_PLUGINS, which gpubench's isolated run workers inherit.
FAKE_CUDA_PLUGIN = "fake_cuda_plugin"


def run_cli(lib_dir: Path, out: Path, args: Sequence[str], timeout: float = 300,
            quiet: bool = True, fake_cuda: bool = False, **fake: Any) -> RunResult:
    """`gpubench run ARGS --out OUT -q` in a subprocess with the double loaded;
    `fake_cuda` adds the fake-cuda backend."""
    cmd = [sys.executable, "-m", "gpubench", "run", *args, "--out", str(out),
           *(["-q"] if quiet else [])]
    env = double_env(lib_dir, **fake)
    if fake_cuda:
        env["PYTHONPATH"] = os.pathsep.join((str(SOURCE.parent), env["PYTHONPATH"]))
        env["GPUBENCH_PLUGINS"] = FAKE_CUDA_PLUGIN
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    folder = None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode in (0, 4) and lines:
        folder = Path(lines[0])  # the run folder comes first, then the table
    return RunResult(proc, folder)


def run_python(lib_dir: Path, code: str, timeout: float = 300, **fake: Any) -> Any:
    """Runs `code` in a subprocess with the double loaded; the code prints one JSON
    document as its last line, which is returned."""
    proc = subprocess.run([sys.executable, "-c", code], env=double_env(lib_dir, **fake),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def call_log(path: Path) -> List[List[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


if pytest is not None:
    @pytest.fixture(scope="session")
    def fake_nvml_dir(tmp_path_factory: "pytest.TempPathFactory") -> Path:
        """The folder holding the built double as libnvidia-ml.so.1 (a test that needs
        it fails, not skips, when gcc is missing: `make native` installs it)."""
        try:
            return build_fake_nvml(tmp_path_factory.mktemp("fake_nvml"))
        except BuildError as exc:
            pytest.fail(str(exc))


def load_in_process(lib_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Loads the double into this process by absolute path, so that pynvml's later
    CDLL("libnvidia-ml.so.1") finds it by its soname (for benchmarks, never tests).
    Must run before anything loads NVML."""
    import ctypes
    lib = Path(lib_dir) / LIB_NAME
    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    return lib


def set_fake(env: Mapping[str, Any]) -> None:
    """Sets FAKE_NVML_* in this process's environment (before nvmlInit reads them)."""
    for key, value in env.items():
        os.environ[key if key.startswith("FAKE_NVML_") else f"FAKE_NVML_{key.upper()}"] = str(value)
