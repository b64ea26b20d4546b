"""ONNX models for the inference engines (onnxruntime-*, tensorrt): a workload exported
from its PyTorch module, or a user's file (`--onnx PATH`) checked against the workload.

Exporter: torch.onnx.export(dynamo=False), the TorchScript tracer. torch 2.13's default
(dynamo) exporter needs the extra `onnxscript` package; for these models (Gemm, Conv,
Relu, MaxPool, GlobalAveragePool, Add; for transformers Gather, LayerNormalization,
MatMul, Softmax, Erf, Where with a constant causal mask) tracing gives the same graph
with no extra dependency and in a fraction of the time. Token models (gpt, bert) take
int64 ids [batch, seq] whatever the graph type; their sequence length is fixed (static in
the graph, so no shape arithmetic is left to run), the batch dimension dynamic. Attention is exported as explicit MatMul/Softmax (torch_model.py:
the tracer's scaled_dot_product_attention comes out float32 inside an fp16 graph). Its DeprecationWarning is silenced here; the
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
from typing import Any, Dict, Optional, Union

from gpubench.backends.artifact_cache import ArtifactCache, content_key, sha256_bytes
from gpubench.backends.onnx_graph_check import (
    ONNX_FLOAT_TYPES, OnnxSignature, check_against_workload, check_graph, graph_dtype,
    read_onnx_bytes, read_signature,
)
from gpubench.errors import BackendUnavailable, UserError
from gpubench.workloads import Workload

OPSET = 17  # new enough for every op used here; old enough for TensorRT 8.6+
EXPORTER = "torch.onnx.export(dynamo=False)"
EXPORT_FORMAT = 1  # bump when the export code changes what it writes
TRACE_BATCH = 2  # the example batch traced; the exported batch dimension is dynamic
INPUT_NAME, OUTPUT_NAME = "input", "output"
BATCH_DIM = "batch"


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


def export_facts(workload: Workload, seed: int, dtype: str, trace_batch: int = TRACE_BATCH,
                 reference_init: bool = False) -> Dict[str, Any]:
    """Everything an export depends on: its cache key is the hash of this."""
    init = {"init": "models/init_weights.py"} if reference_init else {}  # old keys unchanged
    return {**init, "format": EXPORT_FORMAT, "workload": workload.name,
            "input_shape": list(workload.input_shape), "num_outputs": workload.num_outputs,
            "layers": repr(workload.layers), "params": workload.params_str, "seed": seed,
            "dtype": dtype, "opset": OPSET, "exporter": EXPORTER, "trace_batch": trace_batch,
            "torch_version": _torch_version()}


def export_workload(workload: Workload, seed: int = 0, dtype: str = "float32",
                    trace_batch: int = TRACE_BATCH, cache: Optional[ArtifactCache] = None,
                    reference_init: bool = False) -> OnnxModel:
    """The workload as an ONNX model: from the cache when it holds this export, else
    exported now and stored (or kept in memory when the cache cannot be written)."""
    if dtype not in ONNX_FLOAT_TYPES.values():
        raise UserError(f"ONNX export dtype must be float32 or float16, got {dtype!r}")
    facts = export_facts(workload, seed, dtype, trace_batch, reference_init)
    key = content_key(facts)
    cache = cache or ArtifactCache("onnx", ".onnx")
    input_dtype = "int64" if workload.input_dtype == "int64" else dtype  # token ids stay ids
    signature = OnnxSignature(INPUT_NAME, input_dtype, (None,) + tuple(workload.input_shape),
                              (OUTPUT_NAME,), (None,) + tuple(workload.output_shape),
                              output_dtype=dtype)
    hit = cache.lookup(key)
    if hit is not None:
        path, meta = hit
        return OnnxModel(signature, meta["sha256"], "export", "hit", path=path, key=key)
    t0 = time.perf_counter()
    data = _export_bytes(workload, seed, dtype, trace_batch, reference_init)
    export_s = time.perf_counter() - t0
    path, note = cache.store(key, data, {**facts, "export_s": export_s})
    return OnnxModel(signature, sha256_bytes(data), "export", note, path=path,
                     data=None if path else data, export_s=export_s, key=key)


def _export_bytes(workload: Workload, seed: int, dtype: str, trace_batch: int,
                  reference_init: bool = False) -> bytes:
    import torch

    from gpubench.backends.torch_model import build_module
    from gpubench.backends.torch_model import load_weights
    from gpubench.models.init_weights import initial_weights

    torch_dtype = torch.float16 if dtype == "float16" else torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # exactly as TorchStep, so the weights are the same
        module = build_module(workload.layers, workload.input_shape)
        if reference_init:  # the numpy weights every backend can load (accuracy gate)
            load_weights(module, initial_weights(workload.layers, workload.input_shape, seed))
        module = module.eval().to(torch_dtype)
    input_dtype = torch.int64 if workload.input_dtype == "int64" else torch_dtype
    example = torch.zeros((trace_batch,) + tuple(workload.input_shape), dtype=input_dtype)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, export_params=True, opset_version=OPSET,
            do_constant_folding=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}})
    return buffer.getvalue()


# -- user-supplied files (checked in onnx_graph_check) ------------------------------------
def load_onnx_file(path: Union[str, Path], workload: Workload, precision: Optional[str] = None,
                   batch_size: Optional[int] = None) -> OnnxModel:
    """A user's file, checked to be the workload's model (and, given a precision and a
    batch size, runnable at them: the same check as preflight's)."""
    path = Path(path)
    data, digest = read_onnx_bytes(path)
    sig = read_signature(data, str(path))
    if precision is None or batch_size is None:
        check_against_workload(sig, workload, str(path))
    else:
        check_graph(sig, workload, precision, batch_size, str(path))
    return OnnxModel(sig, digest, "file", "user file", path=path, data=data)


def onnx_model_for(workload: Workload, precision: str, batch_size: int, seed: int,
                   onnx_path: Optional[str] = None, cache: Optional[ArtifactCache] = None,
                   reference_init: bool = False) -> OnnxModel:
    """The model a step runs (onnxruntime-*, tensorrt): the user's file, checked as
    preflight checks it, or the workload's export in the graph type `precision` needs
    (from models/init_weights.py's weights with `reference_init`)."""
    if onnx_path is None:
        return export_workload(workload, seed, graph_dtype(precision), cache=cache,
                               reference_init=reference_init)
    return load_onnx_file(onnx_path, workload, precision, batch_size)
