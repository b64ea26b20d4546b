"""gpubench's TensorFlow step against plain Keras: MNIST MLP training throughput of
gpubench tf-cpu (its full run path) and of `model.fit` on the same in-memory data and
batch size, interleaved in one process so machine noise hits both alike. Prints the
ratio gpubench / fit of the median throughputs (target >= 1.0: a compiled step on
resident tensors must not be slower than fit), then gpubench tf-cpu against gpubench
torch-cpu (and tf-cpu-xla) on the same workload.

    .venv/bin/python benchmarks/tf_vs_keras_fit.py [--rounds 5] [--trial-s 1] [--batch-size 64]

fit gets every chance: the 4 synthetic batches gpubench cycles are tiled into one
array long enough that one epoch lasts a trial, so fit's per-call set-up (its
tf.data pipeline, callbacks) is spread over a whole trial; it is traced before timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from gpubench.backends.tensorflow_backend import import_tensorflow
from gpubench.data.synthetic import make_batches
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run
from gpubench.workloads import resolve_workload

N_BATCHES = 4  # gpubench cycles 4 resident batches


def keras_fit_rate(batch_size: int, trial_s: float, trials: int) -> float:
    """Median samples/s of `model.fit` as its documentation shows it."""
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    batches = make_batches(resolve_workload("mnist"), batch_size, N_BATCHES, seed=0)
    x = np.concatenate([b[0] for b in batches]).transpose(0, 2, 3, 1)  # channels-last
    y = np.concatenate([b[1] for b in batches])
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with tf.device("/CPU:0"):
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)  # traces
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        per_step = (time.perf_counter() - t0) / N_BATCHES
        reps = max(1, int(trial_s / per_step / N_BATCHES))
        xs, ys = np.concatenate([x] * reps), np.concatenate([y] * reps)
        rates = []
        for _ in range(trials):
            t0 = time.perf_counter()
            model.fit(xs, ys, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
            rates.append(len(xs) / (time.perf_counter() - t0))
    return statistics.median(rates)


def gpubench_rate(backend: str, batch_size: int, trial_s: float, trials: int,
                  warmup_s: float, out: Path) -> float:
    protocol = ProtocolConfig(trials=trials, warmup_s=warmup_s, min_trial_s=trial_s)
    outcome = execute_run(RunRequest(workload="mnist", backend=backend, mode="train",
                                     batch_size=batch_size, protocol=protocol,
                                     telemetry="none", out_dir=out))
    assert outcome.status == "ok", outcome.error
    return float(outcome.summary["throughput_samples_per_s_median"].iloc[0])


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat), for telling how
    much of a measurement other processes took; nan elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def measured(fn, *args) -> Tuple[float, float]:
    """(fn's result, cores other processes kept busy meanwhile). An OpenMP runtime such as
    torch's collapses when a core is taken from it, so disturbed rounds are shown."""
    wall, own, busy = time.perf_counter(), time.process_time(), _busy_cpu_s()
    result = fn(*args)
    wall = time.perf_counter() - wall
    others = (_busy_cpu_s() - busy) - (time.process_time() - own)
    return result, max(0.0, others / wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trial-s", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    tf = import_tensorflow()
    import keras
    import torch

    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, torch {torch.__version__}; "
          f"MNIST MLP training, batch {args.batch_size}, {args.rounds} interleaved rounds "
          f"of {args.trials} x {args.trial_s} s trials")
    contenders = ["gpubench tf-cpu", "keras fit", "gpubench torch-cpu", "gpubench tf-cpu-xla"]
    rates: Dict[str, List[float]] = {name: [] for name in contenders}
    others: Dict[str, List[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            for name in order:  # rotate who goes first
                if name == "keras fit":
                    rate, load = measured(keras_fit_rate, args.batch_size, args.trial_s,
                                          args.trials)
                else:
                    rate, load = measured(gpubench_rate, name.split()[1], args.batch_size,
                                          args.trial_s, args.trials, args.warmup_s, Path(tmp))
                rates[name].append(rate)
                others[name].append(load)
    med = {name: statistics.median(v) for name, v in rates.items()}
    for name in contenders:
        print(f"  {name:20s} {med[name]:>10,.0f} samples/s   "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in rates[name])}; cores busy with "
              f"other processes: {', '.join(f'{v:.1f}' for v in others[name])})")

    def ratio(a: str, b: str) -> str:
        per_round = [x / y for x, y in zip(rates[a], rates[b])]
        return (f"{a} / {b}: {med[a] / med[b]:.2f} "
                f"(per round {', '.join(f'{x:.2f}' for x in per_round)})")

    print(ratio("gpubench tf-cpu", "keras fit") + "   target >= 1.0")
    print(ratio("gpubench tf-cpu", "gpubench torch-cpu"))
    print(ratio("gpubench tf-cpu-xla", "gpubench torch-cpu"))


if __name__ == "__main__":
    main()
