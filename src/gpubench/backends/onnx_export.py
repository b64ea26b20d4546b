"""ONNX models for the inference engines (onnxruntime-*, tensorrt): a workload exported
from its PyTorch module, or a user's file (`--onnx PATH`) checked against the workload.

Exporter: torch.onnx.export(dynamo=False), the TorchScript tracer. torch 2.13's default
(dynamo) exporter needs the extra `onnxscript` package; for these models (Gemm, Conv,
Relu, MaxPool, GlobalAveragePool, Add) tracing gives the same graph with no extra
dependency and in a fraction of the time. Its DeprecationWarning is silenced here; the
exporter's name is part of the cache key, so switching later re-exports.

The weights are torch's default initialisation right after torch.manual_seed(seed), as
in TorchStep, so an export and a torch-* run of the same seed hold the same weights
(BatchNorm is folded into the convolutions in eval mode: equal up to rounding).
Exports are cached by a content hash (artifact_cache) and never depend on global state:
the RNG is forked around the build."""

from __future__ import annotations

import importlib.util
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from gpubench.backends.artifact_cache import ArtifactCache, content_key, sha256_bytes
from gpubench.errors import BackendUnavailable, UserError
from gpubench.workloads import Workload

OPSET = 17  # new enough for every op used here; old enough for TensorRT 8.6+
EXPORTER = "torch.onnx.export(dynamo=False)"
EXPORT_FORMAT = 1  # bump when the export code changes what it writes
TRACE_BATCH = 2  # the example batch traced; the exported batch dimension is dynamic
INPUT_NAME, OUTPUT_NAME = "input", "output"
BATCH_DIM = "batch"
# The graph's float type for each --precision: fp16 is an fp16 graph (weights and
# activations), so an engine runs fp16 kernels because the model is fp16, not by a hint.
GRAPH_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16"}
_ONNX_FLOAT_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT, FLOAT16

Dim = Optional[int]  # None: symbolic (dynamic)


@dataclass(frozen=True)
class OnnxSignature:
    input_name: str
    input_dtype: str  # "float32" | "float16"
    input_dims: Tuple[Dim, ...]  # batch first
    output_names: Tuple[str, ...]

    @property
    def static_batch(self) -> Optional[int]:
        return self.input_dims[0]


@dataclass
class OnnxModel:
    """An ONNX model ready for a runtime: a file (cached or the user's) or, when it could
    not be cached, its bytes in memory."""

    signature: OnnxSignature
    sha256: str
    source: str  # "export" | "file"
    cache: str  # "hit" | "stored" | "not cached: <why>" | "user file"
    path: Optional[Path] = None
    data: Optional[bytes] = field(default=None, repr=False)
    export_s: Optional[float] = None
    key: Optional[str] = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def ort_source(self) -> Union[str, bytes]:
        """What onnxruntime.InferenceSession takes: a path when there is one."""
        return str(self.path) if self.path is not None else self.read_bytes()

    def facts(self) -> Dict[str, Any]:
        """For run.json's environment."""
        return {"onnx_source": self.source, "onnx_path": str(self.path) if self.path else None,
                "onnx_sha256": self.sha256, "onnx_cache": self.cache,
                "onnx_export_s": self.export_s, "onnx_opset": OPSET if self.source == "export" else None,
                "onnx_exporter": EXPORTER if self.source == "export" else None,
                "onnx_input_dtype": self.signature.input_dtype}


def graph_dtype(precision: str) -> str:
    try:
        return GRAPH_DTYPES[precision]
    except KeyError:
        raise UserError(f"no ONNX graph type for precision {precision} "
                        f"(exports are {', '.join(sorted(set(GRAPH_DTYPES)))})") from None


def _torch_version() -> str:
    """torch's version, without importing it; refuses when the exporter cannot run."""
    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailable(
            "exporting a workload to ONNX needs torch (pip install 'gpubench[torch]'), "
            "or give a ready ONNX file with --onnx PATH")
    if importlib.util.find_spec("onnx") is None:  # torch's exporter builds the file with it
        raise BackendUnavailable("exporting a workload to ONNX needs the onnx package "
                                 "(pip install 'gpubench[onnx]')")
    from importlib.metadata import version
    return version("torch")


def export_facts(workload: Workload, seed: int, dtype: str, trace_batch: int = TRACE_BATCH) -> Dict[str, Any]:
    """Everything an export depends on: its cache key is the hash of this."""
    return {"format": EXPORT_FORMAT, "workload": workload.name,
            "input_shape": list(workload.input_shape), "num_outputs": workload.num_outputs,
            "layers": repr(workload.layers), "params": workload.params_str, "seed": seed,
            "dtype": dtype, "opset": OPSET, "exporter": EXPORTER, "trace_batch": trace_batch,
            "torch_version": _torch_version()}


def export_workload(workload: Workload, seed: int = 0, dtype: str = "float32",
                    trace_batch: int = TRACE_BATCH, cache: Optional[ArtifactCache] = None) -> OnnxModel:
    """The workload as an ONNX model: from the cache when it holds this export, else
    exported now and stored (or kept in memory when the cache cannot be written)."""
    if dtype not in _ONNX_FLOAT_TYPES.values():
        raise UserError(f"ONNX export dtype must be float32 or float16, got {dtype!r}")
    facts = export_facts(workload, seed, dtype, trace_batch)
    key = content_key(facts)
    cache = cache or ArtifactCache("onnx", ".onnx")
    signature = OnnxSignature(INPUT_NAME, dtype, (None,) + tuple(workload.input_shape), (OUTPUT_NAME,))
    hit = cache.lookup(key)
    if hit is not None:
        path, meta = hit
        return OnnxModel(signature, meta["sha256"], "export", "hit", path=path, key=key)
    t0 = time.perf_counter()
    data = _export_bytes(workload, seed, dtype, trace_batch)
    export_s = time.perf_counter() - t0
    path, note = cache.store(key, data, {**facts, "export_s": export_s})
    return OnnxModel(signature, sha256_bytes(data), "export", note, path=path,
                     data=None if path else data, export_s=export_s, key=key)


def _export_bytes(workload: Workload, seed: int, dtype: str, trace_batch: int) -> bytes:
    import torch

    from gpubench.backends.torch_model import build_module

    torch_dtype = torch.float16 if dtype == "float16" else torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # exactly as TorchStep, so the weights are the same
        module = build_module(workload.layers, workload.input_shape).eval().to(torch_dtype)
    example = torch.zeros((trace_batch,) + tuple(workload.input_shape), dtype=torch_dtype)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, export_params=True, opset_version=OPSET,
            do_constant_folding=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}})
    return buffer.getvalue()


# -- user-supplied files ------------------------------------------------------------------
def _dims(value_info: Any) -> Tuple[Dim, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in shape.dim)


def read_signature(data: bytes, label: str) -> OnnxSignature:
    """Parses and checks an ONNX file; UserError (one line) when it is not a usable,
    self-contained single-input float model."""
    if importlib.util.find_spec("onnx") is None:
        raise BackendUnavailable("reading an ONNX file needs the onnx package (pip install 'gpubench[onnx]')")
    import onnx

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, ...: the file is not ONNX
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{label} is not a valid ONNX model ({type(exc).__name__}: {first})") from None
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise UserError(f"{label} keeps its weights in external data files; gpubench needs a "
                        "self-contained ONNX file (weights inside)")
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UserError(f"{label} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                        "gpubench feeds models with exactly one input")
    (inp,) = inputs
    dtype = _ONNX_FLOAT_TYPES.get(inp.type.tensor_type.elem_type)
    if dtype is None:
        raise UserError(f"{label}: input {inp.name!r} is not float32 or float16 "
                        f"(ONNX element type {inp.type.tensor_type.elem_type})")
    if not graph.output:
        raise UserError(f"{label} has no outputs")
    return OnnxSignature(inp.name, dtype, _dims(inp), tuple(o.name for o in graph.output))


def check_against_workload(sig: OnnxSignature, workload: Workload, label: str) -> None:
    """A file made for another model (other input shape) is refused, not run."""
    want = tuple(workload.input_shape)
    dims = sig.input_dims
    text = "x".join("?" if d is None else str(d) for d in dims)
    if len(dims) != len(want) + 1 or any(d is not None and d != w for d, w in zip(dims[1:], want)):
        raise UserError(f"{label}: input {sig.input_name!r} has shape {text}, but workload "
                        f"{workload.name} feeds batch x {'x'.join(map(str, want))} "
                        "(an ONNX file for another model?)")


def load_onnx_file(path: Union[str, Path], workload: Workload) -> OnnxModel:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read ONNX file {path}: {exc.strerror or exc}") from None
    sig = read_signature(data, str(path))
    check_against_workload(sig, workload, str(path))
    return OnnxModel(sig, sha256_bytes(data), "file", "user file", path=path, data=data)


def onnx_model_for(workload: Workload, precision: str, batch_size: int, seed: int,
                   onnx_path: Optional[str] = None, cache: Optional[ArtifactCache] = None) -> OnnxModel:
    """The model a step runs: the user's file (checked) or the workload's export in the
    graph type `precision` needs."""
    dtype = graph_dtype(precision)
    if onnx_path is None:
        return export_workload(workload, seed, dtype, cache=cache)
    model = load_onnx_file(onnx_path, workload)
    sig = model.signature
    if sig.input_dtype != dtype:
        raise UserError(f"{onnx_path} is a {sig.input_dtype} model; --precision {precision} needs "
                        f"a {dtype} one (the graph's type is the precision it runs at)")
    if sig.static_batch is not None and sig.static_batch != batch_size:
        raise UserError(f"{onnx_path} has a fixed batch size of {sig.static_batch}; "
                        f"asked for --batch-size {batch_size}")
    return model

