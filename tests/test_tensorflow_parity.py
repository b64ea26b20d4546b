"""The Keras translation computes the same function as the PyTorch one: the same
parameter count, and with PyTorch's weights copied across (OIHW -> HWIO, Linear
transposed, Flatten's C,H,W order mapped to channels-last H,W,C) the same outputs for a
fixed input, BatchNorm in inference form with non-trivial statistics.

Tolerance: fp32 on both sides, different kernels and summation orders. The largest
absolute difference must be within PARITY_RTOL of the largest output magnitude
(ResNet-50's 53 layers accumulate rounding; the small nets agree to ~1e-6)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("tensorflow") is None:  # not importorskip: import it quietly
    pytest.skip("tensorflow is not installed", allow_module_level=True)

from gpubench.backends.tensorflow_backend import import_tensorflow  # noqa: E402
from gpubench.data.synthetic import make_batches  # noqa: E402
from gpubench.models import (  # noqa: E402
    BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Residual,
)
from gpubench.workloads import Workload, resolve_workload  # noqa: E402

PARITY_RTOL = 1e-4

# Padding and layout traps in one small net: strided 3x3 and 7x7 convs with padding
# on odd and even sizes (TF's 'same' would pad unevenly), a padded max pool over
# negative values (zero padding would win the max), a stride-1 'same'-able conv, a
# residual with a strided shortcut, and a multi-channel Flatten before a Linear.
TRAPS = Workload(
    name="traps", task="classification", input_shape=(3, 15, 14), num_outputs=5,
    loss="cross_entropy", optimizer="sgd", optimizer_args=(("lr", 0.1),),
    default_batch_size=4,
    layers=(
        Conv2d(8, 7, stride=2, padding=3, bias=False), BatchNorm2d(),
        MaxPool2d(3, 2, padding=1),
        Residual((Conv2d(8, 3, stride=2, padding=1), BatchNorm2d(), ReLU(),
                  Conv2d(6, 3, padding=1)),
                 (Conv2d(6, 1, stride=2),)),
        Conv2d(4, 3, padding=1),  # 4 x 2 x 2: Flatten's order matters
        Flatten(), ReLU(), Linear(7), ReLU(), Linear(5),
    ),
)

TINY_TRANSFORMER = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "97"}

WORKLOADS = {
    "linreg": lambda: resolve_workload("linreg", {"features": "5"}),
    "mnist": lambda: resolve_workload("mnist"),
    "lenet5": lambda: resolve_workload("lenet5"),
    "resnet50": lambda: resolve_workload("resnet50", {"image_size": "32", "num_classes": "10"}),
    "traps": lambda: TRAPS,
    # transformers at tiny shapes: attention, LayerNorm, GELU, the tied head, [CLS] pooling
    "gpt": lambda: resolve_workload("gpt", TINY_TRANSFORMER),
    "bert": lambda: resolve_workload("bert", TINY_TRANSFORMER),
}


@pytest.fixture(scope="module")
def keras_model_mod():
    import_tensorflow()
    from gpubench.backends import keras_model
    return keras_model


def torch_reference(workload: Workload, seed: int = 0):
    """The PyTorch model in eval mode with random BatchNorm affine and statistics, and
    its weights as numpy arrays in state_dict order."""
    from gpubench.backends.torch_model import build_module

    torch.manual_seed(seed)
    module = build_module(workload.layers, workload.input_shape).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.2 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    arrays = [v.detach().numpy() for k, v in module.state_dict().items()
              if not k.endswith("num_batches_tracked")]
    return module, arrays


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_same_parameter_count(name, keras_model_mod):
    workload = WORKLOADS[name]()
    module, _ = torch_reference(workload)
    km = keras_model_mod.build_keras_model(workload.layers, workload.input_shape)
    torch_count = sum(p.numel() for p in module.parameters())
    assert keras_model_mod.trainable_param_count(km) == torch_count == workload.stats.param_count


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_same_outputs_with_same_weights(name, keras_model_mod):
    workload = WORKLOADS[name]()
    module, arrays = torch_reference(workload)
    km = keras_model_mod.build_keras_model(workload.layers, workload.input_shape)
    keras_model_mod.load_reference_weights(km, arrays)
    (x, _), = make_batches(workload, 3, 1, seed=7)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = km.model(keras_model_mod.to_channels_last(x), training=False).numpy()
    assert got.shape == expected.shape == (3,) + workload.stats.output_shape
    scale = float(np.max(np.abs(expected)))
    assert scale > 1e-3  # a dead network would agree trivially
    err = float(np.max(np.abs(got - expected)))
    assert err <= PARITY_RTOL * scale, f"max abs diff {err:.3g} vs output scale {scale:.3g}"


def test_flatten_order_matters(keras_model_mod):
    """Guards the C,H,W -> H,W,C row permutation: copying the Linear weight without it
    gives different outputs (so the parity test above can fail)."""
    module, arrays = torch_reference(TRAPS)
    km = keras_model_mod.build_keras_model(TRAPS.layers, TRAPS.input_shape)
    for w in km.weighted:
        w.flattened_chw = None  # pretend Flatten orders like PyTorch
    keras_model_mod.load_reference_weights(km, arrays)
    (x, _), = make_batches(TRAPS, 3, 1, seed=7)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = km.model(keras_model_mod.to_channels_last(x), training=False).numpy()
    assert np.max(np.abs(got - expected)) > 1e-2 * np.max(np.abs(expected))


def test_wrong_number_of_weights_is_refused(keras_model_mod):
    workload = WORKLOADS["mnist"]()
    _, arrays = torch_reference(workload)
    km = keras_model_mod.build_keras_model(workload.layers, workload.input_shape)
    with pytest.raises(ValueError, match="expected 4 weight arrays, got 3"):
        keras_model_mod.load_reference_weights(km, arrays[:3])
