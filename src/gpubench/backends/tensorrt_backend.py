"""TensorRT on an NVIDIA GPU: an engine built from the workload's ONNX export (or the
file given with --onnx), cached on disk, run on device buffers that are torch CUDA
tensors (no pycuda). Inference only. tensorrt and torch are imported only in prepare()
and environment(); TensorRT cannot be installed on CPU-only machines (its wheels need
NVIDIA's CUDA libraries), so everything here but the engine is tested without it."""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Dict, FrozenSet, List, Tuple

from gpubench.backends.base import SERVING_CAPABILITIES, Backend, Step, StepConfig
from gpubench.backends.tensorrt_engine import ENGINE_PRECISIONS
from gpubench.errors import BackendUnavailable, Unsupported
from gpubench.workloads import Workload

INSTALL_HINT = ("on a machine with an NVIDIA GPU: make install-tensorrt, or pip install "
                "--extra-index-url https://pypi.nvidia.com 'gpubench[tensorrt]' (NVIDIA's "
                "wheels for CUDA 13, as torch's)")
TRAIN_REASON = ("tensorrt runs inference only: an engine is a compiled forward graph, with no "
                "backward pass or optimizer (use --mode infer)")
AMPERE = (8, 0)
MIN_TENSORRT_MAJOR = 10


def _problems() -> List[str]:
    """Why the tensorrt backend cannot run here, cheaply (no framework imported)."""
    problems = []
    if importlib.util.find_spec("tensorrt") is None:
        problems.append(f"TensorRT is not installed ({INSTALL_HINT})")
    from gpubench.backends.torch_backend import _torch_build_facts, nvidia_driver_problem

    facts = _torch_build_facts()
    if facts is None:
        problems.append("torch is not installed (it provides the device buffers and the ONNX export)")
    elif not facts["cuda"]:
        problems.append(f"torch {facts['version']} was built without CUDA "
                        "(the device buffers are torch CUDA tensors)")
    driver = nvidia_driver_problem()
    if driver:
        problems.append(driver)
    return problems


class TensorRTBackend(Backend):
    name = "tensorrt"
    framework = "tensorrt"
    distributions = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12")
    device_kind = "cuda"
    accepts_onnx = True
    modes = ("infer",)  # a run that names no --mode infers

    def __init__(self) -> None:
        self._run_facts: Dict[str, Any] = {}

    def is_available(self) -> Tuple[bool, str]:
        problems = _problems()
        return (not problems), "; ".join(problems)

    def capabilities(self, mode: str) -> FrozenSet[str]:
        return SERVING_CAPABILITIES  # inference only; predict: the accuracy gate; serve

    def check_config(self, mode: str, precision: str) -> None:
        if mode == "train":
            raise Unsupported(TRAIN_REASON)
        if precision not in ENGINE_PRECISIONS:
            raise Unsupported(
                f"precision {precision} is not supported on tensorrt: engines are built for "
                f"{', '.join(ENGINE_PRECISIONS)} (gpubench exports fp32 and fp16 graphs only)")

    def prepare(self, workload: Workload, config: StepConfig) -> Step:
        self.check_config(config.mode, config.precision)
        problems = _problems()
        if problems:
            raise BackendUnavailable("backend tensorrt is not available: " + "; ".join(problems))
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("backend tensorrt is not available: torch sees no CUDA device "
                                     f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        if not 0 <= config.device_index < torch.cuda.device_count():
            raise BackendUnavailable(f"no GPU with index {config.device_index} "
                                     f"({torch.cuda.device_count()} visible)")
        capability = torch.cuda.get_device_capability(config.device_index)
        if config.precision == "tf32" and capability < AMPERE:
            raise Unsupported(f"precision tf32 needs compute capability 8.0 or newer; GPU "
                              f"{config.device_index} has {capability[0]}.{capability[1]}")
        from gpubench.backends.onnx_export import onnx_model_for
        from gpubench.backends.tensorrt_step import TrtStep

        model = onnx_model_for(workload, config.precision, config.batch_size, config.seed,
                               config.onnx_path, reference_init=config.reference_init)
        step = TrtStep(trt, workload, config, model)
        self._run_facts = {**model.facts(), **step.engine_facts}
        return step

    def environment(self) -> Dict[str, Any]:
        env: Dict[str, Any] = {"framework": "tensorrt", "framework_version": None}
        if importlib.util.find_spec("tensorrt") is not None:
            try:
                env["framework_version"] = env["tensorrt_version"] = import_tensorrt().__version__
            except BackendUnavailable as exc:
                env["tensorrt_error"] = str(exc)
        if importlib.util.find_spec("torch") is not None:
            import torch

            env["torch_version"] = torch.__version__
            env["cuda_version"] = torch.version.cuda
        env.update(self._run_facts)
        return env


def import_tensorrt() -> Any:
    """The tensorrt module; BackendUnavailable when it is a stub or cannot load (the
    PyPI `tensorrt` package without NVIDIA's libraries, say)."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, OSError from a missing libnvinfer, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailable(f"backend tensorrt is not available: tensorrt is installed but "
                                 f"cannot be imported ({type(exc).__name__}: {first})") from None
    if not hasattr(tensorrt, "Builder"):
        raise BackendUnavailable("backend tensorrt is not available: the installed tensorrt "
                                 "package is a stub without the TensorRT runtime")
    version = str(getattr(tensorrt, "__version__", ""))
    major = re.match(r"\d+", version)
    if major is None or int(major.group()) < MIN_TENSORRT_MAJOR:
        raise BackendUnavailable(f"backend tensorrt is not available: it needs TensorRT "
                                 f"{MIN_TENSORRT_MAJOR} or newer (strongly typed networks, "
                                 f"execute_async_v3); found {version}")
    return tensorrt
