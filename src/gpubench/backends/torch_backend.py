"""PyTorch on the CPU or a CUDA GPU: one class, the device a parameter, so the CPU path
that CI tests is the GPU path. torch is imported only in prepare() and environment()."""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path
from typing import Any, Dict, FrozenSet, Optional, Tuple

from gpubench.backends.exec_modes import TORCH_CPU_EXEC_MODES, TORCH_CUDA_EXEC_MODES
from gpubench.backends.base import (
    MODES, SERVING_CAPABILITIES, TRAINING_CAPABILITIES, Backend, Step, StepConfig,
)
from gpubench.measure.generation.engine import GENERATE_CAPABILITY
from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.workloads import Workload

INSTALL_HINT = "pip install 'gpubench[torch]'"
CPU_PRECISIONS = ("fp32", "bf16")
AMPERE = (8, 0)  # tf32 and fast bf16 start with compute capability 8.0


def _torch_build_facts() -> Optional[Dict[str, Optional[str]]]:
    """torch's version and CUDA build, read from torch/version.py without importing
    torch (which takes over a second). None when torch is not installed."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    facts: Dict[str, Optional[str]] = {"version": None, "cuda": None}
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return facts
    for key, pattern in (("version", r"^__version__\s*=\s*['\"]([^'\"]+)"),
                         ("cuda", r"^cuda(?::[^=]*)?=\s*['\"]([^'\"]+)")):
        match = re.search(pattern, text, re.MULTILINE)
        facts[key] = match.group(1) if match else None
    return facts


def nvidia_driver_problem() -> Optional[str]:
    """None when the CUDA driver library loads, else why not."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver: libcuda.so.1 could not be loaded"
    return None


class TorchBackend(Backend):
    framework = "torch"
    modes = MODES  # generate too: a KV-cache decode step (torch_generate_step.py)

    def __init__(self, device_kind: str) -> None:
        assert device_kind in ("cpu", "cuda")
        self.device_kind = device_kind
        # eager, torch.compile's modes, and on CUDA whole-step CUDA graphs (torch_exec.py)
        self.exec_modes = TORCH_CUDA_EXEC_MODES if device_kind == "cuda" else TORCH_CPU_EXEC_MODES
        self.name = f"torch-{device_kind}"
        self._run_facts: Dict[str, Any] = {}  # what the last prepare() set up

    def is_available(self) -> Tuple[bool, str]:
        facts = _torch_build_facts()
        if facts is None:
            return False, f"torch is not installed ({INSTALL_HINT})"
        if self.device_kind == "cuda":
            if not facts["cuda"]:
                return False, f"torch {facts['version'] or ''} was built without CUDA".replace("  ", " ")
            problem = nvidia_driver_problem()
            if problem:
                return False, problem
        return True, ""

    def capabilities(self, mode: str) -> FrozenSet[str]:
        # Training steps walk real data epoch by epoch; inference steps predict and
        # serve. Both run data-parallel: training as DDP replicas, inference as one
        # replica a rank. Collective workloads: an all-reduce or all-gather step
        # (torch_collective.py).
        if mode == "train":
            return TRAINING_CAPABILITIES | {"data_parallel", "collective"}
        if mode == "generate":
            return frozenset({GENERATE_CAPABILITY})
        return SERVING_CAPABILITIES | {"data_parallel", "collective"}

    def check_config(self, mode: str, precision: str) -> None:
        if self.device_kind == "cpu" and precision not in CPU_PRECISIONS:
            why = ("tf32 is a CUDA tensor-core mode" if precision == "tf32"
                   else "fp16 has no fast CPU kernels in torch (use bf16)")
            raise Unsupported(f"precision {precision} is not supported on torch-cpu: {why}")

    def prepare(self, workload: Workload, config: StepConfig) -> Step:
        self.check_config(config.mode, config.precision)
        import torch

        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if self.device_kind == "cuda":
            device = self._cuda_device(torch, config)
        else:
            device = torch.device("cpu")
        if workload.task == "collective":
            from gpubench.backends.torch_collective import collective_step
            step = collective_step(workload, config, device)
            self._run_facts = {}
            return step
        if config.mode == "generate":
            from gpubench.backends.torch_generate_step import TorchGenerateStep
            step = TorchGenerateStep(workload, config, device)
            self._run_facts = step.facts
            return step
        from gpubench.backends.torch_step import TorchStep
        step = TorchStep(workload, config, device)
        self._run_facts = step.facts
        return step

    def _cuda_device(self, torch: Any, config: StepConfig) -> Any:
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                "torch-cuda is not available: torch sees no CUDA device "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        count = torch.cuda.device_count()
        if not 0 <= config.device_index < count:
            names = ", ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(count))
            raise UserError(f"no GPU with index {config.device_index} (GPUs: {names})")
        capability = torch.cuda.get_device_capability(config.device_index)
        if config.precision in ("tf32", "bf16") and capability < AMPERE:
            raise Unsupported(
                f"precision {config.precision} needs compute capability 8.0 or newer; "
                f"GPU {config.device_index} has {capability[0]}.{capability[1]}")
        return torch.device("cuda", config.device_index)

    def build_facts(self) -> Dict[str, Any]:
        facts = _torch_build_facts() or {}
        return {"framework": "torch", "framework_version": facts.get("version"),
                "cuda_version": facts.get("cuda")}

    def environment(self) -> Dict[str, Any]:
        facts = _torch_build_facts()
        if facts is None:
            return {"framework": "torch", "framework_version": None}
        import torch

        env: Dict[str, Any] = {
            "framework": "torch",
            "framework_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "torch_threads": torch.get_num_threads(),
        }
        if self.device_kind == "cpu":
            env["torch_flush_denormal"] = True  # set by TorchStep, see there
        if torch.backends.cudnn.is_available():
            env["cudnn_version"] = str(torch.backends.cudnn.version())
        env.update(self._run_facts)
        return env
