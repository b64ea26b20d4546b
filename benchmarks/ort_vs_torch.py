"""Inference throughput of onnxruntime-cpu against torch-cpu for the MNIST MLP and LeNet-5
at batch 1 and 1024. Both run gpubench's own prepared steps (the same weights, data and
thread count), trial against trial in alternating order, so machine noise hits both
alike. Prints median samples/s and the ratio onnxruntime / torch (per round too).

    .venv/bin/python benchmarks/ort_vs_torch.py [--rounds 7] [--trial-s 0.5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from gpubench.backends import StepConfig, get_backend
from gpubench.measure.protocol import iterations_for, warm_up
from gpubench.workloads import resolve_workload

CASES = [("mnist", 1), ("mnist", 1024), ("lenet5", 1), ("lenet5", 1024)]
BACKENDS = ("torch-cpu", "onnxruntime-cpu")


def trial_rate(step, iterations: int, batch_size: int) -> float:
    step.synchronize()
    t0 = time.perf_counter()
    step.run(iterations)
    step.synchronize()
    return iterations * batch_size / (time.perf_counter() - t0)


def compare(workload_name: str, batch_size: int, args: argparse.Namespace) -> None:
    workload = resolve_workload(workload_name)
    config = StepConfig("infer", "fp32", batch_size, threads=args.threads)
    steps, iterations = {}, {}
    for name in BACKENDS:
        steps[name] = get_backend(name).prepare(workload, config)
        per_iter = warm_up(steps[name], args.warmup_s).seconds_per_iteration
        iterations[name] = iterations_for(args.trial_s, per_iter)
    rates = {name: [] for name in BACKENDS}
    for r in range(args.rounds):
        for name in (BACKENDS if r % 2 == 0 else BACKENDS[::-1]):  # alternate who goes first
            rates[name].append(trial_rate(steps[name], iterations[name], batch_size))
    for step in steps.values():
        step.close()
    torch_rate, ort_rate = (statistics.median(rates[n]) for n in BACKENDS)
    per_round = [o / t for t, o in zip(rates["torch-cpu"], rates["onnxruntime-cpu"])]
    print(f"{workload_name:7s} batch {batch_size:5d}  torch {torch_rate:>12,.0f}  "
          f"onnxruntime {ort_rate:>12,.0f} samples/s  ratio ort/torch {ort_rate / torch_rate:.2f}  "
          f"(rounds: {', '.join(f'{x:.2f}' for x in per_round)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--trial-s", type=float, default=0.5)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    # One thread by default: on a shared machine, pools of spinning worker threads (OpenMP
    # in torch, ORT's own) collapse when the cores are oversubscribed, up to 100x for
    # small steps; one thread each measures the kernels, not the scheduler.
    parser.add_argument("--threads", type=int, default=1,
                        help=f"intra-op threads for both (default 1; this machine has {os.cpu_count()} CPUs)")
    args = parser.parse_args()
    import onnxruntime
    import torch

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds of {args.trial_s} s trials each")
    for workload_name, batch_size in CASES:
        compare(workload_name, batch_size, args)


if __name__ == "__main__":
    main()
