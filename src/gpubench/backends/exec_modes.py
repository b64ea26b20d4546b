"""The names of execution modes (`--exec`, the identity column `exec`), importable
without a framework: `gpubench list` and preflight read them. How the torch backends
run each one is in backends/torch_exec.py; `xla` is TensorFlow's (tf-*-xla)."""

from __future__ import annotations

from typing import Optional

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes
# `compile` is torch.compile's default mode; `compile:MODE` the others
TORCH_CPU_EXEC_MODES = ("eager",) + tuple(
    "compile" if m == "default" else f"compile:{m}" for m in COMPILE_MODES)
TORCH_CUDA_EXEC_MODES = TORCH_CPU_EXEC_MODES + ("cuda-graphs",)


def compile_mode(exec_mode: str) -> Optional[str]:
    """The torch.compile mode of an exec mode, None for the others."""
    if exec_mode == "compile":
        return "default"
    return exec_mode.split(":", 1)[1] if exec_mode.startswith("compile:") else None


def exec_with_compile_mode(exec_mode: str, mode: Optional[str]) -> str:
    """`--exec compile --compile-mode max-autotune` -> `compile:max-autotune`."""
    if mode is None or mode == "default":
        return exec_mode
    return f"{exec_mode}:{mode}"
