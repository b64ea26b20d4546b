"""Where a run's data comes from (`--data`): `synthetic` (made with numpy, the default
for throughput) or `mnist` (the real set from its IDX files, data/mnist.py). Backends
ask here for the batches they keep resident on the device, and for the labelled
train and test sets a training loop walks through epoch by epoch."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from gpubench.data.synthetic import Batch, make_batches
from gpubench.errors import UserError
from gpubench.workloads import Workload

DATA_SOURCES = ("synthetic", "mnist")
REAL_SOURCES = ("mnist",)
MNIST_SHAPE = (1, 28, 28)
MNIST_CLASSES = 10


def check_source(workload: Workload, data: str) -> None:
    """Refuses an unknown source, or a workload that cannot take its samples."""
    if data not in DATA_SOURCES:
        raise UserError(f"unknown data {data!r} (valid: {', '.join(DATA_SOURCES)})")
    if data == "mnist":
        if tuple(workload.input_shape) != MNIST_SHAPE or workload.task != "classification" \
                or workload.num_outputs != MNIST_CLASSES:
            raise UserError(
                f"--data mnist: workload {workload.name} takes inputs "
                f"{tuple(workload.input_shape)} with {workload.num_outputs} outputs "
                f"({workload.task}); MNIST is 1x28x28 images in 10 classes (mnist, lenet5)")


def labelled_data(data: str, data_dir: Optional[str]):
    """The real set's train and test images and labels (data/mnist.py LabelledImages);
    DataError (a UserError) when missing or malformed, saying how to fetch it."""
    if data not in REAL_SOURCES:
        raise UserError(f"--data {data} has no train and test sets: use --data mnist")
    from gpubench.data.mnist import load_mnist
    return load_mnist(data_dir)


def resident_batches(workload: Workload, batch_size: int, n_batches: int, seed: int,
                     data: str = "synthetic", data_dir: Optional[str] = None) -> List[Batch]:
    """The batches a throughput step keeps on the device and cycles through: synthetic,
    or `n_batches` batches of real training images drawn with `seed`."""
    if data == "synthetic":
        return make_batches(workload, batch_size, n_batches, seed)
    sets = labelled_data(data, data_dir)
    take = np.random.default_rng(seed).permutation(len(sets.train_y))
    take = np.resize(take, batch_size * n_batches)  # a set smaller than the batches repeats
    return [(sets.train_x[idx], sets.train_y[idx])
            for idx in np.split(take, n_batches)]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The host-side shuffle of epoch `epoch` over `n` training samples: the same on
    every backend for a seed, and different every epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)
