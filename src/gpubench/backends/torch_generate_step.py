"""The torch step of --mode generate: the workload's decoder (backends/torch_model.py,
the same modules and weights as its infer step) in the run's precision, and the
generation engines built over it (torch_generate.py), each checked against the uncached
model before it is handed out (torch_generate_check.py).

Half precisions cast the weights (and so the KV cache) to fp16/bf16, as a served model
is held, rather than autocasting fp32 weights every step: decode reads the weights at
every token, and their bytes are what bounds it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from gpubench.backends.base import HostTimer, Step, StepConfig, StepTimer
from gpubench.backends.torch_device import open_device
from gpubench.backends.torch_generate import TorchGenerationEngine
from gpubench.backends.torch_generate_check import TF32_TIE_REL, TIE_REL, check_generation
from gpubench.backends.torch_model import build_module, load_weights
from gpubench.errors import Unsupported
from gpubench.models.init_weights import initial_weights
from gpubench.workloads import Workload

WEIGHT_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
                 "bf16": torch.bfloat16}


class TorchGenerateStep(Step):
    def __init__(self, workload: Workload, config: StepConfig, device: torch.device) -> None:
        self.config, self.torch_device = config, device
        self.is_cuda = device.type == "cuda"
        self.exec_mode = config.exec_mode or "eager"
        if self.exec_mode == "cuda-graphs" and not self.is_cuda:
            raise Unsupported("exec mode cuda-graphs needs a CUDA device")
        torch.manual_seed(config.seed)
        self.device = open_device(device, config.precision)
        self.vocab = int(workload.num_outputs)
        self.model = build_module(workload.layers, workload.input_shape)
        if config.reference_init:
            load_weights(self.model, initial_weights(workload.layers, workload.input_shape,
                                                     config.seed))
        self.dtype = WEIGHT_DTYPES[config.precision]
        self.model.to(device=device, dtype=self.dtype).eval()
        self.tie_rel = TF32_TIE_REL if config.precision == "tf32" else TIE_REL[self.dtype]
        self.exec_check = None  # the engine's own check replaces the exec check
        self.compile_s: Optional[float] = None
        self.facts: Dict[str, Any] = {}  # the backend's run facts (torch_backend reads them)

    def generation_engine(self, max_batch: int, max_len: int) -> TorchGenerationEngine:
        """An engine of max_batch slots x max_len positions over the step's weights,
        its decode compiled or captured per the exec mode, checked against the uncached
        model (GenerationMismatch where a token differs); its cache starts empty."""
        engine = TorchGenerationEngine(self.model, max_batch, max_len, self.torch_device,
                                       self.exec_mode)
        self.compile_s = engine.compile_s
        engine.check = check_generation(engine, self.model, self.vocab, self.tie_rel,
                                        self.config.seed)
        return engine

    # -- the Step interface: generate runs through its engines -------------------------
    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        raise Unsupported("a generate step runs through its generation engine")

    def make_timer(self, iterations: int) -> StepTimer:
        return HostTimer(iterations)

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.torch_device)

    def peak_mem_bytes(self) -> Optional[int]:
        return int(torch.cuda.max_memory_allocated(self.torch_device)) if self.is_cuda else None

    def recompiles(self) -> Optional[int]:
        from gpubench.backends.exec_modes import compile_mode
        if not compile_mode(self.exec_mode):
            return None
        from gpubench.backends.torch_exec import dynamo_graphs
        return dynamo_graphs()

    def close(self) -> None:
        self.model = None
        if self.is_cuda:
            torch.cuda.empty_cache()
