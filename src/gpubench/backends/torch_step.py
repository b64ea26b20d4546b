"""The timed step for PyTorch: model, optimizer and resident data on one device.
The hot loop is a plain Python loop over prebuilt closures; which closure is chosen
(autocast, GradScaler) is decided once here, never per step."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from gpubench.backends.base import (
    HOST_CLOCK_FACTS, HostTimer, Step, StepConfig, StepTimer,
)
from gpubench.backends.cuda_events import CudaEventPool, CudaEventTimer, DeviceClock
from gpubench.backends.exec_modes import compile_mode
from gpubench.backends.torch_device import open_device
from gpubench.backends.torch_exec import (
    TRAIN_CHECK_VALUES, GraphedStep, buffers_kept, compile_module, dynamo_graphs,
    loss_and_grads, relative_pairs, timed,
)
from gpubench.backends.torch_model import build_module, load_weights
from gpubench.backends.torch_real_data import TorchRealData
from gpubench.backends.torch_parallel import param_digest, wrap_data_parallel
from gpubench.errors import Unsupported
from gpubench.data.sources import resident_batches
from gpubench.models.init_weights import initial_weights
from gpubench.workloads import Workload

EXEC_CHECK_ELEMS = 1 << 22  # outputs an exec mode's check keeps a side
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# GradScaler keeps its API (the way people train in fp16) and its cost, said in run.json.
FP16_TRAIN_SYNC = ("fp16 training uses GradScaler, whose step() reads the inf/NaN check "
                   "with .item(): the host waits for the device after every step (fp32 and "
                   "bf16 steps do not), which slows small models in fp16 beyond what the "
                   "kernels alone would, and biases fp16-vs-bf16 comparisons of them")


def _optimizer(workload: Workload, params) -> torch.optim.Optimizer:
    args = dict(workload.optimizer_args)
    if workload.optimizer == "adam":
        return torch.optim.Adam(params, **args)
    if workload.optimizer == "adamw":  # decay on every parameter, LayerNorm and biases too
        return torch.optim.AdamW(params, **args)
    return torch.optim.SGD(params, **args)


def _loss_fn(workload: Workload) -> Callable:
    F = torch.nn.functional
    if workload.task == "language_model":
        def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            """Cross-entropy over every position: [B, seq, vocab] against [B, seq]."""
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return next_token_loss
    return F.mse_loss if workload.loss == "mse" else F.cross_entropy


def _first_step_imports(workload: Workload) -> None:
    """An optimizer's first step imports torch._dynamo (1-2 s here): a library's
    start-up, not training. One step on a throwaway parameter pays it while preparing,
    so that a time-to-accuracy run's first epoch times training only."""
    dummy = torch.nn.Parameter(torch.zeros(1))
    dummy.grad = torch.zeros(1)
    _optimizer(workload, [dummy]).step()


class TorchStep(TorchRealData, Step):
    """The step for one workload on one device; its real-data part (epochs, evaluation,
    predictions) is TorchRealData's."""

    def __init__(self, workload: Workload, config: StepConfig, device: torch.device) -> None:
        self.config = config
        self.torch_device = device
        self.is_cuda = device.type == "cuda"
        torch.manual_seed(config.seed)
        self.device = open_device(device, config.precision)
        if self.is_cuda:
            self.events = CudaEventPool(torch.cuda.current_stream(device))
            torch.backends.cudnn.benchmark = True
        else:
            # Resident synthetic batches get memorised: after thousands of steps the
            # loss and gradients fall into denormal floats, which x86 CPUs process up to
            # 100x slower, so throughput would sink over a run for no reason a real
            # workload shares. Flushing denormals to zero keeps the step's cost steady.
            torch.set_flush_denormal(True)

        self.model = build_module(workload.layers, workload.input_shape)
        if config.reference_init:
            load_weights(self.model, initial_weights(workload.layers, workload.input_shape,
                                                     config.seed))
        self.model.to(device)
        self.exec_mode = config.exec_mode or "eager"
        # what the timed loop calls: the model itself (or its data-parallel wrapper,
        # torch_parallel.py), or that compiled (torch_exec.py)
        trained = self.model
        self.parallel: Optional[str] = None  # the strategy applied, for run.json
        if config.ranks.ranked and config.mode == "train":
            trained, self.parallel = wrap_data_parallel(self.model, config.ranks, device)
        self.trained = trained  # eager: what a compiled step is checked against
        self.run_model: Callable = (compile_module(trained, self.exec_mode)
                                    if compile_mode(self.exec_mode) else trained)
        # Each rank trains on batches of its own (a data-parallel step's point); the
        # weights start the same everywhere all the same (DDP broadcasts rank 0's).
        batches = resident_batches(workload, config.batch_size, config.data_batches,
                                   config.seed + config.ranks.rank, config.data, config.data_dir)
        self._sets = None  # the real sets (TorchRealData), once an epoch needs them
        self.data: List[Tuple[torch.Tensor, torch.Tensor]] = [
            (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches]
        self.inputs = [x for x, _ in self.data]
        self._last_loss: Optional[torch.Tensor] = None
        self._autocast_dtype = AUTOCAST_DTYPES.get(config.precision)
        fp16_train = config.mode == "train" and self._autocast_dtype is torch.float16
        self.facts = {"step_syncs_host": FP16_TRAIN_SYNC} if fp16_train else {}
        if config.mode == "train":
            self.model.train()
            self._step = self._make_train_step(workload)
        else:
            self.model.eval()
            self._step = None
        # eager outputs beside the exec mode's, compile/capture seconds (not eager)
        self.exec_check: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self.compile_s: Optional[float] = None
        if self.exec_mode != "eager":
            self._prepare_exec(workload)

    # -- building the closures ---------------------------------------------------------
    def _make_train_step(self, workload: Workload) -> Callable:
        model, loss_fn = self.run_model, _loss_fn(workload)
        opt = self.optimizer = _optimizer(workload, self.model.parameters())
        self.loss_fn = loss_fn
        _first_step_imports(workload)
        dtype, dev_type = self._autocast_dtype, self.torch_device.type
        if dtype is None:
            def step(x, y):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss
        elif dtype is torch.float16:
            scaler = torch.amp.GradScaler(dev_type)

            def step(x, y):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev_type, dtype=dtype):
                    loss = loss_fn(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                return loss
        else:
            def step(x, y):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev_type, dtype=dtype):
                    loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss
        return step

    def _prepare_exec(self, workload: Workload) -> None:
        """Compiles or captures now, timed apart from the trials (compile_s), and sets
        the mode's results on the first batch beside eager's on the same weights.
        Training under compile compiles only the graph the trials run (the model's
        forward and backward in grad mode) and checks its loss and gradients; no
        optimizer update runs, so training starts from the weights and optimizer state
        it was built with (time-to-accuracy's reference start)."""
        x, y = self.data[0]
        sync = self.synchronize
        if self.exec_mode == "cuda-graphs":
            self._capture(workload, x, y, sync, self._outputs(self.model, x))
            return
        if self._step is None:
            eager = self._outputs(self.model, x)
            compiled, self.compile_s = timed(lambda: self._outputs(self.run_model, x), sync)
            self.exec_check = (eager.cpu().numpy(), compiled.cpu().numpy())
            return
        params = list(self.model.parameters())

        def one_step(module: Callable) -> List[List[torch.Tensor]]:
            return loss_and_grads(module, self.loss_fn, x, y, params, self._autocast)

        with buffers_kept(self.model):
            eager_values = one_step(self.trained)
            compiled_values, self.compile_s = timed(lambda: one_step(self.run_model), sync)
        self.exec_check = relative_pairs(eager_values, compiled_values, EXEC_CHECK_ELEMS)
        self.facts["exec_check_values"] = TRAIN_CHECK_VALUES

    def _capture(self, workload: Workload, x: torch.Tensor, y: torch.Tensor, sync,
                 eager: torch.Tensor) -> None:
        """CUDA graphs: the step (or the forward) captured once and replayed; the first
        replay checked against `eager` (the forward's outputs before capture)."""
        if not self.is_cuda:
            raise Unsupported("exec mode cuda-graphs needs a CUDA device")
        if self._step is None:  # inference: the forward pass, under inference mode
            def forward(inp):
                with torch.inference_mode(), self._autocast():
                    return self.model(inp)
            graphed, self.compile_s = timed(lambda: GraphedStep(forward, (x,), self.torch_device), sync)
            replayed = graphed(x).detach()[:len(eager)].float()
            self.exec_check = (eager.cpu().numpy(), replayed.cpu().numpy())
            self.run_model = graphed
            return
        if self._autocast_dtype is torch.float16:
            raise Unsupported("exec mode cuda-graphs cannot capture fp16 training: GradScaler "
                              "reads its inf/NaN check on the host every step")
        for group in self.optimizer.param_groups:  # step counters on the device, not the host
            if "capturable" in group:
                group["capturable"] = True
        graphed, self.compile_s = timed(lambda: GraphedStep(self._step, (x, y), self.torch_device), sync)
        with torch.no_grad(), self._autocast():  # the loss the first replay must reproduce
            expected = self.loss_fn(self.model(x), y).float().reshape(1, 1)
        replayed = graphed(x, y).detach().float().reshape(1, 1)
        self.exec_check = (expected.cpu().numpy(), replayed.cpu().numpy())
        self._step = graphed

    def _outputs(self, module: Callable, x: torch.Tensor) -> torch.Tensor:
        """The module's outputs in the grad mode and precision the timed loop runs it
        (of the first samples only where a batch's are many: a language model's)."""
        grad_off = torch.no_grad() if self._step is not None else torch.inference_mode()
        with grad_off, self._autocast():
            out = module(x).detach()
        keep = max(1, EXEC_CHECK_ELEMS // max(1, out[0].numel()))
        return out[:keep].float().clone()

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=self._autocast_dtype)

    def recompiles(self) -> Optional[int]:
        """Graphs dynamo has compiled so far (compile modes): a rise between two reads
        is a recompilation between them. None where nothing compiles."""
        return dynamo_graphs() if compile_mode(self.exec_mode) else None

    # -- the timed interface -----------------------------------------------------------
    def make_timer(self, iterations: int) -> StepTimer:
        return self.events.timer(iterations) if self.is_cuda else HostTimer(iterations)

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        if self._step is not None:
            self._run_train(iterations, timer)
        else:
            with torch.inference_mode():
                if self._autocast_dtype is None:
                    self._run_infer(iterations, timer)
                else:
                    with torch.autocast(self.torch_device.type, dtype=self._autocast_dtype):
                        self._run_infer(iterations, timer)

    def _run_train(self, iterations: int, timer: Optional[StepTimer]) -> None:
        step, data, k = self._step, self.data, len(self.data)
        loss = None
        if timer is None:
            for i in range(iterations):
                x, y = data[i % k]
                loss = step(x, y)
        else:
            loss = self._run_with_timer(iterations, timer, lambda i: step(*data[i % k]))
        self._last_loss = loss

    def _run_infer(self, iterations: int, timer: Optional[StepTimer]) -> None:
        model, inputs, k = self.run_model, self.inputs, len(self.inputs)
        if timer is None:
            for i in range(iterations):
                model(inputs[i % k])
        elif isinstance(timer, HostTimer):
            # Inlined rather than through _run_with_timer: at ~10k small steps a second
            # a call per step would be visible in the throughput.
            times, clock = timer.times_s, time.perf_counter
            for i in range(iterations):
                t0 = clock()
                model(inputs[i % k])
                times[i] = clock() - t0
        else:
            self._run_with_timer(iterations, timer, lambda i: model(inputs[i % k]))

    @staticmethod
    def _run_with_timer(iterations: int, timer: StepTimer, one: Callable):
        out = None
        if isinstance(timer, CudaEventTimer):
            starts, ends, stream = timer.starts, timer.ends, timer.stream
            for i in range(iterations):
                starts[i].record(stream)
                out = one(i)
                ends[i].record(stream)
        else:
            times, clock = timer.times_s, time.perf_counter
            for i in range(iterations):
                t0 = clock()
                out = one(i)
                times[i] = clock() - t0
        return out

    # -- serving: host batches of any size, outputs back on the host ------------------
    def start_serving(self, library: np.ndarray) -> Dict[str, Any]:
        self._library = torch.from_numpy(np.ascontiguousarray(library))
        if not self.is_cuda:  # outputs are in host memory as they are computed
            return dict(HOST_CLOCK_FACTS)
        # pinned host buffers: the copies each way run asynchronously on the stream
        self._library = self._library.pin_memory()
        batch = self.config.batch_size
        self._serve_in = torch.empty((batch,) + tuple(library.shape[1:]),
                                     dtype=self._library.dtype).pin_memory()
        with torch.inference_mode(), self._autocast():
            out = self.run_model(self.inputs[0][:batch])
        self._serve_out = torch.empty(out.shape, dtype=out.dtype).pin_memory()
        self._device_clock = DeviceClock(torch.cuda.current_stream(self.torch_device))
        return self._device_clock.facts()

    def serve(self, samples: np.ndarray) -> Optional[float]:
        idx = torch.from_numpy(samples)
        with torch.inference_mode(), self._autocast():
            if not self.is_cuda:
                self.run_model(self._library.index_select(0, idx))
                return None
            n = len(samples)
            host_in, host_out = self._serve_in[:n], self._serve_out[:n]
            torch.index_select(self._library, 0, idx, out=host_in)
            out = self.run_model(host_in.to(self.torch_device, non_blocking=True))
            host_out.copy_(out[:n], non_blocking=True)  # cuda-graphs: its static output
            return self._device_clock.stamp()  # after the copy back; waits for it

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def loss(self) -> Optional[float]:
        return None if self._last_loss is None else float(self._last_loss.detach())

    def param_digest(self) -> Optional[str]:
        return param_digest(self.model)

    def peak_mem_bytes(self) -> Optional[int]:
        return int(torch.cuda.max_memory_allocated(self.torch_device)) if self.is_cuda else None

    def close(self) -> None:
        self._sets = None
        self.data = []
        self.inputs = []
        self.model = None
        if self.is_cuda:
            torch.cuda.empty_cache()
