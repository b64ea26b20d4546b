"""The backend registry. Names map to factories so that listing backends imports no
framework; plugins add factories through the entry-point group `gpubench.backends`."""

from __future__ import annotations

from typing import Callable, Dict, List

from gpubench.backends.base import (
    MODES, PRECISIONS, Backend, DeviceInfo, Step, StepConfig, StepTimer,
)
from gpubench.errors import BackendUnavailable, UserError

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


_BUILTIN: Dict[str, Callable[[], Backend]] = {
    "torch-cuda": _torch("cuda"),
    "torch-cpu": _torch("cpu"),
    "tf-gpu": _tf("cuda"),
    "tf-cpu": _tf("cpu"),
    "tf-gpu-xla": _tf("cuda", xla=True),
    "tf-cpu-xla": _tf("cpu", xla=True),
    "onnxruntime-cpu": _ort("cpu"),
    "onnxruntime-cuda": _ort("cuda"),
    "tensorrt": _tensorrt,
}
_extra: Dict[str, Callable[[], Backend]] = {}
_plugins_loaded = False

# `auto` takes the first available of these: the GPU when there is one.
AUTO_ORDER = ("torch-cuda", "torch-cpu")


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Adds a backend for this process (tests, notebooks)."""
    _extra[name] = factory


def all_backends() -> Dict[str, Callable[[], Backend]]:
    global _plugins_loaded
    if not _plugins_loaded:
        from gpubench.plugins import import_env_plugins, load_group
        _plugins_loaded = True
        for name, factory in load_group("gpubench.backends").items():
            _extra.setdefault(name, factory)
        import_env_plugins()
    return {**_BUILTIN, **_extra}


def backend_names() -> List[str]:
    return sorted(all_backends()) + ["auto"]


def get_backend(name: str) -> Backend:
    """The backend called `name`, available or not."""
    factory = _BUILTIN.get(name) or _extra.get(name) or all_backends().get(name)
    if factory is None:
        raise UserError(f"unknown backend {name!r} (valid: {', '.join(backend_names())})")
    return factory()


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
