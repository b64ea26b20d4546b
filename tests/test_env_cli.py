"""`gpubench env`: fast without --frameworks (no framework imported: versions and CUDA
builds come from package metadata), and the facts collect_env users look for."""

import json
import subprocess
import sys

from conftest import REPO, run_cli

FRAMEWORKS = ("torch", "tensorflow", "onnxruntime", "tensorrt", "keras")


def test_env_imports_no_framework():
    code = ("import sys, io, contextlib\n"
            "from gpubench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['env', '--json']) == 0\n"
            f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_env_lists_versions_memory_libc_flags_and_variables():
    proc = run_cli("env", "--json", env_extra={"OMP_NUM_THREADS": "3"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    machine = data["machine"]
    assert machine["ram_total_bytes"] >= machine["ram_available_bytes"] > 0
    assert machine["numpy_version"].count(".") >= 1
    assert machine["env_variables"]["OMP_NUM_THREADS"] == "3"
    if sys.platform.startswith("linux"):
        assert machine["libc"] and isinstance(machine["cpu_flags"], str)
    torch = data["frameworks"]["torch"]
    assert torch["framework_version"].startswith("2.") and "cuda_version" in torch
    assert "torch_threads" not in torch  # only an imported torch knows it


def test_env_frameworks_imports_them_for_what_only_they_know():
    proc = run_cli("env", "--json", "--frameworks")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frameworks"]["torch"]["torch_threads"] >= 1
