"""The timed step for ONNX Runtime: one InferenceSession, the data resident on the
device as OrtValues, and one prebuilt I/O binding per batch, so the hot loop is a bare
`run_with_iobinding` (no per-step host<->device copies, no output allocation).

ONNX Runtime's Run returns only after the device work has finished (it synchronises
its CUDA stream at the end of every run), so per-step latency is the host clock around
each call, on the GPU as on the CPU."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import onnxruntime as ort

from gpubench.backends.base import (
    HOST_CLOCK_FACTS, DeviceInfo, HostTimer, Step, StepConfig, StepTimer,
)
from gpubench.backends.onnx_export import OnnxModel
from gpubench.backends.onnxruntime_placement import cpu_nodes, profile_placement
from gpubench.data.sources import resident_batches
from gpubench.errors import BackendUnavailable, UserError
from gpubench.workloads import Workload

GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
_ORT_ERROR_LEVEL = 3  # ORT logs warnings to stderr itself; nothing below the CLI prints


def _cuda_device_info(index: int) -> DeviceInfo:
    """Name and UUID of CUDA device `index`: through torch when it is installed (the
    same numbering ONNX Runtime uses), else NVML."""
    try:
        import torch

        props = torch.cuda.get_device_properties(index)
        uuid = getattr(props, "uuid", None)
        return DeviceInfo("cuda", index, props.name, f"GPU-{uuid}" if uuid is not None else None)
    except Exception:  # no torch, or a CPU build: NVML knows the GPU too
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return DeviceInfo("cuda", index, f"CUDA device {index}")
    # Best effort without torch: NVML counts GPUs in PCI bus order, CUDA by default
    # fastest first and after CUDA_VISIBLE_DEVICES, so on a mixed box the name may be
    # another GPU's (torch above, when installed, gives the right one).
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return DeviceInfo("cuda", index, str(pynvml.nvmlDeviceGetName(handle)),
                          str(pynvml.nvmlDeviceGetUUID(handle)))
    except Exception:
        return DeviceInfo("cuda", index, f"CUDA device {index}")
    finally:
        pynvml.nvmlShutdown()


def _load_cuda_libraries() -> str:
    """Loads the CUDA and cuDNN libraries ORT's CUDA provider needs, and says how.
    `onnxruntime.preload_dlls()` (ORT 1.21+) takes them from a compatible torch already
    imported, else from the `nvidia-*` wheels, else the library path. Older ORT: importing
    a CUDA torch first loads them into the process, the way ORT documents to share
    them. Either way a provider that still does not load is caught after the session."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
            return "onnxruntime.preload_dlls"
        except Exception as exc:  # a missing library: the provider check below says so
            return f"onnxruntime.preload_dlls failed: {_first_line(exc)}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "library path"
    return "torch"


def _built_for() -> str:
    """The CUDA and cuDNN this onnxruntime-gpu build needs, as its build info says."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return "the CUDA and cuDNN libraries"
    cuda, cudnn = getattr(info, "cuda_version", None), getattr(info, "cudnn_version", None)
    return f"CUDA {cuda or '?'} and cuDNN {cudnn or '?'} libraries"


def _session_options(config: StepConfig) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    options.intra_op_num_threads = config.threads or 0  # 0: ORT's default, one per physical core
    options.inter_op_num_threads = 1  # one graph at a time: no inter-op parallelism to use
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = _ORT_ERROR_LEVEL
    return options


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class OrtStep(Step):
    def __init__(self, workload: Workload, config: StepConfig, model: OnnxModel,
                 device_kind: str) -> None:
        self.config = config
        self.is_cuda = device_kind == "cuda"
        ort.set_default_logger_severity(_ORT_ERROR_LEVEL)
        provider_options: Dict[str, str] = {}
        cuda_libraries = None
        if self.is_cuda:
            cuda_libraries = _load_cuda_libraries()
            # fp32 means fp32: ORT's CUDA provider allows TF32 unless told not to.
            provider_options = {"device_id": str(config.device_index),
                                "use_tf32": "1" if config.precision == "tf32" else "0"}
            providers: List[Any] = [(CUDA_PROVIDER, provider_options), CPU_PROVIDER]
        else:
            providers = [CPU_PROVIDER]

        def make_session(options: Any) -> Any:
            return ort.InferenceSession(model.ort_source(), options, providers=providers)

        try:
            self.session = make_session(_session_options(config))
        except Exception as exc:
            if model.source == "file":  # the user's file: a clear refusal, not a traceback
                raise UserError(f"onnxruntime cannot load {model.path}: {_first_line(exc)}") from None
            raise
        active = self.session.get_providers()
        if self.is_cuda and CUDA_PROVIDER not in active:
            # ORT falls back to the CPU silently when the CUDA provider cannot load
            # (missing CUDA/cuDNN libraries, a driver too old): timing that would be a lie.
            raise BackendUnavailable(
                "onnxruntime-cuda is not available: ONNX Runtime's CUDA provider did not load "
                f"and the session fell back to {', '.join(active)} (are the {_built_for()} "
                f"onnxruntime-gpu needs installed? loaded through: {cuda_libraries})")
        self.session_facts: Dict[str, Any] = {
            "onnxruntime_session_providers": active,
            "onnxruntime_provider_options": provider_options or None,
            "onnxruntime_cuda_libraries": cuda_libraries,
            "onnxruntime_graph_optimization_level": GRAPH_OPTIMIZATION,
            "onnxruntime_intra_op_threads": config.threads or "default (one per physical core)",
            "onnxruntime_inter_op_threads": 1,
            "onnxruntime_execution_mode": "ORT_SEQUENTIAL",
        }
        self.warnings: List[str] = []
        self._device = "cuda" if self.is_cuda else "cpu"
        self._device_id = config.device_index if self.is_cuda else 0
        if self.is_cuda:
            self.device = _cuda_device_info(config.device_index)
        else:
            from gpubench.machine import cpu_model
            self.device = DeviceInfo("cpu", None, cpu_model())
        self._bind(workload, config, model)
        if self.is_cuda:
            self._check_placement(make_session, config)

    def _check_placement(self, make_session: Callable[[Any], Any], config: StepConfig) -> None:
        """Records which provider runs each node; nodes on the CPU are named, and warned of."""
        placement = profile_placement(make_session, _session_options(config),
                                      {self.session.get_inputs()[0].name: self.host_inputs[0]})
        on_cpu = cpu_nodes(placement, CPU_PROVIDER)
        self.session_facts.update(onnxruntime_nodes_per_provider=placement["providers"],
                                  onnxruntime_cpu_nodes=on_cpu)
        if on_cpu:
            shown = ", ".join(on_cpu[:5]) + (f" and {len(on_cpu) - 5} more" if len(on_cpu) > 5 else "")
            self.warnings.append(f"ONNX Runtime runs {len(on_cpu)} node(s) of this graph on the CPU, "
                                 f"not the GPU: {shown}; the timing includes them and their copies")

    def _bind(self, workload: Workload, config: StepConfig, model: OnnxModel) -> None:
        dtype = np.dtype(model.signature.input_dtype)
        batches = resident_batches(workload, config.batch_size, config.data_batches,
                                   config.seed, config.data, config.data_dir)
        self._input_dtype = dtype
        # On the CPU an OrtValue is a view of its numpy array: keeping both costs nothing.
        self.host_inputs = [np.ascontiguousarray(x.astype(dtype)) for x, _ in batches]
        self.inputs = [ort.OrtValue.ortvalue_from_numpy(x, self._device, self._device_id)
                       for x in self.host_inputs]
        outputs: List[tuple] = []
        for out in self.session.get_outputs():
            shape = [config.batch_size] + list(out.shape[1:])
            np_type = _NUMPY_TYPES.get(out.type)
            value = None
            if np_type is not None and all(isinstance(d, int) and d > 0 for d in shape):
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, np_type, self._device,
                                                                  self._device_id)
            outputs.append((out.name, value))
        self._outputs = outputs  # keeps the preallocated buffers alive
        input_name = self.session.get_inputs()[0].name
        self.bindings = []
        for value in self.inputs:
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(input_name, value)
            for name, out_value in outputs:
                if out_value is not None:
                    binding.bind_ortvalue_output(name, out_value)
                else:  # shape unknown before the run: ORT allocates it on the device
                    binding.bind_output(name, self._device, self._device_id)
            self.bindings.append(binding)

    # -- the timed interface -----------------------------------------------------------
    def make_timer(self, iterations: int) -> StepTimer:
        return HostTimer(iterations)

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        run, bindings, k = self.session.run_with_iobinding, self.bindings, len(self.bindings)
        if timer is None:
            for i in range(iterations):
                run(bindings[i % k])
            return
        times, clock = timer.times_s, time.perf_counter  # type: ignore[attr-defined]
        for i in range(iterations):
            t0 = clock()
            run(bindings[i % k])
            times[i] = clock() - t0

    def synchronize(self) -> None:
        if self.is_cuda and self.bindings:
            self.bindings[0].synchronize_outputs()

    # -- for parity checks (not timed) ---------------------------------------------------
    def input_batch(self, index: int = 0) -> np.ndarray:
        return self.host_inputs[index]

    def outputs(self, index: int = 0) -> np.ndarray:
        """Runs batch `index` once and returns the first output on the host."""
        binding = self.bindings[index]
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def start_serving(self, library: np.ndarray) -> Dict[str, Any]:
        self._library = np.ascontiguousarray(library.astype(self._input_dtype))
        self._serve_input = self.session.get_inputs()[0].name
        return dict(HOST_CLOCK_FACTS)  # Run returns once the outputs are on the host

    def serve(self, samples: np.ndarray) -> Optional[float]:
        # a plain Run: the batch copied in (to the GPU on CUDA), every output back out
        self.session.run(None, {self._serve_input: self._library[samples]})
        return None

    def predict(self, x: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        out = self.session.run(None, {name: np.ascontiguousarray(x.astype(self._input_dtype))})
        return np.asarray(out[0], dtype=np.float32)

    def close(self) -> None:
        self.bindings = []
        self.inputs, self.host_inputs = [], []
        self._outputs = []
        self.session = None
