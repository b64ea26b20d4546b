"""What the NVML sampler costs the workload it watches: MNIST MLP training on torch-cpu
measured by gpubench's protocol (measure()) with the NVML sampler at 10 Hz and 50 Hz,
against no sampler, interleaved in one process: one prepared step, then rounds of short
blocks in rotating order, each block a fresh sampler started, two trials, stopped. Each
round gives paired ratios (sampler / none), so slow drifts of a busy machine cancel.
Prints the median throughput of each, and the median and quartiles of the per-round
ratios (target >= 0.99 at 10 Hz).

NVML is the C test double (tests/native/fake_nvml.c): built here with gcc, and loaded
into this process by absolute path before anything touches NVML, so that pynvml's
CDLL("libnvidia-ml.so.1") finds it by its soname. A real driver's queries are slower
than the double's (each is a round trip to the kernel driver), so on a GPU machine a
poll costs more; what this measures is the sampler thread's share of the CPU and the
GIL, which is what a CPU-bound Python training loop feels.

    .venv/bin/python benchmarks/sampler_overhead.py [--rounds 20] [--trial-s 0.25] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # nvml_double: the build helpers of the double

CONFIGS: List[Tuple[str, Optional[float]]] = [("none", None), ("nvml 10 Hz", 10.0),
                                               ("nvml 50 Hz", 50.0)]


def load_double() -> Path:
    from nvml_double import build_fake_nvml, load_in_process

    lib_dir = build_fake_nvml()
    os.environ.update(FAKE_NVML_GPUS="1", FAKE_NVML_POWER_W="250")
    return load_in_process(lib_dir)


def quartiles(values: List[float]) -> Tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return q1, q2, q3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=2, help="trials per block")
    parser.add_argument("--trial-s", type=float, default=0.25)
    parser.add_argument("--workload", default="mnist")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    args = parser.parse_args()

    lib = load_double()
    from gpubench.backends import StepConfig, resolve_backend
    from gpubench.measure.protocol import ProtocolConfig, measure, warm_up
    from gpubench.telemetry import NullSampler, make_sampler
    from gpubench.workloads import resolve_workload

    workload = resolve_workload(args.workload)
    batch = args.batch_size or workload.default_batch_size
    step = resolve_backend("torch-cpu").prepare(
        workload, StepConfig("train", "fp32", batch, threads=args.threads))
    warm_up(step, 1.0)
    protocol = ProtocolConfig(trials=args.trials, warmup_s=0.05, min_trial_s=args.trial_s)
    import torch

    print(f"NVML test double: {lib}\n{args.workload} train, batch {batch}, torch-cpu with "
          f"{torch.get_num_threads()} thread(s); {args.rounds} rounds x {len(CONFIGS)} blocks x "
          f"{args.trials} trials of >= {args.trial_s} s", flush=True)

    rates: Dict[str, List[float]] = {label: [] for label, _ in CONFIGS}
    ratios: Dict[str, List[float]] = {label: [] for label, _ in CONFIGS}
    achieved: Dict[str, List[float]] = {label: [] for label, _ in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
        block: Dict[str, float] = {}
        for label, hz in order:
            sampler = NullSampler() if hz is None else make_sampler("nvml", "cpu", 0, hz)
            trials = []
            with sampler:
                measure(step, protocol, trials.append, sampler)
            if hz is not None:
                assert all(t.telemetry.get("energy_source") == "counter" for t in trials)
                achieved[label].append(sampler.notes()["achieved_hz"])
            block_rates = [t.iterations * batch / t.duration_s for t in trials]
            rates[label].extend(block_rates)
            block[label] = statistics.median(block_rates)
        for label, _ in CONFIGS:
            ratios[label].append(block[label] / block["none"])
    step.close()

    print(f"\n{'sampler':<12} {'median samples/s':>17} {'ratio (median of rounds)':>25} "
          f"{'IQR of ratio':>15} {'achieved Hz':>12}")
    for label, _ in CONFIGS:
        q1, q2, q3 = quartiles(ratios[label])
        hz = f"{statistics.median(achieved[label]):.1f}" if achieved[label] else "-"
        print(f"{label:<12} {statistics.median(rates[label]):>17,.0f} {q2:>25.3f} "
              f"{f'{q1:.3f}-{q3:.3f}':>15} {hz:>12}")
    q1, q2, q3 = quartiles(ratios["nvml 10 Hz"])
    print(f"\nratio at 10 Hz: {q2:.3f} (IQR {q1:.3f}-{q3:.3f}; target >= 0.99)")
    poll_s = poll_cost_s(make_sampler("nvml", "cpu", 0, 10.0))
    print(f"one NVML poll (7 queries) costs {poll_s * 1e6:.0f} us of CPU: "
          + ", ".join(f"{hz:g} Hz = {poll_s * hz:.3%} of a core" for hz in (10, 50)))
    return 0


def poll_cost_s(sampler, polls: int = 2000) -> float:
    """CPU time of one poll of the sampler's source (the thread's work per tick),
    measured in this thread: a noise-free bound on what sampling takes from the loop."""
    import time

    source = sampler.source
    try:
        t0 = time.thread_time()
        for _ in range(polls):
            source.read()
        return (time.thread_time() - t0) / polls
    finally:
        source.close()


if __name__ == "__main__":
    raise SystemExit(main())
