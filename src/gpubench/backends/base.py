"""The backend interface. A backend is one framework on one kind of device; it says
whether it can run here (cheaply, without importing its framework), and prepares a
`Step`: model, optimizer and data already on the device, ready to be timed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Sequence, Tuple

import numpy as np

from gpubench.ranks import SINGLE_RANK, RankContext
from gpubench.workloads import Workload

MODES = ("train", "infer", "generate")
# The modes of a backend that declares none: generate needs a decode step (a
# GenerationEngine: measure/generation/engine.py), which only some backends have.
TRAIN_INFER = ("train", "infer")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
# What a prepared step can do, named so that a scenario can say what it needs and
# preflight can refuse a backend that lacks it: `run` = Step.run(iterations, timer);
# `train_epoch` and `evaluate` = an epoch over the real training set and the test
# accuracy (Step.train_epoch, Step.evaluate); `predict` = outputs for given inputs
# (Step.predict, the accuracy gate).
# `data_parallel` = the step honours StepConfig.ranks (one replica or shard of the
# model per rank, gradients reduced across them): preflight refuses a run of several
# ranks on a backend whose steps would only run side by side. `collective` = it runs
# collective workloads (workloads/collectives.py: set_message_bytes, then run).
# `generate` = Step.generation_engine(max_batch, max_len): prefill and greedy decode over
# a static KV cache (measure/generation/engine.py; the steps of --mode generate).
# `serve` = batches of any size up to the batch size from a host sample library, outputs
# back in host memory (Step.start_serving, Step.serve: the serving scenarios).
STEP_CAPABILITIES = ("run", "train_epoch", "evaluate", "predict", "data_parallel",
                     "collective", "serve", "generate")
# What inference steps that serve can do (every inference backend's).
SERVING_CAPABILITIES = frozenset({"run", "predict", "serve"})
# start_serving's answer for steps without device events: the host's clock after serve()
# returned, which it does once the outputs are in host memory (a synchronisation).
HOST_CLOCK_FACTS = {"latency_clock": "host_after_sync"}
# What training steps of the framework backends (torch, TensorFlow) can do.
TRAINING_CAPABILITIES = frozenset({"run", "train_epoch", "evaluate"})


@dataclass(frozen=True)
class StepConfig:
    mode: str
    precision: str
    batch_size: int
    device_index: int = 0
    threads: Optional[int] = None  # intra-op CPU threads; None = the framework's default
    seed: int = 0
    data_batches: int = 4  # distinct batches cycled through, all resident on the device
    onnx_path: Optional[str] = None  # a user's ONNX file to run (backends with accepts_onnx)
    exec_mode: Optional[str] = None  # one of Backend.exec_modes; None = the backend's default
    data: str = "synthetic"  # where batches come from (data/sources.py): synthetic | mnist
    data_dir: Optional[str] = None  # the folder of a real set (None: the cache)
    # Start from models/init_weights.py's numpy weights (the same on every backend)
    # instead of the framework's own initialisation under the seed.
    reference_init: bool = False
    # The rank this step runs as (gpubench/ranks.py): with a strategy, a torch step
    # wraps its model (DistributedDataParallel) and draws its own data for its rank.
    ranks: RankContext = SINGLE_RANK
    # Serving: batches of every size from 1 to batch_size (the server and offline
    # scenarios), where a backend builds for one shape (a TensorRT profile) otherwise.
    variable_batch: bool = False


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cpu" | "cuda"
    index: Optional[int]  # None on the CPU
    name: str
    uuid: Optional[str] = None


class StepTimer(ABC):
    """Per-step latencies of one trial. Allocated before the trial's clock starts (CUDA
    events, arrays) so that allocating it is not timed; read after synchronising."""

    @abstractmethod
    def latencies_s(self) -> np.ndarray: ...


class HostTimer(StepTimer):
    """Per-step latency from the host's clock, for steps that are synchronous (the CPU)
    or have no device events. The backend's loop stores into `times_s[i]`."""

    def __init__(self, iterations: int) -> None:
        self.times_s = [0.0] * iterations  # a list: cheaper to store into than an array

    def latencies_s(self) -> np.ndarray:
        return np.asarray(self.times_s)


class Step(ABC):
    """One prepared (workload, mode, precision, batch size) on a device."""

    device: DeviceInfo
    # True when timing one step means waiting for the device after it (no device
    # events to record instead): the protocol then times latency in a separate pass,
    # so that the throughput trial keeps steps in flight.
    latency_timing_syncs: bool = False
    # One-line warnings about how this step runs (ONNX Runtime nodes left on the CPU):
    # run.json keeps them and the CLI repeats them.
    warnings: Sequence[str] = ()

    @abstractmethod
    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        """Runs `iterations` steps without synchronising the device at the end; with a
        timer, records each step's latency into it."""

    @abstractmethod
    def make_timer(self, iterations: int) -> StepTimer: ...

    @abstractmethod
    def synchronize(self) -> None:
        """Waits until all queued device work has finished."""

    def loss(self) -> Optional[float]:
        """The last training step's loss (synchronises); None in inference."""
        return None

    # -- real data (StepConfig.data other than synthetic) ------------------------------
    def train_epoch(self, epoch: int) -> Tuple[float, int]:
        """One pass over the real training set, shuffled on the host for `epoch`
        (data/sources.epoch_order), batch by batch moved to the device as a training
        loop does (the last batch may be short); returns the epoch's mean training loss
        and the samples it trained on, the device synchronised."""
        raise NotImplementedError(f"{type(self).__name__} cannot train epochs")

    def evaluate(self) -> float:
        """Top-1 accuracy on the real test set (the model in eval mode, not timed with
        training); synchronises."""
        raise NotImplementedError(f"{type(self).__name__} cannot evaluate")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's float32 outputs [N, classes] for a host batch in the description's
        layout (N, C, H, W), at the step's precision; synchronises."""
        raise NotImplementedError(f"{type(self).__name__} cannot predict")

    # -- serving (the serving scenarios: measure/scenarios/serving/) ----------------------------
    def start_serving(self, library: np.ndarray) -> Dict[str, Any]:
        """Keeps `library` (host samples in the description's layout, N first) for
        serve(), in the step's own layout and input dtype, and sets up what serve()
        needs, before anything is timed. Returns how serve() times completions, for
        run.json: {"latency_clock": "device_events" | "host_after_sync", ...}."""
        raise NotImplementedError(f"{type(self).__name__} cannot serve")

    def serve(self, samples: np.ndarray) -> Optional[float]:
        """One batch of a server: gathers the library's `samples` (indices, 1 to the
        step's batch size of them) into a host batch, runs the model on it (the step's
        precision and execution mode), and copies its outputs back to host memory,
        returning once they are there. Returns when the outputs were complete on the
        device's clock, mapped onto time.perf_counter, where the step has device events;
        None where it has not (the caller reads the host clock after the return)."""
        raise NotImplementedError(f"{type(self).__name__} cannot serve")

    def param_digest(self) -> Optional[str]:
        """A hash of the model's parameters (data-parallel runs record it per rank at
        the start and the end: equal on every rank after training says the gradients
        were really reduced). None where the step cannot tell."""
        return None

    def peak_mem_bytes(self) -> Optional[int]:
        """Peak device memory allocated since prepare; None where not measured."""
        return None

    def recompiles(self) -> Optional[int]:
        """Graphs a compiler has built so far (torch.compile's dynamo): a rise between two
        reads is a recompilation between them. None where nothing compiles."""
        return None

    def close(self) -> None:
        """Releases device memory held by the step."""


class Backend(ABC):
    name: str
    framework: str  # the import name of the framework: "torch", "tensorflow", ...
    device_kind: str  # "cpu" | "cuda"
    accepts_onnx: bool = False  # runs a user's ONNX file (StepConfig.onnx_path)
    # Execution modes this backend runs (StepConfig.exec_mode), its default first:
    # `eager` is the framework's ordinary execution, no whole-step compiler.
    exec_modes: Tuple[str, ...] = ("eager",)
    # The modes (MODES) its steps run; one running infer only makes it a run's default.
    modes: Tuple[str, ...] = TRAIN_INFER

    def capabilities(self, mode: str) -> FrozenSet[str]:
        """What its steps can do in `mode` (STEP_CAPABILITIES); a scenario needing
        more is refused before anything is prepared."""
        return frozenset({"run"})

    @abstractmethod
    def is_available(self) -> Tuple[bool, str]:
        """(available, reason if not). Cheap: must not import the framework."""

    def check_config(self, mode: str, precision: str) -> None:
        """Raises Unsupported for a mode or precision this backend cannot run at all.
        Checks that need the device (compute capability) happen in prepare()."""

    @abstractmethod
    def prepare(self, workload: Workload, config: StepConfig) -> Step:
        """Builds the model, optimizer and data on the device. Raises
        BackendUnavailable or Unsupported with the reason."""

    # Package distributions that may provide the framework, in the order to look.
    distributions: Tuple[str, ...] = ()

    def build_facts(self) -> Dict[str, Any]:
        """The framework and its version from package metadata, without importing it
        (`gpubench env` without --frameworks); backends add their build (CUDA) cheaply."""
        from gpubench.machine import package_version
        return {"framework": self.framework,
                "framework_version": package_version(*(self.distributions or (self.framework,)))}

    @abstractmethod
    def environment(self) -> Dict[str, Any]:
        """Framework facts for run.json and the result rows (`framework_version`,
        `cuda_version`, `cudnn_version`, ...). May import the framework."""
