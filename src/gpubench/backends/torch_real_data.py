"""The PyTorch step's real-data part (backends/torch_step.py): the labelled train and
test sets in host memory, an epoch of training over them, evaluation, and predictions at
the step's precision. Nothing here is timed as a trial: the time-to-accuracy scenario
times epochs itself, and the accuracy gate compares predictions before timing."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from gpubench.data.sources import epoch_order, labelled_data

EVAL_BATCH = 1000  # test images per forward pass when evaluating (not timed with training)


class TorchRealData:
    """Mixed into TorchStep, whose model, device, config, train step and autocast dtype
    these use."""

    _sets: Optional["HostSets"]

    @property
    def sets(self) -> "HostSets":
        if self._sets is None:
            self._sets = HostSets(labelled_data(self.config.data, self.config.data_dir),
                                  self.is_cuda)
        return self._sets

    def train_epoch(self, epoch: int) -> Tuple[float, int]:
        x_all, y_all = self.sets.train_x, self.sets.train_y
        order = epoch_order(len(y_all), self.config.seed, epoch)
        step, bs, device = self._step, self.config.batch_size, self.torch_device
        total = torch.zeros((), device=device)
        for start in range(0, len(order), bs):
            idx = torch.from_numpy(order[start:start + bs])
            x, y = x_all[idx], y_all[idx]
            if self.is_cuda:  # as DataLoader(pin_memory=True): pinned, copied asynchronously
                x = x.pin_memory().to(device, non_blocking=True)
                y = y.pin_memory().to(device, non_blocking=True)
            # summed on the device: reading each step's loss would wait for the device
            total += step(x, y).detach() * len(idx)
        self._last_loss = total / len(order)
        return float(self._last_loss), len(order)  # float() synchronises

    def evaluate(self) -> float:
        x_all, y_all = self.sets.test_x, self.sets.test_y
        correct = torch.zeros((), dtype=torch.int64, device=self.torch_device)
        for start in range(0, len(y_all), EVAL_BATCH):
            logits = self._forward(x_all[start:start + EVAL_BATCH])
            y = y_all[start:start + EVAL_BATCH].to(self.torch_device, non_blocking=True)
            correct += (logits.argmax(dim=1) == y).sum()
        return int(correct) / len(y_all)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._forward(torch.from_numpy(np.ascontiguousarray(x))).float().cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model in eval mode at the step's precision on a host batch."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                x = x.to(self.torch_device, non_blocking=True)
                if self._autocast_dtype is None:
                    return self.model(x)
                with torch.autocast(self.torch_device.type, dtype=self._autocast_dtype):
                    return self.model(x)
        finally:
            self.model.train(was_training)


class HostSets:
    """The real train and test sets as host tensors (pinned on CUDA machines, so that
    batches gathered from them copy to the device asynchronously)."""

    def __init__(self, sets, pin: bool) -> None:
        def host(a: np.ndarray) -> torch.Tensor:
            t = torch.tensor(a)  # a copy: the loader's cached arrays are read-only
            return t.pin_memory() if pin else t
        self.train_x, self.train_y = host(sets.train_x), host(sets.train_y)
        self.test_x, self.test_y = host(sets.test_x), host(sets.test_y)
