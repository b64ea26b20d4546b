"""Derived model facts: parameter counts against torch's own count, FLOPs against hand
computation, shape errors."""

import pytest

from gpubench.models import (
    BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU, Residual, analyze,
)
from gpubench.workloads import all_workloads, resolve_workload
from gpubench.workloads.collectives import OPS as COLLECTIVES

MODEL_WORKLOADS = sorted(set(all_workloads()) - set(COLLECTIVES))  # collectives have no model

torch = pytest.importorskip("torch")

# Small sizes keep resnet50 cheap; the parameter count does not depend on image size.
# The transformers at tiny widths (their defaults hold 110-124M parameters).
TINY_TRANSFORMER = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "64"}
TEST_PARAMS = {"resnet50": {"image_size": "32"}, "gpt": TINY_TRANSFORMER, "bert": TINY_TRANSFORMER}


@pytest.mark.parametrize("name", MODEL_WORKLOADS)
def test_param_count_equals_torch(name):
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload(name, TEST_PARAMS.get(name))
    module = build_module(workload.layers, workload.input_shape)
    assert workload.stats.param_count == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", MODEL_WORKLOADS)
def test_torch_module_output_shape_matches_description(name):
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload(name, TEST_PARAMS.get(name))
    module = build_module(workload.layers, workload.input_shape).eval()
    dtype = torch.int64 if workload.input_dtype == "int64" else torch.float32  # token ids
    with torch.no_grad():
        out = module(torch.zeros((2,) + workload.input_shape, dtype=dtype))
    assert tuple(out.shape) == (2,) + workload.stats.output_shape == (2,) + workload.output_shape


def test_resnet50_matches_published_parameter_count():
    # torchvision's resnet50 has 25,557,032 parameters; an independent check of the
    # description (bottlenecks, projection shortcuts, BatchNorm affine parameters).
    assert resolve_workload("resnet50").stats.param_count == 25_557_032


def test_mnist_and_lenet5_param_counts_by_hand():
    assert resolve_workload("mnist").stats.param_count == 784 * 128 + 128 + 128 * 10 + 10
    lenet = (1 * 25 * 6 + 6) + (6 * 25 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert resolve_workload("lenet5").stats.param_count == lenet


def test_linear_flops_by_hand():
    stats = analyze([Linear(10)], (784,))
    assert stats.forward_flops_per_sample == 2 * 784 * 10 + 10
    assert analyze([Linear(10, bias=False)], (784,)).forward_flops_per_sample == 2 * 784 * 10


def test_conv_flops_by_hand():
    # 3x32x32 input, 16 filters 3x3 stride 2 pad 1 -> 16x16x16 output.
    stats = analyze([Conv2d(16, 3, stride=2, padding=1, bias=False)], (3, 32, 32))
    assert stats.output_shape == (16, 16, 16)
    assert stats.forward_flops_per_sample == 2 * 3 * 3 * 3 * 16 * 16 * 16
    with_bias = analyze([Conv2d(16, 3, stride=2, padding=1)], (3, 32, 32))
    assert with_bias.forward_flops_per_sample == 2 * 3 * 9 * 16 * 256 + 16 * 256


def test_mnist_flops_and_training_factor():
    stats = resolve_workload("mnist").stats
    forward = (2 * 784 * 128 + 128) + 128 + (2 * 128 * 10 + 10)
    assert stats.forward_flops_per_sample == forward
    assert stats.flops_per_sample("train") == 3 * forward
    assert stats.flops_per_sample("infer") == forward


def test_residual_adds_branches_and_checks_shapes():
    block = Residual((Conv2d(8, 3, padding=1), BatchNorm2d()), (Conv2d(8, 1),))
    stats = analyze([block, ReLU(), GlobalAvgPool()], (4, 8, 8))
    assert stats.output_shape == (8,)
    assert stats.param_count == (4 * 9 * 8 + 8) + 16 + (4 * 8 + 8)
    with pytest.raises(ValueError, match="residual branches disagree"):
        analyze([Residual((Conv2d(8, 3),))], (4, 8, 8))


def test_linear_acts_on_the_last_dimension():
    stats = analyze([Linear(3)], (5, 4))  # 5 positions of 4 features
    assert stats.output_shape == (5, 3)
    assert stats.param_count == 4 * 3 + 3
    assert stats.forward_flops_per_sample == 5 * (2 * 4 * 3 + 3)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="Linear needs an input with a last dimension"):
        analyze([Linear(3)], ())
    with pytest.raises(ValueError, match="too small"):
        analyze([MaxPool2d(3, 2)], (1, 2, 2))
    assert analyze([Flatten()], (2, 3, 4)).output_shape == (24,)


def test_bytes_per_step_grows_with_batch_and_training():
    stats = resolve_workload("mnist").stats
    assert stats.bytes_per_step(128, "infer") > stats.bytes_per_step(64, "infer")
    assert stats.bytes_per_step(64, "train") > stats.bytes_per_step(64, "infer")
