"""The backend registry (gpubench/registry.py). Names map to factories so that listing
backends imports no framework; plugins add factories through the entry-point group
`gpubench.backends`."""

from __future__ import annotations

from typing import Callable, Dict, List

from gpubench.backends.base import (
    MODES, PRECISIONS, Backend, DeviceInfo, Step, StepConfig, StepTimer,
)
from gpubench.errors import BackendUnavailable
from gpubench.registry import Registry

__all__ = [
    "MODES", "PRECISIONS", "Backend", "DeviceInfo", "Step", "StepConfig", "StepTimer",
    "AUTO_ORDER", "all_backends", "get_backend", "register_backend", "resolve_backend",
]


def _torch(device_kind: str) -> Callable[[], Backend]:
    def make() -> Backend:
        from gpubench.backends.torch_backend import TorchBackend
        return TorchBackend(device_kind)
    return make


def _tf(device_kind: str, xla: bool = False) -> Callable[[], Backend]:
    def make() -> Backend:
        from gpubench.backends.tensorflow_backend import TFBackend
        return TFBackend(device_kind, xla)
    return make


def _ort(device_kind: str) -> Callable[[], Backend]:
    def make() -> Backend:
        from gpubench.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(device_kind)
    return make


def _tensorrt() -> Backend:
    from gpubench.backends.tensorrt_backend import TensorRTBackend
    return TensorRTBackend()


# `auto` takes the first available of these: the GPU when there is one.
AUTO_ORDER = ("torch-cuda", "torch-cpu")

BACKENDS: Registry[Callable[[], Backend]] = Registry("backend", {
    "torch-cuda": _torch("cuda"),
    "torch-cpu": _torch("cpu"),
    "tf-gpu": _tf("cuda"),
    "tf-cpu": _tf("cpu"),
    "tf-gpu-xla": _tf("cuda", xla=True),
    "tf-cpu-xla": _tf("cpu", xla=True),
    "onnxruntime-cpu": _ort("cpu"),
    "onnxruntime-cuda": _ort("cuda"),
    "tensorrt": _tensorrt,
}, group="gpubench.backends", also=("auto",))
_extra = BACKENDS.extra  # what tests put back after registering a backend


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Adds a backend for this process (tests, notebooks)."""
    BACKENDS.register(name, factory)


def all_backends() -> Dict[str, Callable[[], Backend]]:
    return BACKENDS.all()


def backend_names() -> List[str]:
    return BACKENDS.names()


def get_backend(name: str) -> Backend:
    """The backend called `name`, available or not."""
    return BACKENDS.get(name)()


def resolve_backend(name: str) -> Backend:
    """The backend to run for `name` (resolving `auto`); raises BackendUnavailable
    with the reason when it cannot run here."""
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            backend = get_backend(candidate)
            ok, why = backend.is_available()
            if ok:
                return backend
            reasons.append(f"{candidate}: {why}")
        raise BackendUnavailable("no backend is available for auto (" + "; ".join(reasons) + ")")
    backend = get_backend(name)
    ok, why = backend.is_available()
    if not ok:
        raise BackendUnavailable(f"backend {name} is not available: {why}")
    return backend
