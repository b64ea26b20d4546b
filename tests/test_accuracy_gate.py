"""The accuracy gate (`--check-accuracy`): the comparison of two output arrays, the
shared starting weights it relies on, and the gate on real runs: ONNX Runtime passes
on real test images, an engine that computes something else is flagged in its rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PLUGIN_ENV, run_cli_here
from gpubench.measure.accuracy_gate import TOLERANCES, compare_outputs
from gpubench.models.init_weights import initial_weights
from gpubench.workloads import resolve_workload

BUILTIN = ("linreg", "mnist", "lenet5", "resnet50", "gpt", "bert")
# Cheap shapes: resnet50 at 32x32, the transformers at tiny widths.
TINY_TRANSFORMER = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "64"}
SMALL_PARAMS = {"resnet50": {"image_size": "32"}, "gpt": TINY_TRANSFORMER, "bert": TINY_TRANSFORMER}

FAST = ("--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")


def logits(n=200, classes=10, seed=0):
    return np.random.default_rng(seed).standard_normal((n, classes)).astype(np.float32)


def test_identical_outputs_pass_at_every_precision():
    ref = logits()
    for precision in TOLERANCES:
        result = compare_outputs(ref, ref.copy(), precision)
        assert result["accuracy_ok"] and result["top1_agreement"] == 1.0
        assert result["max_abs_diff"] == 0.0 and result["samples"] == 200


def test_reordered_classes_fail_on_top1_agreement():
    ref = logits()
    result = compare_outputs(ref, ref[:, ::-1], "bf16")
    assert not result["accuracy_ok"] and result["top1_agreement"] < 0.5


def test_a_difference_bf16_tolerates_is_too_large_for_fp32():
    ref = logits()
    scale = np.abs(ref).max()
    noisy = ref + 1e-3 * scale * np.sign(logits(seed=1))  # 0.1% of the largest output
    assert compare_outputs(ref, noisy, "bf16")["accuracy_ok"]
    fp32 = compare_outputs(ref, noisy, "fp32")
    assert not fp32["accuracy_ok"] and fp32["max_abs_diff"] == pytest.approx(1e-3 * scale, rel=1e-3)


def test_non_finite_outputs_fail_and_shapes_must_match():
    ref = logits()
    broken = ref.copy()
    broken[3, 2] = np.nan
    assert not compare_outputs(ref, broken, "fp16")["accuracy_ok"]
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(ref, ref[:10], "fp32")


@pytest.mark.parametrize("name", BUILTIN)
def test_initial_weights_come_in_the_torch_state_dict_layout_within_its_default_bounds(name):
    torch = pytest.importorskip("torch")
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload(name, SMALL_PARAMS.get(name, {}))
    arrays = initial_weights(workload.layers, workload.input_shape, seed=3)
    torch.manual_seed(0)  # torch's own draws (their std is checked): not other tests' state
    module = build_module(workload.layers, workload.input_shape)
    state = [(k, v) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert [a.shape for a in arrays] == [tuple(v.shape) for _, v in state]
    embeddings = {f"{k}.weight" for k, m in module.named_modules() if isinstance(m, torch.nn.Embedding)}
    for a, (key, v) in zip(arrays, state):
        assert a.dtype == np.float32
        if key.endswith(("running_mean", "running_var")) or v.ndim == 1 and "weight" in key:
            continue  # BatchNorm and LayerNorm: constants
        if key in embeddings:  # N(0, 0.02), GPT-2's and BERT's range, as the translation draws
            assert abs(float(a.mean())) < 0.004 and 0.016 < float(a.std()) < 0.024, key
            assert 0.016 < float(v.std()) < 0.024, key
            continue
        bound = 1 / np.sqrt(np.prod(v.shape[1:])) if v.ndim > 1 else None
        if bound is not None:  # a weight: uniform in +-1/sqrt(fan_in), as torch draws it
            assert np.abs(a).max() <= bound
            assert a.size < 100 or np.abs(a).max() > 0.9 * bound  # and fills the range
    again = initial_weights(workload.layers, workload.input_shape, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, again))  # seeded
    assert not np.array_equal(arrays[0], initial_weights(workload.layers, workload.input_shape, 4)[0])


def test_torch_and_keras_load_the_same_starting_weights_into_the_same_function():
    """A conv net (channels-last and flatten order in Keras): same weights, same outputs."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from gpubench.backends.keras_model import build_keras_model, load_reference_weights
    from gpubench.backends.torch_model import build_module
    from gpubench.backends.torch_model import load_weights
    from gpubench.backends.keras_model import to_channels_last

    workload = resolve_workload("lenet5")
    arrays = initial_weights(workload.layers, workload.input_shape, seed=0)
    module = build_module(workload.layers, workload.input_shape).eval()
    load_weights(module, arrays)
    km = build_keras_model(workload.layers, workload.input_shape)
    load_reference_weights(km, arrays)
    x = np.random.default_rng(1).random((8,) + workload.input_shape, dtype=np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = km.model(to_channels_last(x), training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def gate_run(tmp_path: Path, backend: str, *extra: str, env=None):
    return run_cli_here("run", "-w", "mnist", "-b", backend, "--mode", "infer", "--check-accuracy",
                        "--out", tmp_path, "--no-isolate", "-q", *FAST, *extra, env_extra=env)


def test_onnxruntime_passes_the_gate_on_real_test_images(mnist_subset_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    done = gate_run(tmp_path, "onnxruntime-cpu", "--data", "mnist", "--data-dir", mnist_subset_dir)
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    assert trials["accuracy_ok"].astype(str).eq("True").all()
    assert (trials["top1_agreement"] == 1.0).all() and (trials["max_abs_diff"] < 1e-5).all()
    gate = json.loads(next(tmp_path.glob("*/run.json")).read_text())["accuracy_check"]
    assert gate["inputs"] == "the first 1000 mnist test images" and gate["samples"] == 1000
    assert gate["reference"] == "torch-cpu fp32"


def test_an_engine_that_computes_something_else_is_flagged_in_every_row(tmp_path):
    done = gate_run(tmp_path, "test-wrong-outputs", env=PLUGIN_ENV)
    assert done.returncode == 0, done.stderr  # a flagged row, not a failed run
    assert "accuracy check failed" in done.stderr and "synthetic samples" in done.stderr
    trials = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    assert len(trials) == 2 and trials["accuracy_ok"].astype(str).eq("False").all()
    assert (trials["top1_agreement"] < 0.5).all()


@pytest.mark.parametrize("backend, args, message", [
    ("test-ok", [], "--check-accuracy needs steps that can predict; test-ok steps cannot"),
    ("torch-cpu", ["--mode", "train"], "use it with --mode infer"),
])
def test_the_gate_refuses_what_it_cannot_check(backend, args, message, tmp_path):
    done = run_cli_here("run", "-w", "mnist", "-b", backend, "--mode", "infer", *args,
                        "--check-accuracy", "--out", tmp_path / "out", env_extra=PLUGIN_ENV)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
