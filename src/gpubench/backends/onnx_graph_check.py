"""A user's ONNX file (`--onnx PATH`): read it, hash it, and check that it is the
workload's model before anything is measured.

gpubench reports FLOPs, bytes and MFU from the workload's model description, so a
graph of another model would be timed honestly and reported as fiction. One check,
`check_graph`, is shared by preflight (no framework: only the `onnx` package) and by
every backend that runs ONNX files (onnxruntime-*, tensorrt, through
onnx_export.onnx_model_for). It refuses, in one line naming the file:
- an input whose shape is not batch x the workload's input shape, or a first output
  that is not batch x the workload's outputs. A symbolic (dynamic) dimension matches
  anything; a fixed batch dimension must be the --batch-size asked for;
- an input of the wrong kind: float for a float workload, integer token ids (int64 or
  int32) for a token model (gpt, bert);
- a graph type (float32/float16) that is not the one --precision runs: the input's type,
  or for a token model (whose input is ids) the first output's;
- a graph whose weights are not the workload's: shapes alone cannot tell the MNIST MLP
  from LeNet-5 (both 1x28x28 -> 10), their weight counts can. Weights are the elements
  of the initializers and Constant tensors, int64 (shapes, indices) and bool left out;
  WEIGHT_TOLERANCE allows what exporters legitimately change (BatchNorm folded into
  convolutions, or kept with its running statistics; quantisation scales).

The file's SHA-256 is part of the run's identity (result column `onnx_sha256`), so a
user's graph is never compared as if it were the workload's own export."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from gpubench.errors import BackendUnavailable, UserError
from gpubench.workloads import Workload

# The graph's float type for each --precision: fp16 is an fp16 graph (weights and
# activations), so an engine runs fp16 kernels because the model is fp16, not by a hint.
GRAPH_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16"}
ONNX_FLOAT_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT, FLOAT16
ONNX_INDEX_TYPES = {7: "int64", 6: "int32"}  # token ids: onnx.TensorProto.INT64, INT32
_NOT_WEIGHTS = (0, 7, 8, 9)  # UNDEFINED, INT64 (shapes, indices), STRING, BOOL
# |graph weights - workload parameters| allowed, relative to the parameters. ResNet-50
# with BatchNorm folded (the export) or kept with running statistics differs by 0.2-0.4%;
# per-channel quantisation scales add < 1% on LeNet-5. The MLP against LeNet-5 is 65%.
WEIGHT_TOLERANCE = 0.02
_CHUNK_BYTES = 1 << 20

Dim = Optional[int]  # None: symbolic (dynamic) or unknown


@dataclass(frozen=True)
class OnnxSignature:
    input_name: str
    input_dtype: str  # "float32" | "float16"; token ids: "int64" | "int32"
    input_dims: Tuple[Dim, ...]  # batch first
    output_names: Tuple[str, ...]
    output_dims: Optional[Tuple[Dim, ...]] = None  # the first output's; None: not read
    weight_count: Optional[int] = None  # None: not counted (the workload's own export)
    output_dtype: Optional[str] = None  # the first output's float type; None: not read

    @property
    def graph_type(self) -> Optional[str]:
        """The graph's float type: its input's, or for token ids its first output's."""
        if self.input_dtype in ONNX_FLOAT_TYPES.values():
            return self.input_dtype
        return self.output_dtype

    @property
    def static_batch(self) -> Optional[int]:
        return self.input_dims[0]


def graph_dtype(precision: str) -> str:
    try:
        return GRAPH_DTYPES[precision]
    except KeyError:
        raise UserError(f"no ONNX graph type for precision {precision} "
                        f"(exports are {', '.join(sorted(set(GRAPH_DTYPES)))})") from None


def shape_text(dims: Tuple[Dim, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)


# -- the file's hash ---------------------------------------------------------------------
# One hash per file version and process: preflight reads the file, then every identity
# (the run's rows, a status row) asks again. Keyed by what changes when the file does.
_HASHES: Dict[Tuple[Any, ...], str] = {}


def _unreadable(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot read ONNX file {path}: {exc.strerror or exc}")


def _file_key(path: Path) -> Tuple[Any, ...]:
    st = path.stat()
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_onnx_bytes(path: Union[str, Path]) -> Tuple[bytes, str]:
    """The file's bytes and SHA-256 hex (remembered for file_sha256); UserError when it
    cannot be read."""
    path = Path(path)
    try:
        key = _file_key(path)
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    digest = hashlib.sha256(data).hexdigest()
    _HASHES[key] = digest
    return data, digest


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 hex of a user's ONNX file, hashed once per version of the file."""
    path = Path(path)
    try:
        key = _file_key(path)
        if key not in _HASHES:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
                    digest.update(chunk)
            _HASHES[key] = digest.hexdigest()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return _HASHES[key]


# -- reading the graph -------------------------------------------------------------------
def _import_onnx() -> Any:
    if importlib.util.find_spec("onnx") is None:
        raise BackendUnavailable("reading an ONNX file needs the onnx package (pip install 'gpubench[onnx]')")
    import onnx

    return onnx


def _dims(value_info: Any) -> Tuple[Dim, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in shape.dim)


def _first_output_dims(onnx: Any, model: Any) -> Tuple[Dim, ...]:
    """The first output's dimensions; shape inference fills in dims the file leaves
    unnamed (beyond the batch), where it can."""
    dims = _dims(model.graph.output[0])
    if all(d is not None for d in dims[1:]):
        return dims
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.output[0]
    except Exception:  # inference is best effort: unknown dims then match anything
        return dims
    found = _dims(inferred)
    return found if len(found) == len(dims) else dims


def weight_count(onnx: Any, graph: Any) -> int:
    """Elements of the graph's initializers and Constant tensors (not int64/bool)."""
    def numel(tensor: Any) -> int:
        n = 1
        for d in tensor.dims:
            n *= int(d)
        return n if tensor.data_type not in _NOT_WEIGHTS else 0

    total = sum(numel(t) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            total += sum(numel(a.t) for a in node.attribute
                         if a.name == "value" and a.type == onnx.AttributeProto.TENSOR)
    return total


def read_signature(data: bytes, label: str) -> OnnxSignature:
    """Parses and checks an ONNX file; UserError (one line) when it is not a usable,
    self-contained single-input float model."""
    onnx = _import_onnx()
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
    elem = inp.type.tensor_type.elem_type
    dtype = ONNX_FLOAT_TYPES.get(elem) or ONNX_INDEX_TYPES.get(elem)
    if dtype is None:
        raise UserError(f"{label}: input {inp.name!r} is not float32 or float16 (or int64 or "
                        f"int32 token ids) (ONNX element type {elem})")
    if not graph.output:
        raise UserError(f"{label} has no outputs")
    out_type = ONNX_FLOAT_TYPES.get(graph.output[0].type.tensor_type.elem_type)
    return OnnxSignature(inp.name, dtype, _dims(inp), tuple(o.name for o in graph.output),
                         _first_output_dims(onnx, model), weight_count(onnx, graph), out_type)


# -- the check ---------------------------------------------------------------------------
def _fits(dims: Tuple[Dim, ...], want: Tuple[int, ...]) -> bool:
    return len(dims) == len(want) + 1 and all(d is None or d == w for d, w in zip(dims[1:], want))


def _model_name(workload: Workload) -> str:
    return workload.name + (f" ({workload.params_str})" if workload.params_str else "")


def check_against_workload(sig: OnnxSignature, workload: Workload, label: str) -> None:
    """A file made for another model (other input or output shape, other weights) is
    refused, not run."""
    want_in, want_out = tuple(workload.input_shape), tuple(workload.output_shape)
    token_ids = sig.input_dtype in ONNX_INDEX_TYPES.values()
    if token_ids != (workload.input_dtype == "int64"):
        want = "int64 token ids" if workload.input_dtype == "int64" else "float inputs"
        raise UserError(f"{label}: input {sig.input_name!r} is {sig.input_dtype}, but workload "
                        f"{workload.name} feeds {want} (an ONNX file for another model?)")
    if not _fits(sig.input_dims, want_in):
        raise UserError(f"{label}: input {sig.input_name!r} has shape {shape_text(sig.input_dims)}, "
                        f"but workload {workload.name} feeds batch x {shape_text(want_in)} "
                        "(an ONNX file for another model?)")
    if sig.output_dims is not None and not _fits(sig.output_dims, want_out):
        raise UserError(f"{label}: output {sig.output_names[0]!r} has shape "
                        f"{shape_text(sig.output_dims)}, but workload {workload.name} gives "
                        f"batch x {shape_text(want_out)} (an ONNX file for another model?)")
    if sig.weight_count is not None:
        expected = workload.stats.param_count
        if abs(sig.weight_count - expected) > WEIGHT_TOLERANCE * expected:
            raise UserError(f"{label} holds {sig.weight_count:,} weights, but workload "
                            f"{_model_name(workload)} has {expected:,} (an ONNX file for another "
                            "model? gpubench would report the workload's FLOPs for it)")


def check_graph(sig: OnnxSignature, workload: Workload, precision: str, batch_size: int,
                label: str, variable_batch: bool = False) -> None:
    """The one check of a user's graph against a run (preflight and every ONNX backend):
    the workload's model, in the graph type `precision` runs, runnable at `batch_size`
    (with `variable_batch`, at every size up to it: a serving scenario's batches)."""
    check_against_workload(sig, workload, label)
    dtype = graph_dtype(precision)
    if sig.graph_type is not None and sig.graph_type != dtype:
        raise UserError(f"{label} is a {sig.graph_type} model; --precision {precision} needs "
                        f"a {dtype} one (the graph's type is the precision it runs at)")
    for what, dims in (("input", sig.input_dims), ("output", sig.output_dims)):
        if dims and dims[0] is not None and variable_batch:
            raise UserError(f"{label}: {what} has a fixed batch size of {dims[0]} (shape "
                            f"{shape_text(dims)}); a serving scenario runs batches of every "
                            f"size up to {batch_size}: it needs a dynamic batch dimension")
        if dims and dims[0] is not None and dims[0] != batch_size:
            raise UserError(f"{label}: {what} has a fixed batch size of {dims[0]} (shape "
                            f"{shape_text(dims)}); asked for --batch-size {batch_size} (a graph "
                            "with a dynamic batch dimension runs at any)")


def check_onnx_file(path: Union[str, Path], workload: Workload, precision: str,
                    batch_size: int, variable_batch: bool = False) -> str:
    """Preflight: reads, parses and checks a user's file; returns its SHA-256 hex."""
    data, digest = read_onnx_bytes(path)
    check_graph(read_signature(data, str(path)), workload, precision, batch_size, str(path),
                variable_batch)
    return digest
