"""Synthetic, learnable data: a model that trains on it really lowers its loss, so a
broken training step shows up as a flat loss, not as a fast benchmark.

Classification: each class has a fixed point in a low-rank subspace of the input
(`LATENT_RANK` dimensions), and a sample is that point plus noise. Regression: a fixed
random linear map plus small noise. Both are cheap for large inputs (ResNet-50 at 224
needs only a RANK x 150k basis, not one prototype image per class).

Token models (int64 inputs): every sequence is an arithmetic progression mod vocab,
t_i = (start + stride * i) mod vocab, with a random start and a small random stride.
Language models predict the next token (targets = the sequence shifted by one: learnable
once the stride is read from the context); classifiers predict a function of the stride,
stride = 1 + label + num_classes * k (k random in {0, 1}), so with two classes the label
is whether the stride is even.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from gpubench.workloads import Workload

LATENT_RANK = 16
NOISE = 0.5
LM_MAX_STRIDE = 4  # language models: strides 1..4

Batch = Tuple[np.ndarray, np.ndarray]


def make_batches(workload: Workload, batch_size: int, n_batches: int, seed: int) -> List[Batch]:
    """`n_batches` batches of (inputs float32 [B, *input_shape], targets). Targets are
    int64 class indices [B] for classification, float32 [B, outputs] for regression.
    Token models: inputs int64 [B, seq] in [0, vocab); a language model's targets are
    int64 [B, seq] (the next token at every position)."""
    if workload.input_dtype == "int64":
        return _token_batches(workload, batch_size, n_batches, seed)
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


def _vocab(workload: Workload) -> int:
    from gpubench.models import Embedding

    embedding = next((rec for rec in workload.layers if isinstance(rec, Embedding)), None)
    if embedding is None:
        raise ValueError(f"workload {workload.name} takes token ids but has no Embedding")
    return embedding.vocab


def _token_batches(workload: Workload, batch_size: int, n_batches: int, seed: int) -> List[Batch]:
    rng = np.random.default_rng(seed)
    vocab, seq = _vocab(workload), int(workload.input_shape[0])
    n = batch_size * n_batches
    start = rng.integers(0, vocab, size=(n, 1), dtype=np.int64)
    if workload.task == "language_model":
        stride = rng.integers(1, LM_MAX_STRIDE + 1, size=(n, 1), dtype=np.int64)
        tokens = (start + stride * np.arange(seq + 1, dtype=np.int64)) % vocab
        x, y = tokens[:, :-1], tokens[:, 1:]
    else:
        y = rng.integers(0, workload.num_outputs, size=n, dtype=np.int64)
        stride = 1 + y + workload.num_outputs * rng.integers(0, 2, size=n, dtype=np.int64)
        x = (start + stride[:, None] * np.arange(seq, dtype=np.int64)) % vocab
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    return [(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
            for i in range(n_batches)]
