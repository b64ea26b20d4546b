"""ONNX Runtime on the CPU or a CUDA GPU: one class, the device a parameter. It runs the
workload's ONNX export (or the file given with --onnx); inference only. onnxruntime is
imported only in prepare() and environment()."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict, FrozenSet, Optional, Tuple

from gpubench.backends.base import SERVING_CAPABILITIES, Backend, Step, StepConfig
from gpubench.errors import Unsupported
from gpubench.workloads import Workload

INSTALL_HINT = "pip install 'gpubench[onnx]'"
CUDA_PROVIDER_LIB = "libonnxruntime_providers_cuda.so"
TRAIN_REASON = ("{name} runs inference only: an ONNX file holds the forward graph, with no "
                "backward pass or optimizer (use --mode infer)")
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16")}
_WHY_NOT = {
    ("cpu", "fp16"): "ONNX Runtime's CPU provider lacks float16 kernels for most of these ops "
                     "and would time inserted casts around fp32 ones",
    ("cpu", "bf16"): "ONNX Runtime's CPU provider has no bfloat16 kernels for these ops",
    ("cpu", "tf32"): "tf32 is a CUDA tensor-core mode",
    ("cuda", "bf16"): "gpubench exports fp32 and fp16 graphs only; ONNX Runtime's CUDA provider "
                      "covers few bfloat16 ops",
}


def _ort_package_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


class OnnxRuntimeBackend(Backend):
    framework = "onnxruntime"
    distributions = ("onnxruntime-gpu", "onnxruntime")
    accepts_onnx = True
    modes = ("infer",)  # a run that names no --mode infers

    def __init__(self, device_kind: str) -> None:
        assert device_kind in ("cpu", "cuda")
        self.device_kind = device_kind
        self.name = f"onnxruntime-{device_kind}"
        self._run_facts: Dict[str, Any] = {}  # what the last prepare() set up

    def is_available(self) -> Tuple[bool, str]:
        package = _ort_package_dir()
        if package is None:
            return False, f"onnxruntime is not installed ({INSTALL_HINT})"
        if self.device_kind == "cuda":
            # The CPU wheel (`onnxruntime`) has no CUDA provider library; the GPU wheel
            # (`onnxruntime-gpu`) ships it. Whether it loads is known only in prepare().
            if not (package / "capi" / CUDA_PROVIDER_LIB).exists():
                return False, ("this onnxruntime build has no CUDA provider "
                               "(pip uninstall onnxruntime; pip install onnxruntime-gpu)")
            from gpubench.backends.torch_backend import nvidia_driver_problem
            problem = nvidia_driver_problem()
            if problem:
                return False, problem
        return True, ""

    def capabilities(self, mode: str) -> FrozenSet[str]:
        return SERVING_CAPABILITIES  # inference only; predict: the accuracy gate; serve

    def check_config(self, mode: str, precision: str) -> None:
        if mode == "train":
            raise Unsupported(TRAIN_REASON.format(name=self.name))
        if precision not in PRECISIONS[self.device_kind]:
            why = _WHY_NOT.get((self.device_kind, precision), "not supported")
            raise Unsupported(f"precision {precision} is not supported on {self.name}: {why}")

    def prepare(self, workload: Workload, config: StepConfig) -> Step:
        self.check_config(config.mode, config.precision)
        from gpubench.backends.onnx_export import onnx_model_for
        from gpubench.backends.onnxruntime_step import OrtStep

        model = onnx_model_for(workload, config.precision, config.batch_size, config.seed,
                               config.onnx_path, reference_init=config.reference_init)
        step = OrtStep(workload, config, model, self.device_kind)
        self._run_facts = {**model.facts(), **step.session_facts}
        return step

    def environment(self) -> Dict[str, Any]:
        if _ort_package_dir() is None:
            return {"framework": "onnxruntime", "framework_version": None}
        import onnxruntime as ort

        env: Dict[str, Any] = {
            "framework": "onnxruntime", "framework_version": ort.__version__,
            "onnxruntime_providers_available": ort.get_available_providers(),
        }
        if self.device_kind == "cuda":  # the CUDA/cuDNN the GPU wheel was built for
            from onnxruntime.capi import build_and_package_info as info
            env["cuda_version"] = getattr(info, "cuda_version", None)
            env["cudnn_version"] = getattr(info, "cudnn_version", None)
        env.update(self._run_facts)
        return env
