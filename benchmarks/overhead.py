"""gpubench measuring itself: the MNIST MLP (train and infer) timed by gpubench's full
run path and by a minimal hand-written PyTorch loop, interleaved in one process, so
that machine noise hits both alike. Prints the ratio gpubench / hand-written of the
median throughputs (target >= 0.97: the harness must not slow what it measures).

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--trial-s 0.5] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run

N_BATCHES = 4  # gpubench also cycles 4 resident batches


def hand_written(mode: str, batch_size: int, trial_s: float, trials: int, warmup_s: float) -> float:
    """Median samples/s of the plain loop anyone would write."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    data = [(torch.randn(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,)))
            for _ in range(N_BATCHES)]
    if mode == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def loop(n: int) -> None:
            for i in range(n):
                x, y = data[i % N_BATCHES]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
    else:
        model.eval()

        def loop(n: int) -> None:
            with torch.inference_mode():
                for i in range(n):
                    model(data[i % N_BATCHES][0])

    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < warmup_s:
        loop(32)
        n += 32
    per_iter = (time.perf_counter() - start) / n
    iterations = max(1, int(trial_s / per_iter))
    rates = []
    for _ in range(trials):
        t0 = time.perf_counter()
        loop(iterations)
        rates.append(iterations * batch_size / (time.perf_counter() - t0))
    return statistics.median(rates)


def gpubench_rate(mode: str, batch_size: int, trial_s: float, trials: int, warmup_s: float,
                  out: Path) -> float:
    protocol = ProtocolConfig(trials=trials, warmup_s=warmup_s, min_trial_s=trial_s)
    outcome = execute_run(RunRequest(workload="mnist", backend="torch-cpu", mode=mode,
                                     batch_size=batch_size, protocol=protocol,
                                     telemetry="none", out_dir=out))
    assert outcome.status == "ok", outcome.error
    return float(outcome.summary["throughput_samples_per_s_median"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trial-s", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.rounds} interleaved rounds of {args.trials} x {args.trial_s} s trials")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("train", "infer"):
            ours, hand = [], []
            for r in range(args.rounds):
                order = (0, 1) if r % 2 == 0 else (1, 0)  # alternate who goes first
                for who in order:
                    if who == 0:
                        ours.append(gpubench_rate(mode, args.batch_size, args.trial_s,
                                                  args.trials, args.warmup_s, Path(tmp)))
                    else:
                        hand.append(hand_written(mode, args.batch_size, args.trial_s,
                                                 args.trials, args.warmup_s))
            ratios = [o / h for o, h in zip(ours, hand)]
            print(f"{mode:5s}  gpubench {statistics.median(ours):>12,.0f} samples/s   "
                  f"hand-written {statistics.median(hand):>12,.0f} samples/s   "
                  f"ratio {statistics.median(ours) / statistics.median(hand):.3f} "
                  f"(per-round ratios {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
