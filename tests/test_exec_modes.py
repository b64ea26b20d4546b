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
    from gpubench.cli.run import COMPILE_CHOICES, EXEC_CHOICES

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
