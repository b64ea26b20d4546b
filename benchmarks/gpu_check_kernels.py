"""gpu-check's reference kernels with plain torch, beside the datasheet peaks: run in a
subprocess (`gpu_check.py --measure-kernels`) so the checker itself never imports torch.

bf16 GEMM TFLOP/s (GEMM_N^3, 2 n^3 FLOPs each) and device-to-device copy GB/s
(COPY_BYTES, counted as read + write), timed with CUDA events after a warm-up: REPS
repetitions of ITERS back-to-back kernels; the median and the best are reported."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

GEMM_N = 8192
COPY_BYTES = 1 << 30
ITERS, REPS = 20, 5


def _seconds(torch: Any, fn: Callable[[], Any], warmup: int) -> List[float]:
    """Sorted seconds of REPS x ITERS calls of `fn`, after `warmup` calls."""
    def timed(iters: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3

    timed(warmup)  # cuBLAS heuristics, clocks
    return sorted(timed(ITERS) for _ in range(REPS))


def _gemm_seconds(torch: Any, dev: Any) -> List[float]:
    a, b = (torch.randn(GEMM_N, GEMM_N, device=dev, dtype=torch.bfloat16) for _ in range(2))
    c = torch.empty_like(a)
    return _seconds(torch, lambda: torch.matmul(a, b, out=c), warmup=10)


def _copy_seconds(torch: Any, dev: Any) -> List[float]:
    src = torch.ones(COPY_BYTES, device=dev, dtype=torch.uint8)
    dst = torch.empty_like(src)
    return _seconds(torch, lambda: dst.copy_(src), warmup=5)


def measure_kernels() -> Dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda})")
    dev = torch.device("cuda", 0)
    props = torch.cuda.get_device_properties(0)
    gemm_s = _gemm_seconds(torch, dev)  # its tensors are freed before the copy's
    copy_s = _copy_seconds(torch, dev)
    flops, moved = 2 * GEMM_N ** 3 * ITERS, 2 * COPY_BYTES * ITERS
    return {
        "device_name": props.name, "capability": [props.major, props.minor],
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "gemm_n": GEMM_N, "gemm_tflops": flops / gemm_s[REPS // 2] / 1e12,
        "gemm_tflops_best": flops / gemm_s[0] / 1e12,
        "copy_bytes": COPY_BYTES, "copy_gbs": moved / copy_s[REPS // 2] / 1e9,
        "copy_gbs_best": moved / copy_s[0] / 1e9,
    }
