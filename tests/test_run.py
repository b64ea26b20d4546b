"""Real runs on torch-cpu through the Python API: the run folder, its columns, the
reader round trip, learning, failures as rows."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import gpu_missing_reason
from gpubench.backends import StepConfig, get_backend
from gpubench.backends.torch_backend import TorchBackend
from gpubench.errors import Unsupported, UserError
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run
from gpubench.results.reader import read_run
from gpubench.results.schema import SCHEMA_VERSION, TRIAL_COLUMNS
from gpubench.results.summary import SUMMARY_COLUMNS
from gpubench.workloads import resolve_workload

pytest.importorskip("torch")

FAST = ProtocolConfig(trials=2, warmup_s=0.05, min_trial_s=0.05)


pytestmark = pytest.mark.usefixtures("torch_threads_put_back")  # inline runs set threads


def _run(tmp_path, **kw):
    kw.setdefault("protocol", FAST)
    kw.setdefault("telemetry", "none")
    return execute_run(RunRequest(out_dir=tmp_path, **kw))


def test_train_run_writes_documented_files(tmp_path):
    outcome = _run(tmp_path, workload="mnist", backend="torch-cpu")
    assert outcome.status == "ok"
    names = sorted(p.name for p in outcome.path.iterdir())
    assert {"trials.csv", "summary.csv", "run.json"} <= set(names)
    trials = pd.read_csv(outcome.path / "trials.csv")
    assert tuple(trials.columns) == TRIAL_COLUMNS
    assert len(trials) == 2 and (trials["status"] == "ok").all()
    assert (trials["throughput_samples_per_s"] > 0).all()
    assert (trials["samples"] == trials["iterations"] * 64).all()
    np.testing.assert_allclose(trials["throughput_samples_per_s"],
                               trials["samples"] / trials["duration_s"])
    # TFLOP/s follows from the model description: 3x forward FLOPs in training.
    flops = resolve_workload("mnist").stats.flops_per_sample("train")
    np.testing.assert_allclose(trials["tflops"], trials["throughput_samples_per_s"] * flops / 1e12)
    # Not measured here means empty, never 0.
    for column in ("mfu", "power_avg_w", "energy_j", "latency_p50_ms", "peak_mem_bytes"):
        assert trials[column].isna().all(), column
    assert trials["framework"].iloc[0] == "torch"
    assert trials["schema_version"].iloc[0] == SCHEMA_VERSION == 8
    # v2: today's runs are single-process throughput runs, eager, in the default environment
    first = trials.iloc[0]
    assert (first["scenario"], first["exec"], first["world_size"], first["environment"],
            first["rank"]) == ("throughput", "eager", 1, "default", 0)
    summary = pd.read_csv(outcome.path / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS and len(summary) == 1
    assert summary["throughput_samples_per_s_median"].iloc[0] == pytest.approx(
        trials["throughput_samples_per_s"].median())
    meta = json.loads((outcome.path / "run.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and meta["stop_reason"] == "fixed_trials"
    # history needs a time and a commit on every row, the same as run.json's
    assert (trials["started_utc"] == meta["started_utc"]).all()
    assert trials["git_commit"].fillna("").eq(meta["environment"]["git_commit"] or "").all()
    assert meta["environment"]["framework_version"].startswith("2.")
    assert meta["workload"]["param_count"] == 101_770
    calibration = meta["calibration"]  # warm-up is data too
    assert calibration["warmup_iterations"] >= 2 and calibration["first_step_s"] > 0
    assert calibration["iterations_per_trial"] >= 1 and isinstance(calibration["discarded_trials"], list)
    assert isinstance(calibration["warmup_steady"], bool)


def test_reader_round_trips(tmp_path):
    outcome = _run(tmp_path, workload="linreg", backend="torch-cpu", params={"features": "8"},
                   threads=1)
    data = read_run(outcome.path)
    written = outcome.trials
    pd.testing.assert_series_equal(data.trials["throughput_samples_per_s"],
                                   written["throughput_samples_per_s"].astype(float))
    assert list(data.trials["params"]) == ["features=8"] * 2
    assert data.meta["run_id"] == written["run_id"].iloc[0]
    assert data.summary["n_ok"].iloc[0] == 2
    assert data.meta["environment"]["torch_threads"] == 1  # as set for the run


def test_infer_records_latency_percentiles(tmp_path):
    outcome = _run(tmp_path, workload="lenet5", backend="torch-cpu", mode="infer", batch_size=16)
    t = outcome.trials
    assert (t["latency_p50_ms"] > 0).all()
    assert (t["latency_p50_ms"] <= t["latency_p90_ms"]).all()
    assert (t["latency_p90_ms"] <= t["latency_p99_ms"]).all()
    assert t["loss"].isna().all()  # no loss in inference
    assert read_run(outcome.path).meta["latency_timing"] == "in_trial"


def test_resnet50_small_image_runs(tmp_path):
    outcome = _run(tmp_path, workload="resnet50", backend="torch-cpu", batch_size=4,
                   params={"image_size": "32"})
    assert outcome.status == "ok" and outcome.trials["params"].iloc[0] == "image_size=32;num_classes=1000"


def test_bf16_runs_on_cpu_and_fp16_is_unsupported(tmp_path):
    outcome = _run(tmp_path, workload="mnist", backend="torch-cpu", precision="bf16", mode="infer")
    assert outcome.status == "ok"
    with pytest.raises(Unsupported, match="fp16 .* torch-cpu"):
        _run(tmp_path, workload="mnist", backend="torch-cpu", precision="fp16")
    with pytest.raises(Unsupported, match="tf32 is a CUDA tensor-core mode"):
        _run(tmp_path, workload="mnist", backend="torch-cpu", precision="tf32")


@pytest.mark.parametrize("name, steps", [("linreg", 300), ("mnist", 300), ("lenet5", 200)])
def test_training_lowers_the_loss(name, steps):
    workload = resolve_workload(name)
    step = TorchBackend("cpu").prepare(workload, StepConfig("train", "fp32", 32, data_batches=8))
    step.run(1)
    first = step.loss()
    step.run(steps)
    last = step.loss()
    assert math.isfinite(first) and last < 0.5 * first, (first, last)


def test_unavailable_backend_says_why(tmp_path):
    if not gpu_missing_reason():
        pytest.skip("torch-cuda is available on this machine")
    with pytest.raises(UserError, match="built without CUDA|no NVIDIA driver"):
        _run(tmp_path, workload="mnist", backend="torch-cuda")
    assert not any(tmp_path.iterdir())  # nothing half-written


class _ExplodingBackend(TorchBackend):
    """A torch-cpu backend whose step fails after its first trial starts."""

    def __init__(self):
        super().__init__("cpu")
        self.name = "exploding-cpu"

    def prepare(self, workload, config):
        step = super().prepare(workload, config)
        original, calls = step.run, []

        def run(iterations, timer=None):
            calls.append(iterations)
            if len(calls) > 4:  # the first step, warm-up chunks, trials; then one blows up
                raise RuntimeError("CUDA out of memory (simulated)")
            original(iterations, timer)

        step.run = run
        return step


def test_a_failure_mid_run_is_a_row(tmp_path, register):
    register("exploding-cpu", _ExplodingBackend)
    # Budgets far below one step's time make the calls the same at any speed: warm-up
    # is two calls (the first step, then one chunk that is past its 4 x 1e-6 s cap),
    # every trial is one step, and no trial is short enough to be run again (with 0.01 s
    # trials one could be, twice on a machine whose speed changed, and then no trial
    # was ok before the failure). So: trials 0 and 1 ok, trial 2 fails.
    protocol = ProtocolConfig(trials=3, warmup_s=1e-6, min_trial_s=1e-6)
    outcome = _run(tmp_path, workload="mnist", backend="exploding-cpu", protocol=protocol)
    assert outcome.status == "failed"
    t = read_run(outcome.path).trials
    assert list(t["status"]) == ["ok", "ok", "failed"] and list(t["trial"]) == [0, 1, 2]
    assert list(t["iterations"].iloc[:2]) == [1, 1]
    assert "CUDA out of memory (simulated)" in t["error"].iloc[-1]
    assert read_run(outcome.path).summary["status"].iloc[0] == "failed"
    assert get_backend("exploding-cpu").name == "exploding-cpu"


def test_result_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    outcome = _run(tmp_path, workload="linreg", backend="torch-cpu")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("trials.csv", "summary.csv", "run.json"):
        mode = stat.S_IMODE((outcome.path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


class _Fp16OnCpu(TorchBackend):
    """torch-cpu that lets fp16 through (autocast and GradScaler work on the CPU too):
    the fp16 training path, as torch-cuda takes it."""

    def __init__(self):
        super().__init__("cpu")
        self.name = "fp16-on-cpu"

    def check_config(self, mode, precision):
        pass


@pytest.mark.parametrize("precision, syncs", [("fp16", True), ("bf16", False)])
def test_run_json_says_when_the_step_syncs_the_host(tmp_path, precision, syncs, register):
    register("fp16-on-cpu", _Fp16OnCpu)
    outcome = _run(tmp_path, workload="linreg", backend="fp16-on-cpu", precision=precision)
    assert outcome.status == "ok", outcome.error
    env = json.loads((outcome.path / "run.json").read_text())["environment"]
    assert ("GradScaler" in env.get("step_syncs_host", "")) == syncs
