"""onnxruntime backends: parity with PyTorch for every workload at two batch sizes through
one exported file, the refusals (train, precisions, a silent CPU fallback, a corrupt or
foreign --onnx file), and runs through the real CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from conftest import FAST_RUN, run_cli_here  # noqa: E402  (the commands in this process)
from gpubench.backends import StepConfig, get_backend  # noqa: E402
from gpubench.backends.onnx_export import export_workload, load_onnx_file  # noqa: E402
from gpubench.backends.torch_step import TorchStep  # noqa: E402
from gpubench.errors import BackendUnavailable, Unsupported, UserError  # noqa: E402
from gpubench.workloads import resolve_workload  # noqa: E402

# Parity tolerance, fp32: |onnxruntime - torch| <= 1e-5 x max|torch| over a batch. The two
# use different kernels (MLAS vs oneDNN/MKL) and the export folds BatchNorm into the
# convolutions, so results differ by rounding only: ~1e-6 relative seen for ResNet-50.
FP32_RTOL = 1e-5
# fp16 graph against the fp32 torch model: half precision keeps ~3 decimal digits.
FP16_RTOL = 2e-2
WORKLOADS = [("linreg", {}), ("mnist", {}), ("lenet5", {}), ("resnet50", {"image_size": "32"})]
BATCH_SIZES = (1, 5)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module, so each workload is exported once."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GPUBENCH_CACHE_DIR", str(folder))
    yield folder
    mp.undo()


def _assert_close(got, want, rtol, label):
    scale = float(np.abs(want).max())
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert scale > 0 and err <= rtol * scale, f"{label}: max error {err:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("name,params", WORKLOADS, ids=[w for w, _ in WORKLOADS])
def test_parity_with_torch_at_two_batch_sizes_through_one_file(shared_cache, name, params):
    workload = resolve_workload(name, params)
    backend = get_backend("onnxruntime-cpu")
    onnx_paths = set()
    for batch_size in BATCH_SIZES:
        config = StepConfig("infer", "fp32", batch_size, seed=3)
        step = backend.prepare(workload, config)
        onnx_paths.add(backend.environment()["onnx_path"])
        reference = TorchStep(workload, config, torch.device("cpu"))  # the torch-cpu backend's model
        reference.model.eval()
        for index in range(2):
            x = step.input_batch(index)
            assert np.array_equal(x, reference.inputs[index].numpy())  # the same data
            with torch.no_grad():
                want = reference.model(reference.inputs[index]).numpy()
            got = step.outputs(index)
            assert got.shape == (batch_size, workload.num_outputs)
            _assert_close(got, want, FP32_RTOL, f"{name} batch {batch_size}")
        step.close()
    assert len(onnx_paths) == 1 and None not in onnx_paths  # one exported file, both batch sizes


def test_parity_fails_for_other_weights(shared_cache):
    """The parity check can fail: another seed's export gives other outputs."""
    workload = resolve_workload("mnist")
    step = get_backend("onnxruntime-cpu").prepare(workload, StepConfig("infer", "fp32", 4, seed=1))
    reference = TorchStep(workload, StepConfig("infer", "fp32", 4, seed=2), torch.device("cpu"))
    with torch.no_grad():
        want = reference.model(torch.from_numpy(step.input_batch(0))).numpy()
    with pytest.raises(AssertionError):
        _assert_close(step.outputs(0), want, FP32_RTOL, "other seed")


def test_fp16_export_matches_torch_within_half_precision(shared_cache):
    """The fp16 graph that onnxruntime-cuda and tensorrt run, checked here on the CPU."""
    import onnxruntime as ort

    workload = resolve_workload("lenet5")
    model = export_workload(workload, seed=0, dtype="float16")
    session = ort.InferenceSession(model.ort_source(), providers=["CPUExecutionProvider"])
    reference = TorchStep(workload, StepConfig("infer", "fp32", 6), torch.device("cpu"))
    x = reference.inputs[0]
    with torch.no_grad():
        want = reference.model(x).numpy()
    (got,) = session.run(None, {"input": x.numpy().astype(np.float16)})
    assert got.dtype == np.float16
    _assert_close(got, want, FP16_RTOL, "lenet5 fp16")


def test_train_and_cpu_precisions_are_unsupported_with_reasons():
    cpu, cuda = get_backend("onnxruntime-cpu"), get_backend("onnxruntime-cuda")
    with pytest.raises(Unsupported, match="inference only"):
        cpu.check_config("train", "fp32")
    with pytest.raises(Unsupported, match="float16 kernels"):
        cpu.check_config("infer", "fp16")
    with pytest.raises(Unsupported, match="tf32"):
        cpu.check_config("infer", "tf32")
    cuda.check_config("infer", "fp16")  # allowed: an fp16 graph on the CUDA provider
    with pytest.raises(Unsupported, match="bf16"):
        cuda.check_config("infer", "bf16")


def test_cuda_provider_that_falls_back_to_cpu_is_refused(shared_cache):
    """This onnxruntime has no CUDA provider: asked for one, ORT quietly runs on the CPU.
    The step must notice from the session's providers and refuse."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider; the fallback cannot be provoked")
    from gpubench.backends.onnxruntime_step import OrtStep

    workload = resolve_workload("linreg")
    model = export_workload(workload)
    with pytest.warns(UserWarning), pytest.raises(BackendUnavailable, match="fell back to CPUExecutionProvider"):
        OrtStep(workload, StepConfig("infer", "fp32", 2), model, "cuda")


def test_cuda_backend_says_why_it_is_unavailable():
    ok, why = get_backend("onnxruntime-cuda").is_available()
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert not ok and "onnxruntime-gpu" in why


def test_foreign_and_truncated_onnx_files_are_refused(shared_cache, tmp_path):
    linreg_file = export_workload(resolve_workload("linreg")).path
    with pytest.raises(UserError, match=r"has shape \?x2, but workload mnist feeds batch x 1x28x28"):
        load_onnx_file(linreg_file, resolve_workload("mnist"))
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(Path(export_workload(resolve_workload("mnist")).path).read_bytes()[:5000])
    with pytest.raises(UserError, match="is not a valid ONNX model"):
        load_onnx_file(truncated, resolve_workload("mnist"))
    with pytest.raises(UserError, match="cannot read ONNX file"):
        load_onnx_file(tmp_path / "absent.onnx", resolve_workload("mnist"))


def test_user_onnx_file_runs_and_precision_must_match_it(shared_cache, tmp_path):
    workload = resolve_workload("lenet5")
    user_file = tmp_path / "mine.onnx"
    user_file.write_bytes(export_workload(workload, seed=7).read_bytes())
    backend = get_backend("onnxruntime-cpu")
    step = backend.prepare(workload, StepConfig("infer", "fp32", 3, onnx_path=str(user_file)))
    env = backend.environment()
    assert env["onnx_source"] == "file" and env["onnx_path"] == str(user_file)
    assert env["onnx_cache"] == "user file"
    step.run(2)
    assert step.outputs(0).shape == (3, 10)
    half = tmp_path / "half.onnx"
    half.write_bytes(export_workload(workload, dtype="float16").read_bytes())
    with pytest.raises(UserError, match="float16 model; --precision fp32 needs a float32"):
        backend.prepare(workload, StepConfig("infer", "fp32", 3, onnx_path=str(half)))


# -- the real CLI -------------------------------------------------------------------------
def _one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_cli_infer_run_records_session_options(tmp_path):
    env = {"GPUBENCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli_here("run", "-w", "mnist", "-b", "onnxruntime-cpu", "--mode", "infer",
                        "--batch-size", "16", "--threads", "1", "--telemetry", "none", "-q",
                        "--out", str(tmp_path / "res"), *FAST_RUN, env_extra=env)
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip())
    meta = json.loads((folder / "run.json").read_text())
    environment = meta["environment"]
    assert environment["framework"] == "onnxruntime"
    assert environment["onnxruntime_intra_op_threads"] == 1
    assert environment["onnxruntime_graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert environment["onnxruntime_session_providers"] == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in environment["onnxruntime_providers_available"]
    assert environment["onnx_cache"] == "stored" and environment["onnx_export_s"] > 0
    import pandas as pd

    trials = pd.read_csv(folder / "trials.csv")
    assert (trials["status"] == "ok").all() and (trials["framework"] == "onnxruntime").all()
    assert (trials["throughput_samples_per_s"] > 0).all() and trials["latency_p50_ms"].notna().all()


def test_cli_runs_a_user_onnx_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(tmp_path / "cache"))
    user_file = tmp_path / "lenet.onnx"
    user_file.write_bytes(export_workload(resolve_workload("lenet5"), seed=5).read_bytes())
    proc = run_cli_here("run", "-w", "lenet5", "-b", "onnxruntime-cpu", "--mode", "infer", "--onnx",
                        str(user_file), "--batch-size", "4", "--telemetry", "none", "-q",
                        "--out", str(tmp_path / "res"), *FAST_RUN)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((Path(proc.stdout.strip()) / "run.json").read_text())
    assert meta["config"]["onnx_path"] == str(user_file)
    assert meta["environment"]["onnx_source"] == "file"


def test_cli_train_is_unsupported(tmp_path):
    """Without --mode an inference-only backend runs infer; an explicit train is refused."""
    proc = run_cli_here("run", "-w", "mnist", "-b", "onnxruntime-cpu", "--mode", "train",
                        "--out", str(tmp_path), *FAST_RUN)
    _one_error_line(proc, "inference only", "--mode infer")
    assert list(tmp_path.iterdir()) == []


def test_cli_corrupt_onnx_is_one_line_and_nothing_is_cached(tmp_path):
    cache = tmp_path / "cache"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf of an ONNX model" * 10)
    out = tmp_path / "res"
    proc = run_cli_here("run", "-w", "mnist", "-b", "onnxruntime-cpu", "--mode", "infer",
                        "--onnx", str(bad), "--out", str(out), *FAST_RUN,
                        env_extra={"GPUBENCH_CACHE_DIR": str(cache)})
    _one_error_line(proc, str(bad), "is not a valid ONNX model")
    assert not cache.exists() or not any(cache.rglob("*.*"))
    assert not out.exists() or list(out.iterdir()) == []
    proc = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--mode", "infer", "--onnx", str(bad),
                        "--out", str(out), *FAST_RUN)
    _one_error_line(proc, "--onnx is for backends that run ONNX files")


def test_list_and_import_load_no_framework():
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, gpubench, gpubench.cli.list as l; l.collect(); "
         "print(sorted(m for m in ('onnx', 'onnxruntime', 'tensorrt', 'torch') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
