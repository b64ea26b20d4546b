"""The workload registry and --param parsing."""

import pytest

from gpubench.errors import UserError
from gpubench.workloads import (
    WorkloadSpec, get_workload, parse_param_args, register_workload, resolve_workload,
)


def test_seed_defaults():
    linreg = resolve_workload("linreg")
    assert linreg.input_shape == (2,) and linreg.num_outputs == 1
    assert linreg.optimizer == "sgd" and dict(linreg.optimizer_args) == {"lr": 0.01}
    assert linreg.loss == "mse"
    mnist = resolve_workload("mnist")
    assert mnist.default_batch_size == 64 and mnist.optimizer == "adam"
    assert mnist.loss == "cross_entropy" and mnist.input_shape == (1, 28, 28)
    resnet = resolve_workload("resnet50")
    assert resnet.input_shape == (3, 224, 224) and resnet.num_outputs == 1000


def test_params_change_the_model():
    assert resolve_workload("linreg", {"features": "4096"}).stats.param_count == 4097
    small = resolve_workload("resnet50", {"image_size": "64"})
    assert small.input_shape == (3, 64, 64)
    assert small.params_str == "image_size=64;num_classes=1000"


@pytest.mark.parametrize("raw, message", [
    ({"nope": "1"}, "unknown parameter 'nope' for workload linreg (valid: features)"),
    ({"features": "abc"}, "parameter features must be int >= 1, got 'abc'"),
    ({"features": "0"}, "parameter features must be int >= 1, got '0'"),
])
def test_bad_params(raw, message):
    with pytest.raises(UserError) as info:
        resolve_workload("linreg", raw)
    assert str(info.value) == message


def test_resnet_image_size_bounds():
    with pytest.raises(UserError, match="image_size must be int in"):
        resolve_workload("resnet50", {"image_size": "16"})


def test_parse_param_args():
    assert parse_param_args(["a=1", " b = x "]) == {"a": "1", "b": "x"}
    for bad in ("a", "=1", "a="):
        with pytest.raises(UserError, match="KEY=VALUE"):
            parse_param_args([bad])


def test_unknown_workload_lists_valid_names():
    with pytest.raises(UserError) as info:
        get_workload("mnsit")
    assert "lenet5, linreg, mnist, resnet50" in str(info.value)


def test_register_workload_for_tests_and_plugins(monkeypatch):
    from gpubench.models import Linear
    from gpubench.workloads import Workload

    def build():
        return Workload(name="tiny", task="regression", input_shape=(3,), num_outputs=1,
                        loss="mse", optimizer="sgd", optimizer_args=(("lr", 0.1),),
                        default_batch_size=8, layers=(Linear(1),))

    # for this test only: the registry is the process's, shared with every later test
    import gpubench.workloads as workloads
    monkeypatch.setitem(workloads._extra, "tiny", None)  # deleted again after the test
    register_workload(WorkloadSpec("tiny", "a test workload", build))
    assert resolve_workload("tiny").stats.param_count == 4
