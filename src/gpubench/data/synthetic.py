"""Synthetic, learnable data: a model that trains on it really lowers its loss, so a
broken training step shows up as a flat loss, not as a fast benchmark.

Classification: each class has a fixed point in a low-rank subspace of the input
(`LATENT_RANK` dimensions), and a sample is that point plus noise. Regression: a fixed
random linear map plus small noise. Both are cheap for large inputs (ResNet-50 at 224
needs only a RANK x 150k basis, not one prototype image per class).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from gpubench.workloads import Workload

LATENT_RANK = 16
NOISE = 0.5

Batch = Tuple[np.ndarray, np.ndarray]


def make_batches(workload: Workload, batch_size: int, n_batches: int, seed: int) -> List[Batch]:
    """`n_batches` batches of (inputs float32 [B, *input_shape], targets). Targets are
    int64 class indices [B] for classification, float32 [B, outputs] for regression."""
    rng = np.random.default_rng(seed)
    dim = int(np.prod(workload.input_shape))
    n = batch_size * n_batches
    if workload.task == "classification":
        basis = rng.standard_normal((LATENT_RANK, dim), dtype=np.float32) / np.sqrt(LATENT_RANK)
        centres = rng.standard_normal((workload.num_outputs, LATENT_RANK), dtype=np.float32)
        y = rng.integers(0, workload.num_outputs, size=n, dtype=np.int64)
        x = centres[y] @ basis
        x += NOISE * rng.standard_normal((n, dim), dtype=np.float32)
    else:
        w = rng.standard_normal((dim, workload.num_outputs), dtype=np.float32) / np.sqrt(dim)
        x = rng.standard_normal((n, dim), dtype=np.float32)
        y = (x @ w + 0.5 + 0.01 * rng.standard_normal((n, workload.num_outputs))).astype(np.float32)
    x = x.astype(np.float32, copy=False).reshape((n,) + tuple(workload.input_shape))
    return [(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
            for i in range(n_batches)]
