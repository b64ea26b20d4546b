"""The install targets, read from `make -n` (what make would run, nothing run): on a
machine with nvidia-smi (a fake one first on PATH) and on one without it. The venvs are
make variables pointing into tmp_path, so the real .venv's state does not matter."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _path_without_nvidia_smi() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "nvidia-smi").exists())


@pytest.fixture
def machine(tmp_path):
    """make_n(target, gpu=...) -> the lines `make -n target` prints."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI (fake)'\nexit 0\n")
    smi.chmod(0o755)
    venv, venv_tf = tmp_path / "venv", tmp_path / "venv-tf"

    def make_n(target: str, gpu: bool, installed: bool = False) -> List[str]:
        if installed:  # the main venv is up to date: only the target's own recipe shows
            venv.mkdir(exist_ok=True)
            (venv / ".installed").touch()
        path = _path_without_nvidia_smi()
        env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{path}" if gpu else path}
        for inherited in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # under `make test`: a sub-make
            env.pop(inherited, None)
        proc = subprocess.run([MAKE, "-n", "--no-print-directory", target, f"VENV={venv}",
                               f"VENV_TF={venv_tf}"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    make_n.venv, make_n.venv_tf = venv, venv_tf
    return make_n


def _pip_lines(lines: List[str]) -> List[str]:
    return [ln for ln in lines if " -m pip install" in ln]


def _requirements(pip_line: str) -> List[str]:
    """What a `pip install` line asks for: its arguments that are not options."""
    words = shlex.split(pip_line.split(" > ")[0].split(" || ")[0])
    words = words[words.index("install") + 1:]
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("-c", "--extra-index-url", "--index-url", "-r"):
            skip = True
        elif not w.startswith("-"):
            out.append(w)
    return out


def test_gpu_default_install_is_torch_and_onnxruntime_gpu_only(machine):
    pips = _pip_lines(machine("install", gpu=True))
    assert len(pips) == 1, pips
    pip = pips[0]
    assert pip.startswith(f"{machine.venv}/bin/python -m pip install")
    assert "torch" in pip and "onnx-gpu" in pip and "dev" in pip
    for absent in ("tensorrt", "tensorflow", "constraints/cpu.txt"):
        assert absent not in pip, pip


def test_install_tf_has_its_own_environment(machine):
    for gpu, wanted in ((True, "tensorflow[and-cuda]"), (False, "tensorflow-cpu")):
        lines = machine("install-tf", gpu=gpu)
        pips = _pip_lines(lines)
        assert len(pips) == 1, lines
        assert pips[0].startswith(f"{machine.venv_tf}/bin/python -m pip install"), pips
        assert wanted in pips[0] and "torch" not in pips[0]
        assert any(f"-m venv {machine.venv_tf}" in ln for ln in lines), lines
        # never the main environment's pip, nor its folder
        assert not any(f"{machine.venv}/" in ln for ln in lines), lines


def test_install_tensorrt_adds_only_tensorrt_to_the_main_venv(machine):
    lines = machine("install-tensorrt", gpu=True, installed=True)
    pips = _pip_lines(lines)
    assert len(pips) == 1, lines
    pip = pips[0]
    assert pip.startswith(f"{machine.venv}/bin/python -m pip install")
    assert "--extra-index-url https://pypi.nvidia.com" in pip
    assert _requirements(pip) == ["tensorrt-cu13>=10.13.2,<11"], pip  # nothing else
    assert "-c " in pip.split(" > ")[0]  # installed packages held at their versions
    # checks come first: torch must be a CUDA 13 build
    check = next(i for i, ln in enumerate(lines) if "torch.version.cuda" in ln)
    assert check < lines.index(pip)


def test_cpu_install_is_unchanged_and_tensorrt_refuses_without_nvidia_smi(machine):
    pips = _pip_lines(machine("install", gpu=False))
    assert len(pips) == 1
    assert "-c constraints/cpu.txt" in pips[0] and "tensorflow-cpu" in pips[0]
    assert "'.[torch,onnx,dev]'" in pips[0]
    refused = machine("install-tensorrt", gpu=False)
    assert not _pip_lines(refused) and not any("venv" in ln for ln in refused), refused
    assert any("no nvidia-smi" in ln and "exit 2" in ln for ln in refused), refused


@pytest.mark.parametrize("gpu", [True, False])
def test_gpu_check_installs_nothing(machine, gpu):
    lines = machine("gpu-check", gpu=gpu)
    assert lines == ["PYTHONPATH=src python3 benchmarks/gpu_check.py"], lines
    assert not any("pip" in ln or str(machine.venv) in ln for ln in lines)
