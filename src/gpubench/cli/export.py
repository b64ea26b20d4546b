"""`gpubench export`: a workload's PyTorch model as one self-contained ONNX file (weights
inside, dynamic batch dimension), from the export cache when it holds it."""

from __future__ import annotations

import argparse
import sys

from gpubench.cli.argtypes import nonnegative_int, path_arg, positive_int

PRECISIONS = ("fp32", "fp16")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a workload's model to ONNX",
                       description="Export a workload's PyTorch model to one self-contained ONNX "
                                   "file with a dynamic batch dimension (cached by content hash).")
    p.add_argument("--workload", "-w", required=True, help="workload name (see gpubench list)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="workload parameter, repeatable (e.g. image_size=64)")
    p.add_argument("--batch-size", type=positive_int,
                   help="example batch traced (default 2); the file's batch dimension stays dynamic")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="graph type: fp32 (default) or fp16 (weights and activations)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="weights seed, as `gpubench run --seed` (default 0)")
    p.add_argument("--out", type=path_arg, required=True, help="the ONNX file to write")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.atomic_io import write_bytes_atomic
    from gpubench.backends.onnx_export import TRACE_BATCH, export_workload, graph_dtype
    from gpubench.errors import UserError
    from gpubench.workloads import parse_param_args, resolve_workload

    workload = resolve_workload(args.workload, parse_param_args(args.param))
    model = export_workload(workload, args.seed, graph_dtype(args.precision),
                            trace_batch=args.batch_size or TRACE_BATCH)
    data = model.read_bytes()
    try:
        write_bytes_atomic(args.out, data)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    how = "from the cache" if model.cache == "hit" else f"exported in {model.export_s:.2f} s"
    print(f"{args.out}  {len(data):,} bytes  sha256 {model.sha256[:16]}  {how}")
    if model.cache.startswith("not cached"):
        print(f"gpubench: warning: export {model.cache}", file=sys.stderr)
    return 0
