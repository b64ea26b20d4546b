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
EXEC_MODES = TORCH_CUDA_EXEC_MODES + ("xla",)  # every backend's, together: --exec, execs


# What a whole-step CUDA-graph capture (torch_exec.GraphedStep) cannot honestly run,
# refused in preflight on any machine (measure/request.py check_exec_plan):
# - ranks: torch's CUDA semantics notes ("Usage with DistributedDataParallel") capture DDP
#   only when it is built on a side stream and runs 11 DDP-enabled eager iterations
#   before capture (NCCL's async error handling off), and document no capture of FSDP;
# - epochs (time-to-accuracy): an epoch's last batch is short (60000 % 64 = 32) where
#   the graph holds one batch shape, and the capture's warm-up steps (3, and the checked
#   first replay) train the model before epoch 1, away from the reference start.
CUDA_GRAPHS_RANKED = ("exec mode cuda-graphs cannot run data-parallel (--nproc): PyTorch "
                      "documents capturing DistributedDataParallel only when it is built on a "
                      "side stream and runs 11 eager iterations before capture, and FSDP not "
                      "at all; gpubench's capture does neither (use --exec eager or compile)")
CUDA_GRAPHS_EPOCHS = ("exec mode cuda-graphs cannot run scenario {scenario}: its graph replays "
                      "one batch shape where an epoch's last batch is short, and its capture's "
                      "warm-up steps would train the model before epoch 1, away from the "
                      "reference start (use --exec eager or compile)")


def exec_refusal(exec_mode: str, scenario: str, ranked: bool, epochs: bool) -> Optional[str]:
    """Why `exec_mode` cannot run a scenario that walks epochs (`epochs`) or a run of
    ranks (`ranked`), whatever the backend; None where it can."""
    if exec_mode != "cuda-graphs":
        return None
    if ranked:
        return CUDA_GRAPHS_RANKED
    if epochs:
        return CUDA_GRAPHS_EPOCHS.format(scenario=scenario)
    return None


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
