"""The timed step for TensorFlow: a Keras model, its optimizer and resident data on one
device. Training is one `tf.function` call per step (forward, gradients and the
optimizer update in one graph, no `model.fit` machinery); inference is a compiled
forward pass. XLA, precision and loss scaling are decided once here, never per step."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from gpubench.backends.base import (
    HOST_CLOCK_FACTS, DeviceInfo, HostTimer, Step, StepConfig, StepTimer,
)
from gpubench.backends.keras_model import (
    build_keras_model, load_reference_weights, to_channels_last,
)
from gpubench.data.sources import epoch_order, labelled_data, resident_batches
from gpubench.models.init_weights import initial_weights
from gpubench.workloads import Workload

EVAL_BATCH = 1000  # test images per forward pass when evaluating (not timed with training)

DTYPE_POLICIES = {"fp32": "float32", "tf32": "float32",
                  "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def make_optimizer(workload: Workload) -> keras.optimizers.Optimizer:
    """The workload's optimizer with PyTorch's defaults where Keras' differ."""
    args = dict(workload.optimizer_args)
    if workload.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=args.get("lr", 1e-3), epsilon=1e-8)
    if workload.optimizer == "adamw":  # torch's AdamW defaults: weight decay 0.01, eps 1e-8
        return keras.optimizers.AdamW(learning_rate=args.get("lr", 1e-3),
                                      weight_decay=args.get("weight_decay", 0.01), epsilon=1e-8)
    # Keras applies weight decay decoupled (p -= lr*wd*p), PyTorch's SGD adds wd*p to the
    # gradient: the same for plain SGD, a small difference in the update with momentum.
    return keras.optimizers.SGD(learning_rate=args.get("lr", 0.01),
                                momentum=args.get("momentum", 0.0),
                                weight_decay=args.get("weight_decay") or None)


def make_loss(workload: Workload) -> keras.losses.Loss:
    if workload.loss == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class TFStep(Step):
    def __init__(self, workload: Workload, config: StepConfig, tf_device: str,
                 device: DeviceInfo, xla: bool = False) -> None:
        self.config = config
        self.device = device
        self.tf_device = tf_device
        self.is_gpu = device.kind == "cuda"
        self.xla = xla
        self.latency_timing_syncs = self.is_gpu  # TF has no device events to time with
        self._last_loss: Optional[tf.Tensor] = None
        keras.utils.set_random_seed(config.seed)
        if self.is_gpu:
            tf.config.experimental.reset_memory_stats(self._mem_device)
        with tf.device(tf_device):
            km = build_keras_model(workload.layers, workload.input_shape,
                                   DTYPE_POLICIES[config.precision])
            if config.reference_init:
                load_reference_weights(km, initial_weights(workload.layers,
                                                           workload.input_shape, config.seed))
            self.model = km.model
            batches = resident_batches(workload, config.batch_size, config.data_batches,
                                       config.seed, config.data, config.data_dir)
            self._sets: Optional[Tuple[np.ndarray, ...]] = None  # the real sets, channels-last
            # tf.identity under the device scope copies each batch onto the device now.
            self.data = [(tf.identity(tf.constant(to_channels_last(x))), tf.identity(tf.constant(y)))
                         for x, y in batches]
            x0, y0 = self.data[0]
            model = self.model
            self._forward = tf.function(lambda x: model(x, training=False), jit_compile=xla)
            if config.mode == "train":
                fn = self._train_fn = self._make_train_step(workload, config.precision, xla)
                concrete = fn.get_concrete_function(x0, y0)
            else:
                fn = self._forward
                concrete = fn.get_concrete_function(x0)
            # Every batch has one signature: calling its concrete function (the same graph)
            # skips tf.function's per-call argument matching, 10-25% of a small step here.
            self._step = concrete

    @property
    def _mem_device(self) -> str:
        return self.tf_device.lstrip("/")

    def _make_train_step(self, workload: Workload, precision: str, xla: bool) -> Callable:
        model, loss_fn = self.model, make_loss(workload)
        opt = make_optimizer(workload)
        scaled = precision == "fp16"  # fp16 gradients underflow without loss scaling
        if scaled:
            opt = keras.mixed_precision.LossScaleOptimizer(opt)
        variables = model.trainable_variables
        opt.build(variables)  # optimizer state exists before the first (traced) call

        @tf.function(jit_compile=xla)
        def step(x, y):
            with tf.GradientTape() as tape:
                # The loss in float32 whatever the compute dtype (mixed precision).
                loss = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
                objective = opt.scale_loss(loss) if scaled else loss
            grads = tape.gradient(objective, variables)
            opt.apply_gradients(zip(grads, variables))  # unscales under loss scaling
            return loss

        return step

    # -- the timed interface -----------------------------------------------------------
    def make_timer(self, iterations: int) -> StepTimer:
        return HostTimer(iterations)

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        step, data, k = self._step, self.data, len(self.data)
        train = self.config.mode == "train"
        out: Any = None
        with tf.device(self.tf_device):
            if timer is None:
                if train:
                    for i in range(iterations):
                        out = step(*data[i % k])
                else:
                    for i in range(iterations):
                        out = step(data[i % k][0])
            else:
                out = self._run_timed(iterations, timer, train)
        if train:
            self._last_loss = out

    def _run_timed(self, iterations: int, timer: StepTimer, train: bool) -> Any:
        assert isinstance(timer, HostTimer)
        step, data, k = self._step, self.data, len(self.data)
        times, clock, sync = timer.times_s, time.perf_counter, self.synchronize
        out = None
        for i in range(iterations):
            x, y = data[i % k]
            t0 = clock()
            out = step(x, y) if train else step(x)
            sync()
            times[i] = clock() - t0
        return out

    # -- real data: epochs, evaluation, predictions -----------------------------------
    @property
    def sets(self) -> Tuple[np.ndarray, ...]:
        """train x, train y, test x, test y on the host, images channels-last."""
        if self._sets is None:
            d = labelled_data(self.config.data, self.config.data_dir)
            self._sets = (to_channels_last(d.train_x), d.train_y,
                          to_channels_last(d.test_x), d.test_y)
        return self._sets

    def train_epoch(self, epoch: int) -> Tuple[float, int]:
        x_all, y_all = self.sets[:2]
        order = epoch_order(len(y_all), self.config.seed, epoch)
        bs, losses = self.config.batch_size, []
        with tf.device(self.tf_device):
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                # the tf.function, not the fixed-shape concrete one: a short last batch
                # is traced once more, then reused every epoch
                losses.append(self._train_fn(tf.constant(x_all[idx]), tf.constant(y_all[idx]))
                              * len(idx))
            mean = tf.add_n(losses) / len(order)
        self._last_loss = mean
        return float(mean.numpy()), len(order)

    def evaluate(self) -> float:
        x_all, y_all = self.sets[2:]
        correct = 0
        for start in range(0, len(y_all), EVAL_BATCH):
            logits = self._predict_channels_last(x_all[start:start + EVAL_BATCH])
            correct += int((logits.argmax(axis=1) == y_all[start:start + EVAL_BATCH]).sum())
        return correct / len(y_all)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict_channels_last(to_channels_last(x))

    def _predict_channels_last(self, x: np.ndarray) -> np.ndarray:
        with tf.device(self.tf_device):
            return np.asarray(tf.cast(self._forward(tf.constant(x)), tf.float32).numpy())

    # -- serving: host batches of any size, outputs back on the host ------------------
    def start_serving(self, library: np.ndarray) -> Dict[str, Any]:
        self._library = np.ascontiguousarray(to_channels_last(library))
        spec = tf.TensorSpec((None,) + self._library.shape[1:], tf.as_dtype(self._library.dtype))
        model = self.model
        # one graph for every batch size (XLA still compiles each shape it meets: the
        # serving warm-up runs them all before timing)
        self._serve_fn = tf.function(lambda x: model(x, training=False),
                                     input_signature=[spec], jit_compile=self.xla)
        return dict(HOST_CLOCK_FACTS)  # .numpy() returns once the outputs are on the host

    def serve(self, samples: np.ndarray) -> Optional[float]:
        with tf.device(self.tf_device):
            self._serve_fn(tf.constant(self._library[samples])).numpy()
        return None

    def synchronize(self) -> None:
        # Eager CPU ops have finished when they return; GPU kernels are queued on streams.
        if self.is_gpu:
            tf.test.experimental.sync_devices()

    def loss(self) -> Optional[float]:
        return None if self._last_loss is None else float(self._last_loss.numpy())

    def peak_mem_bytes(self) -> Optional[int]:
        if not self.is_gpu:
            return None
        return int(tf.config.experimental.get_memory_info(self._mem_device)["peak"])

    def close(self) -> None:
        self._sets = None
        self.data = []
        self._step = None
        self.model = None
        self._last_loss = None
