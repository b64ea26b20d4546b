"""TensorRT: everything around the engine is tested here without TensorRT (profiles,
cache keys, refusals, the messages when TensorRT or a GPU is missing); the engine build
and run are `gpu` tests, skipped without an NVIDIA GPU."""

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_RUN, run_cli
from gpubench.backends import StepConfig, get_backend
from gpubench.backends import tensorrt_backend
from gpubench.backends.tensorrt_engine import (
    ProfileRange, check_batch, engine_facts, engine_key, profile_for,
)
from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.workloads import resolve_workload

SHA = "ab" * 32
# The engine tests need TensorRT itself, which a GPU machine may well lack (it is a
# separate install: make install-tensorrt): there they skip, saying so.
needs_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                                    reason="TensorRT is not installed (make install-tensorrt)")
KEY_ARGS = dict(onnx_sha256=SHA, tensorrt_version="10.9.0", gpu_name="NVIDIA H100 80GB HBM3",
                capability=(9, 0), precision="fp16", profile=ProfileRange(1, 32, 32))


def test_profile_covers_the_batch_sizes_asked_for():
    assert profile_for([32]) == ProfileRange(32, 32, 32)  # one size: a static-shape engine
    assert profile_for([8, 1, 64]) == ProfileRange(1, 64, 64)
    p = profile_for([4, 16])
    assert [b for b in (1, 3, 4, 10, 16, 17) if p.covers(b)] == [4, 10, 16]
    assert p.as_list() == [4, 16, 16]
    with pytest.raises(UserError):
        profile_for([])
    with pytest.raises(UserError):
        profile_for([0, 4])
    with pytest.raises(ValueError):
        ProfileRange(8, 4, 16)


def test_batch_outside_the_profile_is_a_clear_error():
    check_batch(ProfileRange(1, 8, 8), 8)
    with pytest.raises(UserError, match=r"batch size 9 is outside .* profile \[1, 8\]"):
        check_batch(ProfileRange(1, 8, 8), 9)


def test_engine_key_is_stable_and_changes_with_every_input():
    base = engine_key(**KEY_ARGS)
    assert base == engine_key(**KEY_ARGS) and len(base) == 64
    changes = {"onnx_sha256": "cd" * 32, "tensorrt_version": "10.10.0",
               "gpu_name": "NVIDIA A100-SXM4-80GB", "capability": (8, 0), "precision": "fp32",
               "profile": ProfileRange(1, 64, 64)}
    keys = {engine_key(**{**KEY_ARGS, field: value}) for field, value in changes.items()}
    assert base not in keys and len(keys) == len(changes)
    facts = engine_facts(**KEY_ARGS)
    assert facts["compute_capability"] == "9.0" and facts["profile"] == [1, 32, 32]


def test_train_and_other_precisions_are_unsupported():
    backend = get_backend("tensorrt")
    with pytest.raises(Unsupported, match="inference only"):
        backend.check_config("train", "fp32")
    with pytest.raises(Unsupported, match="bf16 is not supported on tensorrt"):
        backend.check_config("infer", "bf16")
    for precision in ("fp32", "tf32", "fp16"):
        backend.check_config("infer", precision)


def _hide_tensorrt(monkeypatch, present: bool):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "tensorrt":
            return importlib.machinery.ModuleSpec("tensorrt", None) if present else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(tensorrt_backend.importlib.util, "find_spec", find_spec)


def test_message_when_tensorrt_is_missing(monkeypatch):
    _hide_tensorrt(monkeypatch, present=False)
    ok, why = get_backend("tensorrt").is_available()
    assert not ok and "TensorRT is not installed" in why and "make install-tensorrt" in why


def test_message_when_the_gpu_is_missing(monkeypatch):
    _hide_tensorrt(monkeypatch, present=True)
    monkeypatch.setattr("gpubench.backends.torch_backend.nvidia_driver_problem",
                        lambda: "no NVIDIA driver: libcuda.so.1 could not be loaded")
    ok, why = get_backend("tensorrt").is_available()
    assert not ok and "TensorRT is not installed" not in why
    assert "no NVIDIA driver" in why
    with pytest.raises(BackendUnavailable, match="backend tensorrt is not available: .*no NVIDIA driver"):
        get_backend("tensorrt").prepare(resolve_workload("mnist"), StepConfig("infer", "fp32", 8))


def test_a_stub_or_old_tensorrt_package_is_refused(monkeypatch):
    stub = types.ModuleType("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    with pytest.raises(BackendUnavailable, match="stub"):
        tensorrt_backend.import_tensorrt()
    stub.Builder, stub.__version__ = object, "8.6.1"
    with pytest.raises(BackendUnavailable, match="needs TensorRT 10 or newer.*found 8.6.1"):
        tensorrt_backend.import_tensorrt()


def test_environment_without_tensorrt(monkeypatch):
    _hide_tensorrt(monkeypatch, present=False)
    env = get_backend("tensorrt").environment()
    assert env["framework"] == "tensorrt" and env["framework_version"] is None


def test_cli_says_why_tensorrt_cannot_run(tmp_path):
    ok, _ = get_backend("tensorrt").is_available()
    if ok:
        pytest.skip("tensorrt is available here")
    proc = run_cli("run", "-w", "mnist", "-b", "tensorrt", "--mode", "infer", "--out",
                   str(tmp_path), *FAST_RUN)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: backend tensorrt is not available: ")
    assert list(tmp_path.iterdir()) == []


# -- on a GPU -----------------------------------------------------------------------------
FP32_RTOL = 1e-3  # TensorRT's fp32 kernels (TF32 off) against torch fp32 on the CPU
FP16_RTOL = 3e-2


def _reference(workload, step, index):
    import torch

    from gpubench.backends.torch_step import TorchStep

    ref = TorchStep(workload, StepConfig("infer", "fp32", 1, seed=step.config.seed), torch.device("cpu"))
    with torch.no_grad():
        return ref.model(torch.from_numpy(step.input_batch(index)).float()).numpy()


def _close(got, want, rtol):
    scale = float(np.abs(want).max())
    return float(np.abs(got.astype(np.float64) - want).max()) <= rtol * scale


@pytest.fixture
def gpu_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision,rtol", [("fp32", FP32_RTOL), ("fp16", FP16_RTOL)])
def test_engine_build_parity_and_cache_hit(gpu_cache, precision, rtol):
    workload = resolve_workload("lenet5")
    backend = get_backend("tensorrt")
    step = backend.prepare(workload, StepConfig("infer", precision, 8))
    first = backend.environment()
    assert first["tensorrt_engine_cache"] == "stored" and first["tensorrt_engine_build_s"] > 0
    assert first["tensorrt_profile"] == {"min": 8, "opt": 8, "max": 8}
    assert _close(step.outputs(1), _reference(workload, step, 1), rtol)
    step.run(3, step.make_timer(3))
    step.synchronize()
    step.close()
    again = backend.prepare(workload, StepConfig("infer", precision, 8))
    second = backend.environment()
    assert second["tensorrt_engine_cache"] == "hit" and second["tensorrt_engine_build_s"] is None
    assert second["tensorrt_engine_key"] == first["tensorrt_engine_key"]
    again.close()
    other = backend.prepare(workload, StepConfig("infer", precision, 16))
    assert backend.environment()["tensorrt_engine_key"] != first["tensorrt_engine_key"]
    other.close()


@pytest.mark.gpu
@needs_tensorrt
def test_engine_refuses_a_batch_outside_its_profile(gpu_cache):
    from gpubench.backends.tensorrt_engine import engine_profile

    step = get_backend("tensorrt").prepare(resolve_workload("mnist"), StepConfig("infer", "fp32", 4))
    profile = engine_profile(step.engine, step.input_name)
    assert profile == ProfileRange(4, 4, 4)
    with pytest.raises(UserError):
        check_batch(profile, 8)
    assert not step.context.set_input_shape(step.input_name, (8, 1, 28, 28))
    step.close()


@pytest.mark.gpu
@needs_tensorrt
def test_unwritable_engine_cache_still_runs(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(blocker))
    backend = get_backend("tensorrt")
    step = backend.prepare(resolve_workload("mnist"), StepConfig("infer", "fp32", 4))
    env = backend.environment()
    assert env["tensorrt_engine_cache"].startswith("not cached") and env["onnx_cache"].startswith("not cached")
    assert step.outputs(0).shape == (4, 10)
    step.close()


@pytest.mark.gpu
def test_onnxruntime_cuda_parity_and_fp16(gpu_cache):
    backend = get_backend("onnxruntime-cuda")
    ok, why = backend.is_available()
    if not ok:
        pytest.skip(why)
    workload = resolve_workload("resnet50", {"image_size": "32"})
    for precision, rtol in (("fp32", FP32_RTOL), ("fp16", FP16_RTOL)):
        step = backend.prepare(workload, StepConfig("infer", precision, 4))
        assert backend.environment()["onnxruntime_session_providers"][0] == "CUDAExecutionProvider"
        assert _close(step.outputs(0), _reference(workload, step, 0), rtol)
        step.close()


@pytest.mark.gpu
@needs_tensorrt
def test_cli_tensorrt_run_records_build_time(tmp_path):
    import json

    proc = run_cli("run", "-w", "mnist", "-b", "tensorrt", "--mode", "infer", "--precision", "fp16",
                   "-q", "--out", str(tmp_path / "res"), *FAST_RUN,
                   env_extra={"GPUBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    env = json.loads((Path(proc.stdout.strip()) / "run.json").read_text())["environment"]
    assert env["tensorrt_engine_build_s"] > 0 and env["tensorrt_version"]
    assert env["framework"] == "tensorrt"
