"""TensorRT engines: optimisation-profile ranges, engine cache keys, and the build from an
ONNX model with TensorRT's Python API. Everything above `build_serialized_engine` is
plain Python, tested on machines without TensorRT; the `trt` module is passed in.

Precision lives in the graph: networks are created STRONGLY_TYPED and an fp16 run builds
from an fp16 ONNX export, so the engine is fp16 because its tensors are. (The older route,
BuilderFlag.FP16 on an fp32 graph, was deprecated in TensorRT 10.12 and removed in 11.)
fp32 clears BuilderFlag.TF32, which TensorRT sets by default: fp32 then means fp32.
int8 is left out: an honest int8 engine needs calibration data or Q/DQ nodes from
quantisation-aware training, and an uncalibrated one would time a model that computes
nonsense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from gpubench.backends.artifact_cache import content_key
from gpubench.errors import UserError

ENGINE_FORMAT = 1  # bump when the build code changes what it makes
ENGINE_PRECISIONS = ("fp32", "tf32", "fp16")


@dataclass(frozen=True)
class ProfileRange:
    """The batch sizes an engine accepts: [min, max], tuned for opt."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"profile needs 1 <= min <= opt <= max, got {self}")

    def covers(self, batch_size: int) -> bool:
        return self.min <= batch_size <= self.max

    def as_list(self) -> List[int]:
        return [self.min, self.opt, self.max]


def profile_for(batch_sizes: Sequence[int]) -> ProfileRange:
    """The tightest profile covering `batch_sizes`, tuned for the largest (the one that
    matters for throughput). One batch size gives a static-shape engine, the fastest."""
    sizes = [int(b) for b in batch_sizes]
    if not sizes or min(sizes) < 1:
        raise UserError(f"an engine profile needs positive batch sizes, got {list(batch_sizes)}")
    return ProfileRange(min(sizes), max(sizes), max(sizes))


def check_batch(profile: ProfileRange, batch_size: int) -> None:
    """Refuses a batch size the engine was not built for (TensorRT would reject the
    shape; we say why before it does)."""
    if not profile.covers(batch_size):
        raise UserError(f"batch size {batch_size} is outside the TensorRT engine's optimisation "
                        f"profile [{profile.min}, {profile.max}]; build an engine for it")


def engine_facts(onnx_sha256: str, tensorrt_version: str, gpu_name: str,
                 capability: Tuple[int, int], precision: str, profile: ProfileRange) -> Dict[str, Any]:
    """What an engine depends on; its cache key is the hash of this. An engine is
    specific to the TensorRT version and the GPU model it was built on."""
    return {"format": ENGINE_FORMAT, "onnx_sha256": onnx_sha256,
            "tensorrt_version": tensorrt_version, "gpu_name": gpu_name,
            "compute_capability": f"{capability[0]}.{capability[1]}", "precision": precision,
            "profile": profile.as_list(), "strongly_typed": True}


def engine_key(*args: Any, **kwargs: Any) -> str:
    return content_key(engine_facts(*args, **kwargs))


# -- TensorRT itself (needs the `tensorrt` module) ----------------------------------------
def make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps warnings and errors (for error messages and run.json)
    instead of printing them: nothing below the CLI prints."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: List[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.messages.append(f"{getattr(severity, 'name', severity)}: {msg}")

    return CollectingLogger()


class EngineBuildError(RuntimeError):
    """TensorRT refused the model or could not build an engine."""


def build_serialized_engine(trt: Any, logger: Any, onnx_bytes: bytes, input_name: str,
                            sample_shape: Tuple[int, ...], precision: str,
                            profile: ProfileRange) -> bytes:
    """Parses the ONNX model and builds a serialized engine for `profile`."""
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser refused the model: {errors}")
    config = builder.create_builder_config()
    if precision == "tf32":
        config.set_flag(trt.BuilderFlag.TF32)
    else:  # fp32, and fp16 graphs (whose float32 parts, if any, stay exact)
        config.clear_flag(trt.BuilderFlag.TF32)
    opt = builder.create_optimization_profile()
    opt.set_shape(input_name, (profile.min,) + tuple(sample_shape),
                  (profile.opt,) + tuple(sample_shape), (profile.max,) + tuple(sample_shape))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        tail = "; ".join(logger.messages[-3:]) or "no message from TensorRT"
        raise EngineBuildError(f"TensorRT could not build the engine: {tail}")
    return bytes(serialized)


def engine_profile(engine: Any, input_name: str) -> ProfileRange:
    """The batch range of a deserialized engine's first optimisation profile."""
    low, best, high = engine.get_tensor_profile_shape(input_name, 0)
    return ProfileRange(int(low[0]), int(best[0]), int(high[0]))
