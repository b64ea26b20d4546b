"""Execution modes (`--exec`): torch.compile on the CPU for real, its compile time apart
from the trials, its outputs checked against eager first (a broken compiled step is
flagged), recompilations during trials reported; CUDA graphs on a GPU only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here

FAST = ("--trials", "2", "--warmup-s", "0.05", "--min-trial-s", "0.05")


def exec_run(tmp_path: Path, *args: str):
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--out", tmp_path, "--no-isolate",
                        "-q", *FAST, *args)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    return done, pd.read_csv(folder / "trials.csv"), json.loads((folder / "run.json").read_text())


def test_compile_is_timed_apart_and_checked_against_eager(tmp_path):
    done, trials, meta = exec_run(tmp_path, "--exec", "compile", "--mode", "infer")
    assert set(trials["exec"]) == {"compile"} and len(trials) == 2
    assert (trials["compile_s"] > 0).all() and meta["compile_s"] == trials["compile_s"].iloc[0]
    assert trials["accuracy_ok"].astype(str).eq("True").all()
    assert (trials["max_abs_diff"] <= 1e-4 * meta["exec_check"]["reference_max_abs"]).all()
    assert meta["exec_check"]["reference"] == "eager" and meta["exec_check"]["samples"] == 64
    assert meta["recompiled_trials"] == []  # warm-up compiled everything the trials run
    assert "torch.compile built new graphs" not in done.stderr


def test_a_broken_compiled_step_is_flagged_before_it_is_timed(tmp_path, monkeypatch):
    """torch.compile replaced by a 'compiler' whose outputs are off: the check catches it,
    every row says accuracy_ok=false, and the run is still measured (a flagged row)."""
    import torch

    import gpubench.backends.torch_step as torch_step

    class Miscompiled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x) * 1.01  # 1% off: far past fp32's 1e-4

    monkeypatch.setattr(torch_step, "compile_module", lambda model, mode: Miscompiled(model))
    done, trials, meta = exec_run(tmp_path, "--exec", "compile", "--mode", "infer")
    assert "exec check failed: against eager" in done.stderr
    assert trials["accuracy_ok"].astype(str).eq("False").all() and len(trials) == 2
    assert meta["exec_check"]["accuracy_ok"] is False


def test_recompilations_during_trials_are_reported(tmp_path, monkeypatch):
    import gpubench.backends.torch_step as torch_step

    graphs = itertools.count()  # a compiler that builds a graph at every look
    monkeypatch.setattr(torch_step.TorchStep, "recompiles", lambda self: next(graphs))
    done, trials, meta = exec_run(tmp_path, "--mode", "infer")
    assert meta["recompiled_trials"] == [0, 1]
    assert "torch.compile built new graphs during trial(s) 0, 1" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--exec", "cuda-graphs"], "exec mode 'cuda-graphs' is unsupported on torch-cpu (it runs: "
                                "eager, compile, compile:reduce-overhead, compile:max-autotune)"),
    (["--compile-mode", "max-autotune"], "--compile-mode is for --exec compile"),
    (["-b", "onnxruntime-cpu", "--mode", "infer", "--exec", "compile"],
     "exec mode 'compile' is unsupported on onnxruntime-cpu"),
    (["-b", "tf-cpu", "--exec", "xla"], "(it runs: eager); backend tf-cpu-xla runs it"),
])
def test_exec_modes_a_backend_cannot_run_are_refused_in_one_line(args, message, tmp_path):
    backend = [] if "-b" in args else ["-b", "torch-cpu"]
    done = run_cli_here("run", "-w", "mnist", *backend, *args, "--out", tmp_path / "out")
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_cli_exec_choices_match_the_backends():
    from gpubench.backends.exec_modes import TORCH_CUDA_EXEC_MODES, compile_mode
    from gpubench.measure.options import option  # the CLI's choices: the declaration's
    EXEC_CHOICES = {m.split(":")[0] for m in option("exec").allowed()}  # --compile-mode: the rest
    COMPILE_CHOICES = option("compile_mode").allowed()

    plain = {m.split(":")[0] for m in TORCH_CUDA_EXEC_MODES}
    assert plain | {"xla"} == set(EXEC_CHOICES)
    assert {compile_mode(m) for m in TORCH_CUDA_EXEC_MODES} - {None} == set(COMPILE_CHOICES)


def test_a_suite_crosses_exec_modes(tmp_path):
    from gpubench.suite.config import parse_suite

    runs = parse_suite({"runs": [{"workloads": "mnist", "backends": ["torch-cpu", "onnxruntime-cpu"],
                                  "execs": ["eager", "compile:max-autotune"]}]}, tmp_path / "s.yaml")
    assert [(r.backend, r.exec) for r in runs] == [
        ("torch-cpu", "eager"), ("torch-cpu", "compile:max-autotune"),
        ("onnxruntime-cpu", "eager"), ("onnxruntime-cpu", "compile:max-autotune")]
    assert runs[1].label().endswith("exec compile:max-autotune")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_cuda_graphs_replay_the_whole_step_and_match_eager(mode, tmp_path):
    done = run_cli_here("run", "-w", "lenet5", "-b", "torch-cuda", "--exec", "cuda-graphs",
                        "--mode", mode, "--out", tmp_path, "--no-isolate", "-q", *FAST)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    trials = pd.read_csv(folder / "trials.csv")
    meta = json.loads((folder / "run.json").read_text())
    assert set(trials["exec"]) == {"cuda-graphs"} and (trials["compile_s"] > 0).all()
    assert trials["accuracy_ok"].astype(str).eq("True").all(), meta["exec_check"]
    if mode == "train":
        assert meta["loss"]["fell"] is True  # the replayed optimizer really updates
    assert np.isfinite(trials["throughput_samples_per_s"]).all()


# --- training under compile: one graph, the one the trials run, checked as they run it ---
def tiny_train_workload():
    """The smallest workload with what a training check must keep: Adam (optimizer
    state) and a BatchNorm (running statistics a training-mode forward moves)."""
    from gpubench.models import BatchNorm2d, Conv2d, Flatten, Linear, ReLU
    from gpubench.workloads import Workload

    return Workload(name="tiny", task="classification", input_shape=(1, 4, 4), num_outputs=3,
                    loss="cross_entropy", optimizer="adam", optimizer_args=(("lr", 0.01),),
                    default_batch_size=8,
                    layers=(Conv2d(2, 1), BatchNorm2d(), ReLU(), Flatten(), Linear(3)))


def prepared_train_step(exec_mode: str):
    """A training step from the reference weights (time-to-accuracy's start), built
    and prepared (compiled and checked) as a run builds it; with the rise in dynamo's
    count of compiled graphs that preparing caused, what it held once prepared (its
    state_dict, the optimizer's state, its gradients), and the graphs three training
    steps compiled after that (the trials' steps: none)."""
    import torch

    from gpubench.backends.base import StepConfig
    from gpubench.backends.torch_exec import dynamo_graphs
    from gpubench.backends.torch_step import TorchStep

    if exec_mode != "eager":  # a graph an earlier test compiled for these layers would be reused
        torch._dynamo.reset()
    before = dynamo_graphs()
    step = TorchStep(tiny_train_workload(), StepConfig("train", "fp32", 8, exec_mode=exec_mode,
                                                       reference_init=True, data_batches=1),
                     torch.device("cpu"))
    rise = dynamo_graphs() - before
    held = ({k: v.clone() for k, v in step.model.state_dict().items()},
            step.optimizer.state_dict()["state"],
            [p.grad for p in step.model.parameters()])
    before = dynamo_graphs()
    step.run(3)
    assert np.isfinite(step.loss())
    return step, rise, held, dynamo_graphs() - before


@pytest.fixture(scope="module")
def compiled_train_step():
    return prepared_train_step("compile")


def test_training_compiles_one_graph_the_one_the_trials_run(compiled_train_step):
    """Preparing compiled the training forward and backward once (not also an inference
    graph under no_grad that no trial runs), and the trials' steps compile nothing new."""
    step, compiled, _, compiled_by_steps = compiled_train_step
    assert compiled == 1 and step.compile_s > 0
    assert compiled_by_steps == 0


def test_the_training_check_holds_the_loss_and_every_gradient(compiled_train_step):
    step = compiled_train_step[0]
    eager, compiled = step.exec_check
    n_params = sum(p.numel() for p in step.model.parameters())
    assert eager.shape == compiled.shape == (1 + n_params, 1)
    assert eager[0, 0] == 1.0  # the loss over itself; the gradients over the largest
    assert np.abs(eager[1:]).max() == 1.0 and np.abs(compiled - eager).max() < 1e-4
    assert "gradient" in step.facts["exec_check_values"]


@pytest.mark.parametrize("exec_mode", ["eager", "compile"])
def test_training_starts_from_the_reference_weights_and_optimizer_state(exec_mode,
                                                                        compiled_train_step):
    """What time-to-accuracy promises every exec mode: epoch 1 starts from
    models/init_weights.py's weights (BatchNorm's statistics too) and a fresh optimizer,
    whatever preparing the mode ran (compiling and checking run no optimizer update)."""
    from gpubench.models.init_weights import initial_weights

    prepared = compiled_train_step if exec_mode == "compile" else prepared_train_step("eager")
    state, optimizer_state, grads = prepared[2]
    workload = tiny_train_workload()
    reference = initial_weights(workload.layers, workload.input_shape, 0)
    weights = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert len(weights) == len(reference)
    for mine, ref in zip(weights, reference):
        np.testing.assert_array_equal(mine.numpy(), ref)
    assert [int(v) for k, v in state.items() if k.endswith("num_batches_tracked")] == [0]
    assert optimizer_state == {} and grads == [None] * len(grads)


def test_a_compiled_step_with_wrong_gradients_is_flagged(tmp_path, monkeypatch):
    """A 'compiler' whose outputs are right but whose gradients are 1% off: checking only
    the forward would pass it; the training check (what the trials run) catches it."""
    import torch

    import gpubench.backends.torch_step as torch_step

    class WrongGradients(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            return out + 0.01 * (out - out.detach())  # the same values, gradients x 1.01

    monkeypatch.setattr(torch_step, "compile_module", lambda model, mode: WrongGradients(model))
    done, trials, meta = exec_run(tmp_path, "--exec", "compile")
    assert "exec check failed: against eager" in done.stderr
    assert trials["accuracy_ok"].astype(str).eq("False").all() and len(trials) == 2
    n_params = 784 * 128 + 128 + 128 * 10 + 10  # the MLP's: the loss and every gradient
    assert meta["exec_check"]["samples"] == 1 + n_params
    assert meta["exec_check"]["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_cuda_graphs_on_ranks_are_refused_before_any_rank_starts(strategy, tmp_path):
    """torch-cuda declares cuda-graphs; under --nproc the capture would need what torch's
    CUDA notes ask of DDP (built on a side stream, 11 eager iterations first) and FSDP
    is not documented as capturable: refused on any machine, CUDA or not."""
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cuda", "--nproc", "2", "--strategy",
                        strategy, "--exec", "cuda-graphs", "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    assert "exec mode cuda-graphs cannot run data-parallel (--nproc)" in done.stderr
    assert "11 eager iterations" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
