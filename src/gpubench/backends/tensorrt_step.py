"""The timed step for TensorRT: an engine (from the on-disk cache, else built now and
cached), one execution context, and device buffers that are torch CUDA tensors. Steps
are enqueued on a dedicated CUDA stream (TensorRT synchronises extra on the legacy
default stream) and timed with CUDA events on that stream. Building and loading the
engine happen here, in prepare, so their time is recorded apart from the trials."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from gpubench.backends.artifact_cache import ArtifactCache
from gpubench.backends.base import DeviceInfo, Step, StepConfig, StepTimer
from gpubench.backends.cuda_events import CudaEventPool, DeviceClock
from gpubench.backends.onnx_export import OnnxModel
from gpubench.backends.tensorrt_engine import (
    EngineBuildError, build_serialized_engine, check_batch, engine_facts, engine_key,
    engine_profile, make_logger, profile_for,
)
from gpubench.data.sources import resident_batches
from gpubench.errors import UserError
from gpubench.workloads import Workload

LOG_LINES_KEPT = 20


def _torch_dtype(trt: Any, trt_dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=trt.nptype(trt_dtype))).dtype


class TrtStep(Step):
    def __init__(self, trt: Any, workload: Workload, config: StepConfig, model: OnnxModel) -> None:
        self.trt, self.config = trt, config
        self.torch_device = torch.device("cuda", config.device_index)
        # TensorRT works on the current CUDA device; one run per process, so setting it is safe.
        torch.cuda.set_device(self.torch_device)
        props = torch.cuda.get_device_properties(self.torch_device)
        uuid = getattr(props, "uuid", None)
        self.device = DeviceInfo("cuda", config.device_index, props.name,
                                 f"GPU-{uuid}" if uuid is not None else None)
        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.sample_shape = tuple(workload.input_shape)
        # serving runs every batch size up to it: one engine with a dynamic profile
        self.profile = profile_for([1, config.batch_size] if config.variable_batch
                                   else [config.batch_size])
        self.engine, self.engine_facts = self._engine(model, props.name, (props.major, props.minor))
        self.context = self.engine.create_execution_context()
        self._bind(workload, config)

    # -- the engine ----------------------------------------------------------------------
    def _engine(self, model: OnnxModel, gpu_name: str, capability: Tuple[int, int]):
        trt, precision = self.trt, self.config.precision
        name = model.signature.input_name
        facts = engine_facts(model.sha256, trt.__version__, gpu_name, capability, precision, self.profile)
        key = engine_key(model.sha256, trt.__version__, gpu_name, capability, precision, self.profile)
        cache = ArtifactCache("tensorrt", ".engine")
        info: Dict[str, Any] = {
            "tensorrt_version": trt.__version__, "tensorrt_engine_key": key,
            "tensorrt_profile": {"min": self.profile.min, "opt": self.profile.opt, "max": self.profile.max},
            "tensorrt_strongly_typed": True, "tensorrt_tf32": precision == "tf32",
            "gpu_compute_capability": facts["compute_capability"],
            "tensorrt_engine_build_s": None, "tensorrt_engine_load_s": None,
        }
        hit = cache.lookup(key)
        if hit is not None:
            t0 = time.perf_counter()
            engine = self.runtime.deserialize_cuda_engine(hit[0].read_bytes())
            # An engine that does not load, or whose profile is not the one asked for, is
            # rebuilt: never run a batch size through an engine not built for it.
            if engine is not None and engine_profile(engine, name) == self.profile:
                info.update(tensorrt_engine_cache="hit", tensorrt_engine_path=str(hit[0]),
                            tensorrt_engine_load_s=time.perf_counter() - t0)
                return engine, self._with_log(info)
        t0 = time.perf_counter()
        try:
            data = build_serialized_engine(trt, self.logger, model.read_bytes(), name,
                                           self.sample_shape, precision, self.profile)
        except EngineBuildError as exc:
            if model.source == "file":  # the user's model: a clear refusal
                raise UserError(f"{model.path}: {exc}") from None
            raise
        build_s = time.perf_counter() - t0
        path, note = cache.store(key, data, {**facts, "build_s": build_s})
        t0 = time.perf_counter()
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RuntimeError("TensorRT could not load the engine it just built: "
                               + "; ".join(self.logger.messages[-3:]))
        info.update(tensorrt_engine_cache=note, tensorrt_engine_path=str(path) if path else None,
                    tensorrt_engine_build_s=build_s, tensorrt_engine_load_s=time.perf_counter() - t0)
        return engine, self._with_log(info)

    def _with_log(self, info: Dict[str, Any]) -> Dict[str, Any]:
        info["tensorrt_log"] = self.logger.messages[-LOG_LINES_KEPT:]
        return info

    # -- buffers -------------------------------------------------------------------------
    def _bind(self, workload: Workload, config: StepConfig) -> None:
        trt, engine, ctx, dev = self.trt, self.engine, self.context, self.torch_device
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise UserError(f"the engine has {len(inputs)} inputs; gpubench feeds exactly one")
        self.input_name = name = inputs[0]
        check_batch(engine_profile(engine, name), config.batch_size)
        if not ctx.set_input_shape(name, (config.batch_size,) + self.sample_shape):
            raise UserError(f"TensorRT refused input shape {(config.batch_size,) + self.sample_shape} "
                            f"for {name!r}: " + "; ".join(self.logger.messages[-2:]))
        in_dtype = _torch_dtype(trt, engine.get_tensor_dtype(name))
        batches = resident_batches(workload, config.batch_size, config.data_batches,
                                   config.seed, config.data, config.data_dir)
        self.inputs = [torch.from_numpy(x).to(device=dev, dtype=in_dtype) for x, _ in batches]
        self.input_ptrs = [t.data_ptr() for t in self.inputs]
        self.output_buffers: List[torch.Tensor] = []
        for out in (n for n in names if n != name):
            shape = tuple(ctx.get_tensor_shape(out))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {out!r} has an unresolved shape {shape}")
            buf = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(out)), device=dev)
            if not ctx.set_tensor_address(out, buf.data_ptr()):
                raise RuntimeError(f"TensorRT refused the buffer for output {out!r}")
            self.output_buffers.append(buf)
        self.stream = torch.cuda.Stream(dev)
        self.events = CudaEventPool(self.stream)
        torch.cuda.synchronize(dev)  # the copies above ran on the default stream

    # -- the timed interface -----------------------------------------------------------
    def make_timer(self, iterations: int) -> StepTimer:
        return self.events.timer(iterations)

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        set_address, execute = self.context.set_tensor_address, self.context.execute_async_v3
        name, ptrs, k, handle = self.input_name, self.input_ptrs, len(self.input_ptrs), self.stream.cuda_stream
        if timer is None:
            for i in range(iterations):
                set_address(name, ptrs[i % k])
                if not execute(handle):
                    raise RuntimeError("TensorRT execute_async_v3 failed: " + "; ".join(self.logger.messages[-2:]))
            return
        starts, ends, stream = timer.starts, timer.ends, self.stream  # type: ignore[attr-defined]
        for i in range(iterations):
            starts[i].record(stream)
            set_address(name, ptrs[i % k])
            if not execute(handle):
                raise RuntimeError("TensorRT execute_async_v3 failed: " + "; ".join(self.logger.messages[-2:]))
            ends[i].record(stream)

    # -- serving: host batches of any size in the profile, outputs back on the host -----
    def start_serving(self, library: np.ndarray) -> Dict[str, Any]:
        dtype, device_in = self.inputs[0].dtype, self.inputs[0]
        self._library = torch.from_numpy(np.ascontiguousarray(library)).to(dtype).pin_memory()
        self._serve_host_in = torch.empty(device_in.shape, dtype=dtype).pin_memory()
        self._serve_device_in = torch.empty_like(device_in)
        self._serve_host_out = [torch.empty(b.shape, dtype=b.dtype).pin_memory()
                                for b in self.output_buffers]
        self._device_clock = DeviceClock(self.stream)
        return self._device_clock.facts()

    def serve(self, samples: np.ndarray) -> Optional[float]:
        n, ctx = len(samples), self.context
        host_in = self._serve_host_in[:n]
        torch.index_select(self._library, 0, torch.from_numpy(samples), out=host_in)
        with torch.cuda.stream(self.stream):  # both copies on the engine's stream
            self._serve_device_in[:n].copy_(host_in, non_blocking=True)
            if not ctx.set_input_shape(self.input_name, (n,) + self.sample_shape):
                raise RuntimeError(f"TensorRT refused batch {n}: the engine's profile is "
                                   f"[{self.profile.min}, {self.profile.max}]")
            ctx.set_tensor_address(self.input_name, self._serve_device_in.data_ptr())
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed: "
                                   + "; ".join(self.logger.messages[-2:]))
            for host, device in zip(self._serve_host_out, self.output_buffers):
                host[:n].copy_(device[:n], non_blocking=True)  # batch-major: n rows first
        return self._device_clock.stamp()

    def synchronize(self) -> None:
        self.stream.synchronize()

    # -- for parity checks (not timed) ---------------------------------------------------
    def input_batch(self, index: int = 0) -> np.ndarray:
        return self.inputs[index].float().cpu().numpy()

    def outputs(self, index: int = 0) -> np.ndarray:
        """Runs batch `index` once and returns the first output on the host."""
        self.context.set_tensor_address(self.input_name, self.input_ptrs[index])
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return self.output_buffers[0].float().cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Runs `x` through the engine in chunks of its bound batch size (the last one
        padded with zeros, its padding's outputs dropped)."""
        batch, dtype = self.inputs[0].shape[0], self.inputs[0].dtype
        buffer = torch.zeros_like(self.inputs[0])
        out = []
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch]))
            buffer.zero_()
            buffer[:len(chunk)] = chunk.to(device=buffer.device, dtype=dtype)
            torch.cuda.synchronize(buffer.device)  # the copy ran on the default stream
            self.context.set_tensor_address(self.input_name, buffer.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self.stream.synchronize()
            out.append(self.output_buffers[0][:len(chunk)].float().cpu().numpy())
        return np.concatenate(out)

    def close(self) -> None:
        # Context before engine before runtime: each holds the next.
        self.context = None
        self.engine = None
        self.runtime = None
        self.inputs, self.input_ptrs, self.output_buffers = [], [], []
        torch.cuda.empty_cache()
